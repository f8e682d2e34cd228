//! The controller's eyes: KPIs read off the history as it grows, one record
//! at a time from where the last look stopped — failure rates since the
//! current deploy, failures per condominium, the sweep's backlog, duplicates
//! in the ground truth, double confirmations and customers who paid and left
//! without a wash. Engine-agnostic: it reads only the history.

use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::check::kpi::is_failure;
use crate::contract::{Endpoint, PaymentStatus, Text};
use crate::history::{Event, History, NO_PURCHASE};
use crate::time::Millis;
use crate::world::PurchaseOutcome;

/// Attempts and failures of one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    pub attempts: u64,
    pub failures: u64,
}

impl Rate {
    pub fn value(self) -> f64 {
        if self.attempts == 0 { 0.0 } else { self.failures as f64 / self.attempts as f64 }
    }

    fn note(&mut self, failed: bool) {
        self.attempts += 1;
        self.failures += u64::from(failed);
    }
}

/// What the watch saw since the window opened (at the last deploy).
#[derive(Clone, Debug, Default)]
pub struct WindowView {
    pub from: Millis,
    pub confirm: Rate,
    pub execute: Rate,
    pub sweep_backlog_max: u32,
    /// Per condominium index: failures of confirm and execute-cycle.
    pub failures_by_condominium: FxHashMap<u32, Rate>,
    /// Duplicates found in the ground truth during the window.
    pub duplicates: Vec<String>,
}

impl WindowView {
    pub fn any_failure(&self) -> bool {
        self.confirm.failures + self.execute.failures > 0
    }
}

#[derive(Clone, Copy)]
struct SentRequest {
    endpoint: Endpoint,
    purchase: u32,
    twin: bool,
    /// The deploy of the replica that took it, once it reached the stack.
    served_by: Option<u16>,
}

#[derive(Default)]
pub struct Watch {
    cursor: usize,
    sent: FxHashMap<u32, SentRequest>,
    purchase_condominium: Vec<u32>,
    payment_of_purchase: FxHashMap<u32, Uuid>,
    pub window: WindowView,
    /// The deploy the window judges: requests another deploy served do not count.
    deploy: u16,
    charge_owner: FxHashMap<Text, u32>,
    standing_charges: FxHashMap<u32, u32>,
    cycles: FxHashMap<Uuid, u32>,
    confirmations: FxHashMap<u32, u32>,
    /// Purchases whose terminal heard more than one confirmation.
    pub double_confirmed: Vec<u32>,
    /// Purchases that paid and gave up at execute-cycle, not yet reprocessed.
    pub gave_up_executing: Vec<u32>,
}

impl Watch {
    /// Opens a new window at `from` for `deploy` (a deploy was decided).
    pub fn open_window(&mut self, from: Millis, deploy: u16) {
        self.window = WindowView { from, ..WindowView::default() };
        self.deploy = deploy;
    }

    pub fn payment_of(&self, purchase: u32) -> Option<Uuid> {
        self.payment_of_purchase.get(&purchase).copied()
    }

    pub fn cycles_of(&self, payment: Uuid) -> u32 {
        self.cycles.get(&payment).copied().unwrap_or(0)
    }

    /// Reads the records added since the last call.
    pub fn catch_up(&mut self, history: &History) {
        while let Some(record) = history.records.get(self.cursor) {
            self.cursor += 1;
            self.note(&record.event);
        }
    }

    fn note(&mut self, event: &Event) {
        match event {
            Event::Arrived { purchase, condominium, .. } => {
                crate::history::note_arrival(&mut self.purchase_condominium, *purchase, *condominium);
            }
            Event::Sent { request, purchase, endpoint, twin, .. } if *purchase != NO_PURCHASE => {
                let sent = SentRequest { endpoint: *endpoint, purchase: *purchase, twin: *twin, served_by: None };
                self.sent.insert(*request, sent);
            }
            Event::Received { request, config, .. } => {
                if let Some(sent) = self.sent.get_mut(request) {
                    sent.served_by = Some(*config);
                }
            }
            Event::Heard { request, status, error } => {
                let Some(sent) = self.sent.remove(request) else { return };
                self.heard(sent, *status, *error);
            }
            Event::Told { purchase, payment, status } => {
                self.payment_of_purchase.insert(*purchase, *payment);
                if *status == PaymentStatus::Confirmed {
                    let count = self.confirmations.entry(*purchase).or_insert(0);
                    *count += 1;
                    if *count == 2 {
                        self.double_confirmed.push(*purchase);
                    }
                }
            }
            Event::Swept { backlog, .. } => {
                self.window.sweep_backlog_max = self.window.sweep_backlog_max.max(*backlog);
            }
            Event::Ended { purchase, outcome: PurchaseOutcome::GaveUp(Endpoint::ExecuteCycle) } => {
                self.gave_up_executing.push(*purchase);
            }
            Event::Charged { purchase, provider_ref, captured: true, .. } => {
                self.charge_owner.insert(provider_ref.clone(), *purchase);
                let standing = self.standing_charges.entry(*purchase).or_insert(0);
                *standing += 1;
                if *standing == 2 {
                    self.window.duplicates.push(format!("purchase {purchase} holds two captured charges"));
                }
            }
            Event::Refunded { provider_ref, .. } => {
                if let Some(purchase) = self.charge_owner.get(provider_ref) {
                    self.standing_charges.entry(*purchase).and_modify(|count| *count = count.saturating_sub(1));
                }
            }
            Event::CycleStarted { payment, machine, .. } => {
                let count = self.cycles.entry(*payment).or_insert(0);
                *count += 1;
                if *count == 2 {
                    self.window
                        .duplicates
                        .push(format!("payment {payment} started a second cycle (machine #{machine})"));
                }
            }
            _ => {}
        }
    }

    fn heard(&mut self, sent: SentRequest, status: Option<u16>, error: Option<crate::contract::ErrorCode>) {
        let other_deploy = sent.served_by.is_some_and(|deploy| deploy != self.deploy);
        if sent.twin || other_deploy || !matches!(sent.endpoint, Endpoint::Confirm | Endpoint::ExecuteCycle) {
            return;
        }
        let failed = is_failure(sent.endpoint, status, error);
        match sent.endpoint {
            Endpoint::Confirm => self.window.confirm.note(failed),
            _ => self.window.execute.note(failed),
        }
        if let Some(&condominium) = self.purchase_condominium.get(sent.purchase as usize) {
            self.window.failures_by_condominium.entry(condominium).or_default().note(failed);
        }
    }
}
