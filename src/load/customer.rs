//! The customers of a load run: each purchase takes the next customer of
//! the seeded traffic plan (its keys, terminal and amount) and one of the
//! weighted scenarios — happy path, retry on the same keys, double tap,
//! denied condominium, declined card — and runs the live terminals' flow.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::meter::{Ended, Meter};
use super::shard::Shard;
use crate::live::shared::Shared;
use crate::live::terminals::{self, Reservations, Variant};
use crate::seed::KeyedRoll;
use crate::traffic::{PlannedPurchase, TrafficPlan};
use crate::world::terminal::PurchaseOutcome;

/// One of the load's scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "kebab-case")]
pub enum Kind {
    Happy,
    Retry,
    DoubleTap,
    DeniedCondominium,
    DeclinedCard,
}

/// The scenarios and their weights (out of 100).
pub const WEIGHTS: [(Kind, u32); 5] = [
    (Kind::Happy, 60),
    (Kind::Retry, 10),
    (Kind::DoubleTap, 10),
    (Kind::DeniedCondominium, 10),
    (Kind::DeclinedCard, 10),
];

/// The scenario of roll `unit` in `[0, 1)` among `kinds`.
pub fn pick(kinds: &[(Kind, u32)], unit: f64) -> Kind {
    let total: u32 = kinds.iter().map(|k| k.1).sum();
    let mut left = (unit * f64::from(total)) as u32;
    for (kind, weight) in kinds {
        if left < *weight {
            return *kind;
        }
        left -= weight;
    }
    kinds.last().map_or(Kind::Happy, |k| k.0)
}

/// Whether a purchase of `kind` ended as the scenario meant.
pub fn as_meant(kind: Kind, outcome: PurchaseOutcome) -> bool {
    match kind {
        Kind::DeniedCondominium => outcome == PurchaseOutcome::NotInCanary,
        Kind::DeclinedCard => outcome == PurchaseOutcome::Declined,
        _ => outcome == PurchaseOutcome::Washed,
    }
}

/// The condominiums (fleet indices) of a shard that the deployed gate
/// refuses and admits, with a terminal to buy from.
pub struct Sites {
    pub denied: Vec<u32>,
    pub admitted: Vec<u32>,
}

impl Sites {
    pub fn of(scenario: &crate::scenario::Scenario, shard: Shard) -> Sites {
        let canary = scenario.phases.last().map(|phase| &phase.canary);
        let admits = |id| canary.is_none_or(|canary| canary.admits(id));
        let sites = |admitted: bool| -> Vec<u32> {
            let playable = |i: usize, c: &crate::world::fleet::Condominium| {
                shard.owns_condominium(i as u32) && admits(c.id) == admitted && !c.terminals.is_empty()
            };
            let chosen = scenario.fleet.condominiums.iter().enumerate();
            chosen.filter(|(i, c)| playable(*i, c)).map(|(i, _)| i as u32).collect()
        };
        Sites { denied: sites(false), admitted: sites(true) }
    }
}

/// What every customer of a load run shares.
pub struct Customers {
    pub(crate) shared: Arc<Shared>,
    pub meter: Arc<Meter>,
    plan: Mutex<TrafficPlan>,
    reserved: Reservations,
    kinds: Vec<(Kind, u32)>,
    roll: KeyedRoll,
    /// Condominiums the deployed gate refuses, and admits (fleet indices).
    denied: Vec<u32>,
    admitted: Vec<u32>,
    /// Held while a customer is taken from the plan and its arrival recorded.
    turn: Mutex<()>,
    shard: Shard,
}

impl Customers {
    /// The customers of `shared`'s plan; a note if a scenario cannot be played.
    pub(crate) fn new(shared: Arc<Shared>, meter: Arc<Meter>, seed: u64, shard: Shard) -> (Customers, Option<String>) {
        let fleet = &shared.scenario.fleet;
        let Sites { denied, admitted } = Sites::of(&shared.scenario, shard);
        let mut kinds = WEIGHTS.to_vec();
        let mut note = None;
        if denied.is_empty() {
            kinds.retain(|k| k.0 != Kind::DeniedCondominium);
            note =
                Some("the deployed gate admits every condominium: the denied-condominium scenario was skipped".into());
        }
        let plan = Mutex::new(shared.traffic.clone());
        let reserved = Arc::new(Mutex::new(vec![false; fleet.machines.len()]));
        let roll = KeyedRoll::new(seed, "load:scenario");
        (Customers { shared, meter, plan, reserved, kinds, roll, denied, admitted, turn: Mutex::new(()), shard }, note)
    }

    /// The next customer and its scenario; `None` once the plan is spent.
    fn next(&self, kind: Option<Kind>) -> Option<(PlannedPurchase, Kind)> {
        let mut planned = {
            let mut plan = self.plan.lock().expect("plan lock");
            loop {
                let planned = plan.next_arrival()?;
                if self.shard.owns_purchase(planned.purchase) {
                    break planned;
                }
            }
        };
        let rolled = || pick(&self.kinds, self.roll.unit([u64::from(planned.purchase), 0, 0]));
        let kind = kind.filter(|k| self.kinds.iter().any(|w| w.0 == *k)).unwrap_or_else(rolled);
        planned.declined = kind == Kind::DeclinedCard;
        // The plan's customer moves to a condominium the scenario needs:
        // one the gate refuses for a denied one, one it admits for the rest.
        let denied = kind == Kind::DeniedCondominium;
        let fleet = &self.shared.scenario.fleet;
        let sites = if denied { &self.denied } else { &self.admitted };
        // Moved unless already at a site of the right kind and of this shard.
        if sites.binary_search(&planned.condominium).is_err() && !sites.is_empty() {
            let at = self.roll.unit([u64::from(planned.purchase), 1, 0]);
            let condominium = sites[((at * sites.len() as f64) as usize).min(sites.len() - 1)];
            planned.condominium = condominium;
            planned.terminal = fleet.condominiums[condominium as usize].terminals[0];
        }
        Some((planned, kind))
    }

    /// The scenarios this run plays, with their weights.
    pub fn kinds(&self) -> &[(Kind, u32)] {
        &self.kinds
    }

    /// One purchase of `step`, planned to start at `planned_at`, of `kind`
    /// (`None`: drawn by weight).
    pub async fn one(self: &Arc<Self>, step: usize, planned_at: Instant, kind: Option<Kind>) -> Turn {
        let (planned, kind, arrived) = {
            // One step, so that concurrent users record arrivals in plan
            // order (the checkers rely on it).
            let _turn = self.turn.lock().expect("turn lock");
            let Some((planned, kind)) = self.next(kind) else { return Turn::PlanSpent };
            let arrived = terminals::arrive(&self.shared, &planned, &self.reserved);
            (planned, kind, arrived)
        };
        let Some((machine, purchase)) = arrived else {
            self.meter.not_started(step, "no free machine");
            return Turn::NoFreeMachine;
        };
        let key = purchase.idempotency_key.clone();
        self.meter.started(step, &key, Instant::now().saturating_duration_since(planned_at));
        let variant = match kind {
            Kind::Retry => Variant::Retry,
            Kind::DoubleTap => Variant::DoubleTap,
            _ => Variant::Plain,
        };
        let card = self.shared.scenario.latency.card.0;
        let outcome = terminals::buy(&self.shared, planned.purchase, purchase, (card, planned.declined), variant).await;
        self.reserved.lock().expect("reservations lock")[machine as usize] = false;
        let ended = if as_meant(kind, outcome) { Ended::Succeeded } else { Ended::Failed };
        let took = Instant::now().saturating_duration_since(planned_at);
        self.meter.ended(step, &key, took, ended, &format!("{kind}: {outcome:?}"));
        if outcome == PurchaseOutcome::Washed { Turn::Washed } else { Turn::Refused }
    }
}

/// How one customer's turn went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// The customer's machine ran.
    Washed,
    /// The purchase ended without a wash (denied condominium, declined card, a failure).
    Refused,
    /// Every machine of the condominium was busy: counted as not started.
    NoFreeMachine,
    /// The plan has no customer left.
    PlanSpent,
}

/// How long a purchase may take at most (every attempt timing out, backoffs included).
pub(crate) fn purchase_bound(shared: &Shared) -> Duration {
    let policy = &shared.scenario.terminals;
    let per_step =
        policy.request_timeout.saturating_add(policy.backoff << 6).saturating_mul(u64::from(policy.max_attempts));
    Duration::from_millis(per_step.saturating_mul(4).saturating_add(60_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_picked_by_weight() {
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..1000 {
            *counts.entry(pick(&WEIGHTS, f64::from(i) / 1000.0).to_string()).or_insert(0) += 1;
        }
        assert_eq!(counts["happy"], 600);
        assert_eq!(counts["double-tap"], 100);
        assert_eq!(counts["denied-condominium"], 100);
        let without: Vec<_> = WEIGHTS.iter().copied().filter(|k| k.0 != Kind::DeniedCondominium).collect();
        assert!((0..1000).all(|i| pick(&without, f64::from(i) / 1000.0) != Kind::DeniedCondominium));
        assert!(as_meant(Kind::DeclinedCard, PurchaseOutcome::Declined));
        assert!(!as_meant(Kind::Happy, PurchaseOutcome::NotInCanary));
    }
}
