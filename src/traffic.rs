//! The traffic plan: who comes to buy a wash, when, where and for how much —
//! one sans-IO function of the scenario and the seed that both engines call.
//! Every draw is a keyed roll on stable ids (condominium and arrival number,
//! purchase number, machine, request), never a stream consumed in event
//! order: adding a fault leaves every customer where and when they were, so
//! a failing run can be shrunk fault by fault.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::contract::Endpoint;
use crate::scenario::Scenario;
use crate::seed::KeyedRoll;
use crate::time::{DAY, Millis};

/// One customer of the plan. Purchase numbers follow the arrivals' global
/// order, so a customer who finds every machine taken leaves a gap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlannedPurchase {
    pub purchase: u32,
    pub at: Millis,
    pub condominium: u32,
    /// The terminal (fleet index) the customer pays at.
    pub terminal: u32,
    pub amount_cents: i64,
    /// The card charge will be declined.
    pub declined: bool,
}

/// One condominium as the traffic sees it.
#[derive(Clone, Debug)]
struct Site {
    /// Arrivals per millisecond (a Poisson process).
    per_ms: f64,
    machines: Vec<u32>,
    terminals: Vec<u32>,
}

/// The keyed rolls, one per decision.
#[derive(Clone, Copy, Debug)]
struct Rolls {
    gap: KeyedRoll,
    machine: KeyedRoll,
    terminal: KeyedRoll,
    amount: KeyedRoll,
    decline: KeyedRoll,
    duplicate: KeyedRoll,
}

/// The plan; iterating it yields the arrivals in time order until the horizon.
#[derive(Clone, Debug)]
pub struct TrafficPlan {
    rolls: Rolls,
    sites: Vec<Site>,
    amount_cents: (i64, i64),
    decline_rate: f64,
    duplicate_delay_max: Millis,
    horizon: Millis,
    /// Each condominium's next arrival: (at, condominium, arrival number).
    pending: BinaryHeap<Reverse<(Millis, u32, u64)>>,
    next_purchase: u32,
}

impl TrafficPlan {
    pub fn new(scenario: &Scenario, seed: u64) -> Self {
        let rate = scenario.traffic.washes_per_machine_per_day;
        let sites = scenario
            .fleet
            .condominiums
            .iter()
            .map(|site| Site {
                per_ms: site.machines.len() as f64 * rate / DAY as f64,
                machines: site.machines.clone(),
                terminals: site.terminals.clone(),
            })
            .collect();
        let roll = |name: &str| KeyedRoll::new(seed, name);
        let rolls = Rolls {
            gap: roll("traffic:arrival"),
            machine: roll("traffic:machine"),
            terminal: roll("traffic:terminal"),
            amount: roll("traffic:amount"),
            decline: roll("traffic:decline"),
            duplicate: roll("traffic:duplicate"),
        };
        let mut plan = TrafficPlan {
            rolls,
            sites,
            amount_cents: scenario.traffic.amount_cents,
            decline_rate: scenario.traffic.decline_rate,
            duplicate_delay_max: scenario.terminals.duplicate_delay_max,
            horizon: scenario.horizon(),
            pending: BinaryHeap::new(),
            next_purchase: 0,
        };
        for condominium in 0..plan.sites.len() as u32 {
            plan.queue(condominium, 0, 0);
        }
        plan
    }

    /// Queues the condominium's arrival number `number`, which follows one at `after`.
    fn queue(&mut self, condominium: u32, number: u64, after: Millis) {
        let per_ms = self.sites[condominium as usize].per_ms;
        if per_ms <= 0.0 {
            return;
        }
        let uniform = self.rolls.gap.unit([u64::from(condominium), number, 0]);
        // Whole milliseconds, at least one: the one rounding of both engines.
        let gap = (-(1.0 - uniform).ln() / per_ms).ceil().max(1.0) as Millis;
        let at = after.saturating_add(gap);
        if at < self.horizon {
            self.pending.push(Reverse((at, condominium, number)));
        }
    }

    /// The next customer, or `None` past the horizon.
    pub fn next_arrival(&mut self) -> Option<PlannedPurchase> {
        let Reverse((at, condominium, number)) = self.pending.pop()?;
        self.queue(condominium, number + 1, at);
        let purchase = self.next_purchase;
        self.next_purchase += 1;
        let site = &self.sites[condominium as usize];
        assert!(!site.terminals.is_empty(), "a condominium with traffic has terminals");
        let terminal =
            site.terminals[pick(self.rolls.terminal.unit([u64::from(purchase), 0, 0]), site.terminals.len())];
        let (low, high) = self.amount_cents;
        let span = (high - low + 1) as usize;
        let amount_cents = low + pick(self.rolls.amount.unit([u64::from(purchase), 0, 0]), span) as i64;
        Some(PlannedPurchase { purchase, at, condominium, terminal, amount_cents, declined: self.declined(purchase) })
    }

    /// Whether the purchase's card charge is declined.
    pub fn declined(&self, purchase: u32) -> bool {
        self.rolls.decline.unit([u64::from(purchase), 0, 0]) < self.decline_rate
    }

    /// The customer's machine: the first free one in a keyed preference
    /// order over the condominium's machines, so the choice stays the same
    /// wherever that machine is free; `None` when every machine is taken.
    pub fn pick_machine(&self, planned: &PlannedPurchase, mut is_free: impl FnMut(u32) -> bool) -> Option<u32> {
        let purchase = u64::from(planned.purchase);
        let rank = |machine: u32| (self.rolls.machine.unit([purchase, u64::from(machine), 0]), machine);
        self.sites[planned.condominium as usize]
            .machines
            .iter()
            .copied()
            .filter(|&machine| is_free(machine))
            .min_by(|a, b| rank(*a).partial_cmp(&rank(*b)).unwrap_or(std::cmp::Ordering::Equal))
    }

    /// How long after a request its duplicate (a double tap) leaves the terminal.
    pub fn duplicate_delay(&self, purchase: u32, endpoint: Endpoint, attempt: u8) -> Millis {
        let request = (endpoint as u64) << 8 | u64::from(attempt);
        let uniform = self.rolls.duplicate.unit([u64::from(purchase), request, 0]);
        pick(uniform, (self.duplicate_delay_max + 1) as usize) as Millis
    }
}

impl Iterator for TrafficPlan {
    type Item = PlannedPurchase;

    fn next(&mut self) -> Option<PlannedPurchase> {
        self.next_arrival()
    }
}

/// An index in `0..len` from a uniform roll in `[0, 1)`.
fn pick(uniform: f64, len: usize) -> usize {
    assert!(len > 0);
    ((uniform * len as f64) as usize).min(len - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        Scenario::load(std::path::Path::new("scenarios/rollout.toml")).expect("the bundled rollout")
    }

    #[test]
    fn one_seed_one_plan_another_seed_another() {
        let scenario = scenario();
        let first: Vec<_> = TrafficPlan::new(&scenario, 1).take(200).collect();
        assert_eq!(first, TrafficPlan::new(&scenario, 1).take(200).collect::<Vec<_>>());
        let other: Vec<_> = TrafficPlan::new(&scenario, 2).take(200).collect();
        assert_ne!(first.iter().map(|p| (p.at, p.condominium)).collect::<Vec<_>>(), {
            other.iter().map(|p| (p.at, p.condominium)).collect::<Vec<_>>()
        });
    }

    #[test]
    fn arrivals_come_in_order_at_the_scenarios_rate_and_ranges() {
        let scenario = scenario();
        let plan: Vec<_> = TrafficPlan::new(&scenario, 3).collect();
        assert!(plan.windows(2).all(|w| w[0].at <= w[1].at && w[1].purchase == w[0].purchase + 1));
        assert!(plan.last().is_some_and(|p| p.at < scenario.horizon()));
        let machines = scenario.fleet.machines.len() as f64;
        let expected = machines * scenario.traffic.washes_per_machine_per_day * scenario.horizon() as f64 / DAY as f64;
        let ratio = plan.len() as f64 / expected;
        assert!((0.95..1.05).contains(&ratio), "{} arrivals, {expected:.0} expected", plan.len());
        let (low, high) = scenario.traffic.amount_cents;
        assert!(plan.iter().all(|p| (low..=high).contains(&p.amount_cents)));
        let tenth = (high - low) / 10;
        assert!(
            plan.iter().any(|p| p.amount_cents < low + tenth) && plan.iter().any(|p| p.amount_cents > high - tenth)
        );
        let fleet = &scenario.fleet;
        assert!(plan.iter().all(|p| fleet.terminals[p.terminal as usize].condominium == p.condominium));
        let declined = plan.iter().filter(|p| p.declined).count() as f64 / plan.len() as f64;
        assert!((0.01..0.03).contains(&declined), "decline rate {declined}");
    }

    #[test]
    fn the_machine_stays_the_same_wherever_it_is_free() {
        let scenario = scenario();
        let mut plan = TrafficPlan::new(&scenario, 4);
        let planned: Vec<_> = plan.by_ref().take(500).collect();
        let mut firsts = std::collections::BTreeSet::new();
        for p in &planned {
            let first = plan.pick_machine(p, |_| true).expect("all free");
            assert_eq!(scenario.fleet.machines[first as usize].condominium, p.condominium);
            let second = plan.pick_machine(p, |m| m != first).expect("others free");
            assert_ne!(first, second);
            assert_eq!(plan.pick_machine(p, |m| m == first || m == second), Some(first));
            assert_eq!(plan.pick_machine(p, |m| m == second), Some(second));
            assert_eq!(plan.pick_machine(p, |_| false), None);
            firsts.insert(first);
        }
        let bound = scenario.fleet.machines.len().min(planned.len()) / 2;
        assert!(firsts.len() > bound, "preferences vary: {} first choices", firsts.len());
    }

    #[test]
    fn duplicate_delays_are_keyed_and_within_the_maximum() {
        let scenario = scenario();
        let plan = TrafficPlan::new(&scenario, 5);
        let max = scenario.terminals.duplicate_delay_max;
        let delays: Vec<_> = (0..1000).map(|n| plan.duplicate_delay(n, Endpoint::Confirm, 1)).collect();
        assert!(delays.iter().all(|&d| d <= max));
        assert!(delays.iter().any(|&d| d < max / 10) && delays.iter().any(|&d| d > max - max / 10));
        assert_eq!(delays[7], TrafficPlan::new(&scenario, 5).duplicate_delay(7, Endpoint::Confirm, 1));
        assert_ne!(plan.duplicate_delay(7, Endpoint::Confirm, 2), plan.duplicate_delay(7, Endpoint::Confirm, 1));
    }
}
