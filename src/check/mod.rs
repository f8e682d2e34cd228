//! The checkers: invariants D1–D8 of DESIGN.md, judged on the recorded
//! history alone (ground truth from the PSP ledger and the machines' logs,
//! what each terminal was told, and the stack's answers to the final audit).
//! Every violation carries its witness: the ids and the records that show it.

pub mod kpi;

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use serde::Serialize;
use uuid::Uuid;

use crate::contract::{Endpoint, ErrorCode, PaymentStatus, Text};
use crate::history::{Event, History};

/// One broken invariant, with the evidence an engineer audits (§4C).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub code: &'static str,
    pub title: &'static str,
    pub summary: String,
    pub payment: Option<Uuid>,
    pub purchase: Option<u32>,
    /// Indices of the history records that show it.
    pub witness: Vec<usize>,
}

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
    charges_by_purchase: BTreeMap<u32, Vec<(Text, usize)>>,
    charges_by_payment: BTreeMap<Uuid, Vec<(Text, usize)>>,
    refunded: FxHashMap<Text, usize>,
    /// Which payment each captured charge belongs to: (payment, record).
    charge_owner: FxHashMap<Text, (Uuid, usize)>,
    cycles: BTreeMap<Uuid, Vec<usize>>,
    told: BTreeMap<Uuid, (PaymentStatus, usize)>,
    audited: BTreeMap<Uuid, (Option<PaymentStatus>, usize)>,
    audited_charges: Vec<(Text, Vec<Uuid>, usize)>,
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
                assert_eq!(*purchase as usize, self.purchase_condominium.len(), "purchases are numbered in order");
                self.purchase_condominium.push(*condominium);
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
            Event::AuditedCharge { provider_ref, payments } => {
                self.audited_charges.push((provider_ref.clone(), payments.clone(), index));
            }
            _ => {}
        }
    }

    /// Captured charges of a payment that were never refunded.
    fn unrefunded(&self, payment: &Uuid) -> Vec<&(Text, usize)> {
        let charges = self.charges_by_payment.get(payment).map(Vec::as_slice).unwrap_or(&[]);
        charges.iter().filter(|(provider_ref, _)| !self.refunded.contains_key(provider_ref)).collect()
    }
}

fn status_rank(status: PaymentStatus) -> u8 {
    match status {
        PaymentStatus::Authorized => 0,
        PaymentStatus::Confirmed => 1,
        _ => 2,
    }
}

/// Runs every checker; violations come in code order, then history order.
pub fn check(history: &History) -> Vec<Violation> {
    let facts = Facts::gather(history);
    let mut violations = Vec::new();
    duplicate_charges(&facts, &mut violations);
    duplicate_cycles(&facts, &mut violations);
    paid_no_wash(&facts, &mut violations);
    wash_no_pay(&facts, &mut violations);
    gate_breaches(history, &facts, &mut violations);
    lost_payments(&facts, &mut violations);
    stuck_payments(&facts, &mut violations);
    stranded_by_rollback(history, &facts, &mut violations);
    violations
}

fn violation(
    code: &'static str,
    title: &'static str,
    summary: String,
    payment: Option<Uuid>,
    purchase: Option<u32>,
    witness: Vec<usize>,
) -> Violation {
    Violation { code, title, summary, payment, purchase, witness }
}

/// D1: one purchase ends with more than one captured, unrefunded charge.
fn duplicate_charges(facts: &Facts, out: &mut Vec<Violation>) {
    for (purchase, charges) in &facts.charges_by_purchase {
        let open: Vec<&(Text, usize)> = charges.iter().filter(|(r, _)| !facts.refunded.contains_key(r)).collect();
        if open.len() > 1 {
            let refs: Vec<&str> = open.iter().map(|(r, _)| &**r).collect();
            let summary = format!("purchase {purchase} was charged {} times: {}", open.len(), refs.join(", "));
            out.push(violation(
                "D1",
                "duplicate charge",
                summary,
                None,
                Some(*purchase),
                open.iter().map(|(_, i)| *i).collect(),
            ));
        }
    }
}

/// D2: one payment starts more than one machine cycle.
fn duplicate_cycles(facts: &Facts, out: &mut Vec<Violation>) {
    for (payment, cycles) in &facts.cycles {
        if cycles.len() > 1 {
            let summary = format!("payment {payment} started {} machine cycles", cycles.len());
            out.push(violation("D2", "duplicate cycle", summary, Some(*payment), None, cycles.clone()));
        }
    }
}

/// D3: a captured, unrefunded charge has no cycle once the TTL and a sweep passed.
fn paid_no_wash(facts: &Facts, out: &mut Vec<Violation>) {
    for payment in facts.charges_by_payment.keys() {
        let open = facts.unrefunded(payment);
        if !open.is_empty() && !facts.cycles.contains_key(payment) {
            let mut witness: Vec<usize> = open.iter().map(|(_, i)| *i).collect();
            witness.extend(facts.audited.get(payment).map(|(_, i)| *i));
            let summary = format!("payment {payment} was charged ({}) and never washed nor refunded", open[0].0);
            out.push(violation("D3", "paid, no wash", summary, Some(*payment), None, witness));
        }
    }
}

/// D4: a cycle runs for a payment with no captured, unrefunded charge.
fn wash_no_pay(facts: &Facts, out: &mut Vec<Violation>) {
    for (payment, cycles) in &facts.cycles {
        if facts.unrefunded(payment).is_empty() {
            let mut witness = cycles.clone();
            let charges = facts.charges_by_payment.get(payment).map(Vec::as_slice).unwrap_or(&[]);
            witness.extend(charges.iter().filter_map(|(r, _)| facts.refunded.get(r).copied()));
            let summary = format!("payment {payment} washed with no standing charge (refunded or never captured)");
            out.push(violation("D4", "wash, no pay", summary, Some(*payment), None, witness));
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
        if !history.configs[usize::from(config)].admits(condominium_id) {
            let summary =
                format!("authorize for condominium {condominium_id} succeeded on a replica whose canary denies it");
            out.push(violation("D5", "gate breach", summary, None, Some(*purchase), vec![*sent, received, index]));
        }
    }
}

/// D6: a payment a terminal was given cannot be found, or went back in state;
/// or the audit by provider_ref points at another payment.
fn lost_payments(facts: &Facts, out: &mut Vec<Violation>) {
    for (payment, (told, told_at)) in &facts.told {
        let Some((audited, audited_at)) = facts.audited.get(payment) else { continue };
        let summary = match audited {
            None => format!("payment {payment} was {} to a terminal and the stack cannot find it", told.as_str()),
            Some(now) if !told.may_become(*now) => {
                format!("payment {payment} was {} to a terminal and is now {}", told.as_str(), now.as_str())
            }
            Some(_) => continue,
        };
        out.push(violation("D6", "lost payment", summary, Some(*payment), None, vec![*told_at, *audited_at]));
    }
    for (provider_ref, payments, index) in &facts.audited_charges {
        let Some((owner, charged_at)) = facts.charge_owner.get(provider_ref) else { continue };
        if payments.iter().any(|p| p != owner) {
            let summary = format!("the audit of {provider_ref} names another payment than {owner}");
            out.push(violation("D6", "lost payment", summary, Some(*owner), None, vec![*charged_at, *index]));
        }
    }
}

/// D7: a payment is not in a final state at the end of the horizon.
fn stuck_payments(facts: &Facts, out: &mut Vec<Violation>) {
    for (payment, (status, index)) in &facts.audited {
        if let Some(status) = status.filter(|status| !status.is_final()) {
            let summary = format!("payment {payment} is still {} at the end of the run", status.as_str());
            out.push(violation("D7", "stuck", summary, Some(*payment), None, vec![*index]));
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
                format!("purchase {purchase} was refused {} by the canary gate after it authorized", endpoint.name());
            out.push(violation("D8", "stranded by rollback", summary, None, Some(*purchase), witness));
        }
    }
}
