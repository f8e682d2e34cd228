//! The checkers: invariants D1–D8 of DESIGN.md and D9, the contract's own
//! promises ([`conformance`]), judged on the recorded
//! history alone (ground truth from the PSP ledger and the machines' logs,
//! what each terminal was told, and the stack's answers to the final audit).
//! Every violation carries its witness: the ids and the records that show it.

pub mod conformance;
pub mod invariant;
pub mod kpi;
pub mod rollback;

pub use invariant::Invariant;

use rustc_hash::FxHashMap;
use serde::Serialize;
use smallvec::SmallVec;
use uuid::Uuid;

use crate::contract::{Endpoint, ErrorCode, PaymentStatus, Text};
use crate::history::{Event, History};

/// One broken invariant, with the evidence an engineer audits (§4C).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub code: Invariant,
    pub summary: String,
    pub payment: Option<Uuid>,
    pub purchase: Option<u32>,
    /// Indices of the history records that show it.
    pub witness: Vec<usize>,
}

/// A list that nearly always holds one item (the charges of a purchase, the
/// cycles of a payment): kept inline, so a run's hundreds of thousands of
/// them cost no allocation each.
type Few<T> = SmallVec<[T; 1]>;

/// What the checkers need, gathered in one pass over the history.
#[derive(Default)]
struct Facts {
    /// Per request id: (purchase, endpoint, sent record).
    requests: Vec<Option<(u32, Endpoint, usize)>>,
    /// Per request id: (config, received record).
    received: Vec<Option<(u16, usize)>>,
    /// Per purchase: its condominium.
    purchase_condominium: Vec<u32>,
    /// Captured charges per purchase and per payment: (provider_ref, record).
    charges_by_purchase: FxHashMap<u32, Few<(Text, usize)>>,
    charges_by_payment: FxHashMap<Uuid, Few<(Text, usize)>>,
    refunded: FxHashMap<Text, usize>,
    /// Which payment each captured charge belongs to: (payment, record).
    charge_owner: FxHashMap<Text, (Uuid, usize)>,
    cycles: FxHashMap<Uuid, Few<usize>>,
    told: FxHashMap<Uuid, (PaymentStatus, usize)>,
    audited: FxHashMap<Uuid, (Option<PaymentStatus>, usize)>,
    /// The `AuditedCharge` records (read back from the history when judged).
    audited_charges: Vec<usize>,
}

impl Facts {
    fn gather(history: &History) -> Facts {
        let mut facts = Facts::default();
        for (index, record) in history.records.iter().enumerate() {
            facts.note(index, &record.event);
        }
        facts
    }

    fn note(&mut self, index: usize, event: &Event) {
        match event {
            Event::Arrived { purchase, condominium, .. } => {
                crate::history::note_arrival(&mut self.purchase_condominium, *purchase, *condominium);
            }
            Event::Sent { request, purchase, endpoint, .. } => {
                let slot = *request as usize;
                if self.requests.len() <= slot {
                    self.requests.resize(slot + 1, None);
                }
                self.requests[slot] = Some((*purchase, *endpoint, index));
            }
            Event::Received { request, config, .. } => {
                let slot = *request as usize;
                if self.received.len() <= slot {
                    self.received.resize(slot + 1, None);
                }
                self.received[slot] = Some((*config, index));
            }
            Event::Charged { purchase, payment, provider_ref, captured: true } => {
                self.charges_by_purchase.entry(*purchase).or_default().push((provider_ref.clone(), index));
                self.charges_by_payment.entry(*payment).or_default().push((provider_ref.clone(), index));
                self.charge_owner.insert(provider_ref.clone(), (*payment, index));
            }
            Event::Refunded { provider_ref, .. } => {
                self.refunded.insert(provider_ref.clone(), index);
            }
            Event::CycleStarted { payment, .. } => self.cycles.entry(*payment).or_default().push(index),
            Event::Told { payment, status, .. } => {
                let entry = self.told.entry(*payment).or_insert((*status, index));
                if status_rank(*status) > status_rank(entry.0) {
                    *entry = (*status, index);
                }
            }
            Event::Audited { payment, status } => {
                self.audited.insert(*payment, (*status, index));
            }
            Event::AuditedCharge { .. } => self.audited_charges.push(index),
            _ => {}
        }
    }

    /// Captured charges of a payment that were never refunded.
    fn unrefunded(&self, payment: &Uuid) -> impl Iterator<Item = &(Text, usize)> {
        self.charges_of(payment).iter().filter(|(provider_ref, _)| !self.refunded.contains_key(provider_ref))
    }

    fn charges_of(&self, payment: &Uuid) -> &[(Text, usize)] {
        self.charges_by_payment.get(payment).map_or(&[], |charges| charges.as_slice())
    }
}

fn status_rank(status: PaymentStatus) -> u8 {
    match status {
        PaymentStatus::Authorized => 0,
        PaymentStatus::Confirmed => 1,
        _ => 2,
    }
}

/// Runs every checker; violations come in code order, then history order
/// (maps are hashed for speed, so the order is imposed here).
pub fn check(history: &History) -> Vec<Violation> {
    let facts = Facts::gather(history);
    let mut violations = Vec::new();
    duplicate_charges(&facts, &mut violations);
    duplicate_cycles(&facts, &mut violations);
    paid_no_wash(&facts, &mut violations);
    wash_no_pay(&facts, &mut violations);
    gate_breaches(history, &facts, &mut violations);
    lost_payments(history, &facts, &mut violations);
    stuck_payments(&facts, &mut violations);
    stranded_by_rollback(history, &facts, &mut violations);
    conformance::contract_breaches(history, &facts, &mut violations);
    violations.sort_by(|a, b| {
        (a.code, a.witness.iter().min(), &a.summary).cmp(&(b.code, b.witness.iter().min(), &b.summary))
    });
    violations
}

fn violation(
    code: Invariant,
    summary: String,
    payment: Option<Uuid>,
    purchase: Option<u32>,
    witness: Vec<usize>,
) -> Violation {
    Violation { code, summary, payment, purchase, witness }
}

/// D1: one purchase ends with more than one captured, unrefunded charge.
fn duplicate_charges(facts: &Facts, out: &mut Vec<Violation>) {
    // Only a purchase charged more than once can hold two standing charges.
    for (purchase, charges) in facts.charges_by_purchase.iter().filter(|(_, charges)| charges.len() > 1) {
        let open: Vec<&(Text, usize)> = charges.iter().filter(|(r, _)| !facts.refunded.contains_key(r)).collect();
        if open.len() > 1 {
            let refs: Vec<&str> = open.iter().map(|(r, _)| &**r).collect();
            let summary = format!("purchase {purchase} was charged {} times: {}", open.len(), refs.join(", "));
            out.push(violation(Invariant::D1, summary, None, Some(*purchase), open.iter().map(|(_, i)| *i).collect()));
        }
    }
}

/// D2: one payment starts more than one machine cycle.
fn duplicate_cycles(facts: &Facts, out: &mut Vec<Violation>) {
    for (payment, cycles) in &facts.cycles {
        if cycles.len() > 1 {
            let summary = format!("payment {payment} started {} machine cycles", cycles.len());
            out.push(violation(Invariant::D2, summary, Some(*payment), None, cycles.to_vec()));
        }
    }
}

/// D3: a captured, unrefunded charge has no cycle once the TTL and a sweep passed.
fn paid_no_wash(facts: &Facts, out: &mut Vec<Violation>) {
    for payment in facts.charges_by_payment.keys().filter(|payment| !facts.cycles.contains_key(*payment)) {
        let open: Vec<&(Text, usize)> = facts.unrefunded(payment).collect();
        if !open.is_empty() {
            let mut witness: Vec<usize> = open.iter().map(|(_, i)| *i).collect();
            witness.extend(facts.audited.get(payment).map(|(_, i)| *i));
            let summary = format!("payment {payment} was charged ({}) and never washed nor refunded", open[0].0);
            out.push(violation(Invariant::D3, summary, Some(*payment), None, witness));
        }
    }
}

/// D4: a cycle runs for a payment with no captured, unrefunded charge.
fn wash_no_pay(facts: &Facts, out: &mut Vec<Violation>) {
    for (payment, cycles) in &facts.cycles {
        if facts.unrefunded(payment).next().is_none() {
            let mut witness = cycles.to_vec();
            witness.extend(facts.charges_of(payment).iter().filter_map(|(r, _)| facts.refunded.get(r).copied()));
            let summary = format!("payment {payment} washed with no standing charge (refunded or never captured)");
            out.push(violation(Invariant::D4, summary, Some(*payment), None, witness));
        }
    }
}

/// D5: authorize succeeds where the replica's applied config denies the condominium.
fn gate_breaches(history: &History, facts: &Facts, out: &mut Vec<Violation>) {
    for (index, record) in history.records.iter().enumerate() {
        let Event::Answered { request, status: 200..=299, .. } = record.event else { continue };
        let Some(Some((purchase, Endpoint::Authorize, sent))) = facts.requests.get(request as usize) else { continue };
        let (Some(Some((config, received))), Some(&condominium)) =
            (facts.received.get(request as usize).copied(), facts.purchase_condominium.get(*purchase as usize))
        else {
            continue;
        };
        let condominium_id = history.condominiums[condominium as usize];
        if !history.canary(config).admits(condominium_id) {
            let summary =
                format!("authorize for condominium {condominium_id} succeeded on a replica whose canary denies it");
            out.push(violation(Invariant::D5, summary, None, Some(*purchase), vec![*sent, received, index]));
        }
    }
}

/// D6: a payment a terminal was given cannot be found, or went back in state;
/// or the audit by provider_ref points at another payment.
fn lost_payments(history: &History, facts: &Facts, out: &mut Vec<Violation>) {
    for (payment, (told, told_at)) in &facts.told {
        let Some((audited, audited_at)) = facts.audited.get(payment) else { continue };
        let summary = match audited {
            None => format!("payment {payment} was {told} to a terminal and the stack cannot find it"),
            Some(now) if !told.may_become(*now) => {
                format!("payment {payment} was {told} to a terminal and is now {now}")
            }
            Some(_) => continue,
        };
        out.push(violation(Invariant::D6, summary, Some(*payment), None, vec![*told_at, *audited_at]));
    }
    for &index in &facts.audited_charges {
        let Event::AuditedCharge { provider_ref, payments } = &history.records[index].event else { continue };
        let Some((owner, charged_at)) = facts.charge_owner.get(provider_ref) else { continue };
        if payments.iter().any(|p| p != owner) {
            let summary = format!("the audit of {provider_ref} names another payment than {owner}");
            out.push(violation(Invariant::D6, summary, Some(*owner), None, vec![*charged_at, index]));
        }
    }
}

/// D7: a payment is not in a final state at the end of the horizon.
fn stuck_payments(facts: &Facts, out: &mut Vec<Violation>) {
    for (payment, (status, index)) in &facts.audited {
        if let Some(status) = status.filter(|status| !status.is_final()) {
            let summary = format!("payment {payment} is still {status} at the end of the run");
            out.push(violation(Invariant::D7, summary, Some(*payment), None, vec![*index]));
        }
    }
}

/// D8: confirm or execute-cycle refused by the canary gate — a payment in
/// flight across a config change was stranded.
fn stranded_by_rollback(history: &History, facts: &Facts, out: &mut Vec<Violation>) {
    for (index, record) in history.records.iter().enumerate() {
        let Event::Answered { request, error: Some(ErrorCode::CanaryNotAllowed), .. } = record.event else { continue };
        let Some(Some((purchase, endpoint, sent))) = facts.requests.get(request as usize) else { continue };
        if matches!(endpoint, Endpoint::Confirm | Endpoint::ExecuteCycle) {
            let mut witness = vec![*sent];
            witness.extend(facts.received.get(request as usize).copied().flatten().map(|(_, i)| i));
            witness.push(index);
            let summary =
                format!("purchase {purchase} was refused {} by the canary gate after it authorized", endpoint);
            out.push(violation(Invariant::D8, summary, None, Some(*purchase), witness));
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-made histories: each checker must fire on its anomaly and stay
    //! quiet on the healthy story next to it.

    use super::*;
    use crate::contract::CanaryConfig;
    use crate::time::Millis;

    fn payment(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    pub(super) fn history(events: Vec<(Millis, Event)>) -> History {
        let mut history = History {
            deploys: vec![crate::history::DeployInfo {
                label: "100%".into(),
                canary: CanaryConfig::off(),
                phase: 0,
                bad_build_error_rate: 0.0,
            }],
            condominiums: vec![Uuid::from_u128(77)],
            machine_ids: vec!["m-0".into()],
            ..History::default()
        };
        for (at, event) in events {
            history.push(at, event);
        }
        history
    }

    fn charged(purchase: u32, n: u128, provider_ref: &str) -> Event {
        Event::Charged { purchase, payment: payment(n), provider_ref: provider_ref.into(), captured: true }
    }

    fn cycle(n: u128, key: &str) -> Event {
        Event::CycleStarted {
            machine: 0,
            payment: payment(n),
            execute_key: key.into(),
            cycle: format!("c-{key}").into(),
        }
    }

    fn audited(n: u128, status: Option<PaymentStatus>) -> Event {
        Event::Audited { payment: payment(n), status }
    }

    fn codes(history: &History) -> Vec<&'static str> {
        check(history).iter().map(|v| v.code.code()).collect()
    }

    #[test]
    fn a_healthy_wash_breaks_nothing() {
        let h = history(vec![
            (1, charged(0, 1, "ch1")),
            (2, Event::Told { purchase: 0, payment: payment(1), status: PaymentStatus::Executed }),
            (3, cycle(1, "k")),
            (9, audited(1, Some(PaymentStatus::Executed))),
        ]);
        assert!(codes(&h).is_empty(), "{:?}", check(&h));
    }

    #[test]
    fn two_standing_charges_for_one_purchase_are_d1() {
        let h =
            history(vec![(1, charged(0, 1, "ch1")), (2, charged(0, 2, "ch2")), (3, cycle(1, "k")), (4, cycle(2, "j"))]);
        assert_eq!(codes(&h), ["D1"]);
        let refunded = history(vec![
            (1, charged(0, 1, "ch1")),
            (2, charged(0, 2, "ch2")),
            (3, cycle(1, "k")),
            (4, Event::Refunded { payment: payment(2), provider_ref: "ch2".into() }),
        ]);
        assert!(codes(&refunded).is_empty(), "a refunded second charge is no duplicate");
    }

    #[test]
    fn paid_without_wash_is_d3_and_wash_without_pay_is_d4() {
        let paid = history(vec![(1, charged(0, 1, "ch1")), (9, audited(1, Some(PaymentStatus::Confirmed)))]);
        assert_eq!(codes(&paid), ["D3", "D7"]);
        let free = history(vec![
            (1, charged(0, 1, "ch1")),
            (2, cycle(1, "k")),
            (3, Event::Refunded { payment: payment(1), provider_ref: "ch1".into() }),
        ]);
        assert_eq!(codes(&free), ["D4"]);
    }

    #[test]
    fn a_payment_that_vanishes_or_goes_back_is_d6() {
        let told = |status| Event::Told { purchase: 0, payment: payment(1), status };
        let vanished = history(vec![(1, told(PaymentStatus::Authorized)), (9, audited(1, None))]);
        assert_eq!(codes(&vanished), ["D6"]);
        let back = history(vec![
            (1, charged(0, 1, "ch1")),
            (2, told(PaymentStatus::Executed)),
            (3, cycle(1, "k")),
            (9, audited(1, Some(PaymentStatus::Confirmed))),
        ]);
        assert_eq!(codes(&back), ["D6", "D7"]);
        let misfiled = history(vec![
            (1, charged(0, 1, "ch1")),
            (2, cycle(1, "k")),
            (9, Event::AuditedCharge { provider_ref: "ch1".into(), payments: vec![payment(2)] }),
        ]);
        assert_eq!(codes(&misfiled), ["D6"]);
    }

    #[test]
    fn the_gate_and_the_stranded_are_d5_and_d8() {
        let mut h = history(vec![
            (0, Event::Arrived { purchase: 0, condominium: 0, machine: 0 }),
            (1, Event::Sent { request: 0, purchase: 0, endpoint: Endpoint::Authorize, attempt: 1, twin: false }),
            (2, Event::Received { request: 0, replica: 0, config: 0 }),
            (
                3,
                Event::Answered { request: 0, status: 201, error: None, payment: None, execute_key: None, cycle: None },
            ),
            (4, Event::Sent { request: 1, purchase: 0, endpoint: Endpoint::Confirm, attempt: 1, twin: false }),
            (5, Event::Received { request: 1, replica: 0, config: 0 }),
            (6, Event::answered(1, 403, &crate::contract::Reply::error(ErrorCode::CanaryNotAllowed, "gate"))),
        ]);
        assert_eq!(codes(&h), ["D8"], "an open gate admits; a 403 on confirm strands");
        h.deploys[0].canary = CanaryConfig::new(crate::contract::CanaryMode::Allowlist, vec![], vec![]);
        assert_eq!(codes(&h), ["D5", "D8"], "an empty allowlist admits none");
    }
}
