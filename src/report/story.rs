//! The story of a violation: beside the records that break the invariant,
//! every record that led to them — the purchase's arrival, its terminal's
//! requests and what the stack answered and the terminal heard, the
//! operator's requests that named the payment, the faults injected on the
//! purchase's calls (the gateway's timeout, the PSP's lost answer), what
//! the PSP and the gateway answered the stack's calls about the payment, the
//! charges, refunds and cycles of the payment — in time order, so that a
//! reader sees why, not only what. Gathered in two passes over the history,
//! for the listed violations only.

use std::collections::{BTreeSet, HashMap, HashSet};

use uuid::Uuid;

use crate::check::Violation;
use crate::faults::FaultKey;
use crate::history::{Event, History, NO_PURCHASE};

/// At most this many records in a story (the records that break the
/// invariant are always kept; the context nearest before them first).
pub const STORY_RECORDS_MAX: usize = 40;

/// The records of the purchases and payments of some violations.
pub struct Stories {
    by_purchase: HashMap<u32, Vec<usize>>,
    by_payment: HashMap<Uuid, Vec<usize>>,
    /// Each payment's purchase, as its charge or a terminal's tale names it.
    purchase_of: HashMap<Uuid, u32>,
}

impl Stories {
    /// Gathers the stories of `violations` in `history`.
    pub fn gather<'a>(history: &History, violations: impl Iterator<Item = &'a Violation>) -> Stories {
        let mut payments = HashSet::new();
        let mut purchases = HashSet::new();
        for violation in violations {
            payments.extend(violation.payment);
            purchases.extend(violation.purchase);
        }
        let mut stories =
            Stories { by_purchase: HashMap::new(), by_payment: HashMap::new(), purchase_of: HashMap::new() };
        if payments.is_empty() && purchases.is_empty() {
            return stories; // a clean run: no pass over its history
        }
        stories.purchase_of = purchases_of(history, &payments);
        purchases.extend(stories.purchase_of.values().copied());
        stories.collect(history, &purchases, &payments);
        stories
    }

    /// The story of `violation`: its own records (`true`) among the
    /// records that led to them (`false`), in history order.
    pub fn of(&self, violation: &Violation) -> Vec<(usize, bool)> {
        let key: BTreeSet<usize> = violation.witness.iter().copied().collect();
        let purchase = violation.purchase.or_else(|| violation.payment.and_then(|p| self.purchase_of.get(&p).copied()));
        let mut context: BTreeSet<usize> = BTreeSet::new();
        if let Some(records) = purchase.and_then(|p| self.by_purchase.get(&p)) {
            context.extend(records.iter().copied());
        }
        if let Some(records) = violation.payment.and_then(|p| self.by_payment.get(&p)) {
            context.extend(records.iter().copied());
        }
        let last_key = key.iter().next_back().copied().unwrap_or(usize::MAX);
        let room = STORY_RECORDS_MAX.saturating_sub(key.len());
        // What led to it: the context up to its last record, nearest first.
        let kept: Vec<usize> =
            context.iter().copied().filter(|r| *r <= last_key && !key.contains(r)).rev().take(room).collect();
        let mut story: Vec<(usize, bool)> =
            key.iter().map(|r| (*r, true)).chain(kept.into_iter().map(|r| (r, false))).collect();
        story.sort_unstable();
        story
    }

    fn collect(&mut self, history: &History, purchases: &HashSet<u32>, payments: &HashSet<Uuid>) {
        // Per request: its purchase (terminal requests) or its sent record
        // (the operator's and posim's own, tied to a payment by the answer).
        let mut request_purchase: HashMap<u32, u32> = HashMap::new();
        let mut unowned_sent: HashMap<u32, usize> = HashMap::new();
        for (index, record) in history.records.iter().enumerate() {
            let (purchase, payment) = match &record.event {
                Event::Arrived { purchase, .. } => (Some(*purchase), None),
                Event::Sent { request, purchase, .. } if *purchase == NO_PURCHASE => {
                    unowned_sent.insert(*request, index);
                    (None, None)
                }
                Event::Sent { request, purchase, .. } => {
                    request_purchase.insert(*request, *purchase);
                    (Some(*purchase), None)
                }
                Event::Received { request, .. } | Event::Heard { request, .. } => {
                    (request_purchase.get(request).copied(), None)
                }
                Event::Answered { request, payment, .. } => {
                    if let Some(payment) = payment.filter(|p| payments.contains(p))
                        && let Some(sent) = unowned_sent.remove(request)
                    {
                        self.by_payment.entry(payment).or_default().push(sent);
                    }
                    (request_purchase.get(request).copied(), *payment)
                }
                Event::Told { purchase, payment, .. } | Event::Charged { purchase, payment, .. } => {
                    (Some(*purchase), Some(*payment))
                }
                Event::Refunded { payment, .. }
                | Event::CycleStarted { payment, .. }
                | Event::Audited { payment, .. } => (None, Some(*payment)),
                Event::WorldAnswered { payment, .. } => (None, *payment),
                Event::Fault { key: FaultKey::Call { purchase, .. }, .. } => (Some(*purchase), None),
                _ => (None, None),
            };
            if let Some(purchase) = purchase.filter(|p| purchases.contains(p)) {
                self.by_purchase.entry(purchase).or_default().push(index);
            } else if let Some(payment) = payment.filter(|p| payments.contains(p)) {
                self.by_payment.entry(payment).or_default().push(index);
            }
        }
    }
}

/// The purchase of each of `payments`, from the records that name both.
fn purchases_of(history: &History, payments: &HashSet<Uuid>) -> HashMap<Uuid, u32> {
    let mut found = HashMap::new();
    for record in &history.records {
        if let Event::Told { purchase, payment, .. } | Event::Charged { purchase, payment, .. } = &record.event
            && *purchase != NO_PURCHASE
            && payments.contains(payment)
        {
            found.entry(*payment).or_insert(*purchase);
        }
    }
    found
}
