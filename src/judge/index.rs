//! The one index over a run's history: read one record at a time (as the
//! controller does while the run goes on, or in one go for the report), it
//! keeps what each request was, the deploy windows with their KPIs, and the
//! facts the operator acts on (double confirmations, customers who paid and
//! got no wash). The controller decides on a window's rates and the report
//! shows the same rates: both come from here.
//!
//! A terminal's request counts for the deploy that served it (or, if it
//! never reached the stack, for the deploy serving when it was sent), and
//! only if its answer was heard while that deploy's window was open: a
//! window's rates are frozen when the next deploy is decided or the rollout
//! completes, which is the moment the controller judged it.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::contract::{Endpoint, ErrorCode, PaymentStatus, Text};
use crate::criteria::{Rate, WindowRates, is_failure};
use crate::history::{DecisionKind, Event, History, NO_PURCHASE};
use crate::time::Millis;
use crate::world::PurchaseOutcome;

/// What the index knows of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    pub endpoint: Endpoint,
    /// The purchase it belongs to ([`NO_PURCHASE`] for posim's own requests).
    pub purchase: u32,
    /// The condominium it concerns, when one does (purchases and probes).
    pub condominium: Option<u32>,
    /// A duplicate of another request (a double tap): never counted in rates.
    pub twin: bool,
    pub sent_at: Millis,
    /// The window serving when it was sent.
    window_sent: Option<usize>,
    /// The window of the deploy of the replica that took it.
    window_served: Option<usize>,
    /// posim itself held it up beyond its lag bound (live runs).
    lagged: bool,
}

/// Attempts, failures and latencies of one terminal endpoint in one window.
#[derive(Clone, Debug)]
pub struct EndpointStats {
    pub rate: Rate,
    pub latency_ms: Histogram<u64>,
}

impl Default for EndpointStats {
    fn default() -> Self {
        let latency_ms = Histogram::new(3).expect("3 significant figures is a valid precision");
        EndpointStats { rate: Rate::default(), latency_ms }
    }
}

/// One deploy's window and what happened in it.
#[derive(Clone, Debug, Default)]
pub struct WindowStats {
    pub deploy: u16,
    pub from: Millis,
    /// When the next deploy was decided or the rollout completed.
    pub closed_at: Option<Millis>,
    pub authorize: EndpointStats,
    pub confirm: EndpointStats,
    pub execute: EndpointStats,
    /// Per condominium index: confirm and execute-cycle attempts and failures.
    pub by_condominium: BTreeMap<u32, Rate>,
    /// The rates of the phase before (set when an advance opened this window).
    pub baseline: Option<(Rate, Rate)>,
    pub sweeps: u64,
    pub sweep_backlog_max: u32,
    pub compensated: u64,
    pub expired: u64,
    /// Duplicates found in the ground truth while the window was serving.
    pub duplicates: Vec<String>,
    pub purchases: u64,
    pub washed: u64,
    pub not_in_canary: u64,
    /// The confirm and execute-cycle attempts posim itself lagged on.
    pub lagged: (Rate, Rate),
    /// Requests posim held up beyond its bound while the window was open,
    /// and the longest such lag (runbook ms).
    pub lagged_requests: u64,
    pub max_lag_ms: Millis,
    /// The rates as judged when the window closed.
    frozen: Option<WindowRates>,
}

impl WindowStats {
    /// The rates the criteria judge: frozen at the close, live before it.
    pub fn rates(&self) -> WindowRates {
        self.frozen.clone().unwrap_or_else(|| self.live_rates())
    }

    fn live_rates(&self) -> WindowRates {
        WindowRates {
            confirm: self.confirm.rate,
            execute: self.execute.rate,
            baseline: self.baseline,
            sweep_backlog_max: self.sweep_backlog_max,
            duplicates: self.duplicates.len() as u64,
            lagged: self.lagged,
            lagged_requests: self.lagged_requests,
        }
    }

    fn endpoint(&mut self, endpoint: Endpoint) -> Option<&mut EndpointStats> {
        match endpoint {
            Endpoint::Authorize => Some(&mut self.authorize),
            Endpoint::Confirm => Some(&mut self.confirm),
            Endpoint::ExecuteCycle => Some(&mut self.execute),
            _ => None,
        }
    }

    fn close(&mut self, at: Millis) {
        if self.closed_at.is_none() {
            self.frozen = Some(self.live_rates());
            self.closed_at = Some(at);
        }
    }
}

/// What a decision judged and what followed it, for the operation log.
#[derive(Clone, Debug)]
pub struct DecisionWindows {
    /// The window serving when the decision was taken, and its rates then.
    pub judged: Option<usize>,
    pub judged_rates: WindowRates,
    /// The window serving after the decision (a new one if it deployed).
    pub after: Option<usize>,
}

#[derive(Default)]
pub struct HistoryIndex {
    cursor: usize,
    requests: Vec<Option<RequestInfo>>,
    pub windows: Vec<WindowStats>,
    /// The window of each deploy.
    window_of_deploy: Vec<Option<usize>>,
    /// How many replicas the run has (the highest seen, plus one).
    pub replicas: usize,
    purchase_condominium: Vec<u32>,
    payment_of_purchase: FxHashMap<u32, Uuid>,
    charge_owner: FxHashMap<Text, u32>,
    standing_charges: FxHashMap<u32, u32>,
    cycles: FxHashMap<Uuid, u32>,
    confirmations: FxHashMap<u32, u32>,
    /// Purchases whose terminal heard more than one confirmation.
    pub double_confirmed: Vec<u32>,
    /// Purchases that paid and gave up at execute-cycle, not yet reprocessed.
    pub gave_up_executing: Vec<u32>,
    /// Per decision, in order.
    pub decisions: Vec<DecisionWindows>,
    baseline: Option<(Rate, Rate)>,
}

impl HistoryIndex {
    /// The whole history, indexed.
    pub fn of(history: &History) -> HistoryIndex {
        let mut index = HistoryIndex::default();
        index.catch_up(history);
        index
    }

    /// Reads the records added since the last call.
    pub fn catch_up(&mut self, history: &History) {
        while let Some(record) = history.records.get(self.cursor) {
            self.cursor += 1;
            self.note(history, record.at, &record.event);
        }
    }

    pub fn request(&self, request: u32) -> Option<&RequestInfo> {
        self.requests.get(request as usize).and_then(Option::as_ref)
    }

    /// The window serving now (none before the first deploy).
    pub fn current(&self) -> Option<&WindowStats> {
        self.windows.last()
    }

    pub fn window_of_deploy(&self, deploy: u16) -> Option<usize> {
        self.window_of_deploy.get(usize::from(deploy)).copied().flatten()
    }

    pub fn payment_of(&self, purchase: u32) -> Option<Uuid> {
        self.payment_of_purchase.get(&purchase).copied()
    }

    pub fn condominium_of(&self, purchase: u32) -> Option<u32> {
        self.purchase_condominium.get(purchase as usize).copied()
    }

    pub fn cycles_of(&self, payment: Uuid) -> u32 {
        self.cycles.get(&payment).copied().unwrap_or(0)
    }

    fn note(&mut self, history: &History, at: Millis, event: &Event) {
        match event {
            Event::DeployStarted { deploy } => self.open_window(at, *deploy),
            Event::Decided { decision } => self.decided(history, at, *decision),
            Event::ReplicaUp { replica, .. } => self.replicas = self.replicas.max(usize::from(*replica) + 1),
            Event::Arrived { purchase, condominium, .. } => {
                crate::history::note_arrival(&mut self.purchase_condominium, *purchase, *condominium);
                self.in_current(|w| w.purchases += 1);
            }
            Event::Sent { request, purchase, endpoint, twin, .. } => {
                self.sent(at, *request, *purchase, *endpoint, *twin)
            }
            Event::Probed { request, condominium } => {
                let info = self.requests.get_mut(*request as usize).and_then(Option::as_mut);
                if let Some(info) = info {
                    info.condominium = Some(*condominium);
                }
            }
            Event::Received { request, config, .. } => {
                let window = self.window_of_deploy(*config);
                if let Some(info) = self.requests.get_mut(*request as usize).and_then(Option::as_mut) {
                    info.window_served = window;
                }
            }
            Event::Heard { request, status, error } => self.heard(at, *request, *status, *error),
            Event::HarnessLag { request, lag_ms } => self.harness_lag(*request, *lag_ms),
            Event::Told { purchase, payment, status } => self.told(*purchase, *payment, *status),
            Event::Swept { expired, compensated, backlog } => self.in_current(|w| {
                w.sweeps += 1;
                w.sweep_backlog_max = w.sweep_backlog_max.max(*backlog);
                w.compensated += u64::from(*compensated);
                w.expired += u64::from(*expired);
            }),
            Event::Ended { purchase, outcome } => self.ended(*purchase, *outcome),
            Event::Charged { purchase, provider_ref, captured: true, .. } => self.charged(*purchase, provider_ref),
            Event::Refunded { provider_ref, .. } => {
                if let Some(purchase) = self.charge_owner.get(provider_ref) {
                    self.standing_charges.entry(*purchase).and_modify(|count| *count = count.saturating_sub(1));
                }
            }
            Event::CycleStarted { payment, machine, .. } => {
                let count = self.cycles.entry(*payment).or_insert(0);
                *count += 1;
                if *count == 2 {
                    let line = format!("payment {payment} started a second cycle (machine #{machine})");
                    self.in_current(|w| w.duplicates.push(line));
                }
            }
            _ => {}
        }
    }

    fn in_current(&mut self, update: impl FnOnce(&mut WindowStats)) {
        if let Some(window) = self.windows.last_mut() {
            update(window);
        }
    }

    fn open_window(&mut self, at: Millis, deploy: u16) {
        self.in_current(|w| w.close(at));
        let slot = usize::from(deploy);
        if self.window_of_deploy.len() <= slot {
            self.window_of_deploy.resize(slot + 1, None);
        }
        self.window_of_deploy[slot] = Some(self.windows.len());
        self.windows.push(WindowStats { deploy, from: at, baseline: self.baseline, ..WindowStats::default() });
    }

    /// A decision: note what it judged; an advance makes the closed window
    /// the baseline of the next, and completing the rollout closes the last.
    fn decided(&mut self, history: &History, at: Millis, decision: u16) {
        let Some(decision) = history.decisions.get(usize::from(decision)) else { return };
        let deployed = decision.deploy.is_some();
        let last = self.windows.len().checked_sub(1);
        let judged = if deployed { last.and_then(|l| l.checked_sub(1)) } else { last };
        let judged_rates = judged.map(|w| self.windows[w].rates()).unwrap_or_default();
        self.decisions.push(DecisionWindows { judged, judged_rates: judged_rates.clone(), after: last });
        if decision.kind != DecisionKind::Advance {
            return;
        }
        self.baseline = Some((judged_rates.confirm, judged_rates.execute));
        match (deployed, self.windows.last_mut()) {
            (true, Some(window)) => window.baseline = self.baseline,
            (false, Some(window)) => window.close(at),
            (_, None) => {}
        }
    }

    fn sent(&mut self, at: Millis, request: u32, purchase: u32, endpoint: Endpoint, twin: bool) {
        let condominium = (purchase != NO_PURCHASE).then(|| self.condominium_of(purchase)).flatten();
        let window_sent = self.windows.len().checked_sub(1);
        let info = RequestInfo {
            endpoint,
            purchase,
            condominium,
            twin,
            sent_at: at,
            window_sent,
            window_served: None,
            lagged: false,
        };
        let slot = request as usize;
        if self.requests.len() <= slot {
            self.requests.resize(slot + 1, None);
        }
        self.requests[slot] = Some(info);
    }

    fn heard(&mut self, at: Millis, request: u32, status: Option<u16>, error: Option<ErrorCode>) {
        let Some(info) = self.request(request).copied() else { return };
        let window = info.window_served.or(info.window_sent);
        let Some(window) = window.and_then(|w| self.windows.get_mut(w)) else { return };
        if info.twin || info.purchase == NO_PURCHASE {
            return;
        }
        let failed = is_failure(info.endpoint, status, error);
        let open = window.closed_at.is_none();
        let Some(stats) = window.endpoint(info.endpoint) else { return };
        if status.is_some() {
            stats.latency_ms.saturating_record(at.saturating_sub(info.sent_at));
        }
        if !open {
            return; // heard after the window was judged: not part of its rates
        }
        stats.rate.note(failed);
        match info.endpoint {
            Endpoint::Confirm if info.lagged => window.lagged.0.note(failed),
            Endpoint::ExecuteCycle if info.lagged => window.lagged.1.note(failed),
            _ => {}
        }
        if matches!(info.endpoint, Endpoint::Confirm | Endpoint::ExecuteCycle)
            && let Some(condominium) = info.condominium
        {
            window.by_condominium.entry(condominium).or_default().note(failed);
        }
    }

    /// posim lagged on `request`: its answer, when heard, is set apart.
    fn harness_lag(&mut self, request: u32, lag_ms: Millis) {
        let Some(info) = self.requests.get_mut(request as usize).and_then(Option::as_mut) else { return };
        info.lagged = true;
        self.in_current(|w| {
            w.lagged_requests += 1;
            w.max_lag_ms = w.max_lag_ms.max(lag_ms);
        });
    }

    fn told(&mut self, purchase: u32, payment: Uuid, status: PaymentStatus) {
        self.payment_of_purchase.insert(purchase, payment);
        if status == PaymentStatus::Confirmed {
            let count = self.confirmations.entry(purchase).or_insert(0);
            *count += 1;
            if *count == 2 {
                self.double_confirmed.push(purchase);
            }
        }
    }

    fn ended(&mut self, purchase: u32, outcome: PurchaseOutcome) {
        match outcome {
            PurchaseOutcome::Washed => self.in_current(|w| w.washed += 1),
            PurchaseOutcome::NotInCanary => self.in_current(|w| w.not_in_canary += 1),
            PurchaseOutcome::GaveUp(Endpoint::ExecuteCycle) => self.gave_up_executing.push(purchase),
            _ => {}
        }
    }

    fn charged(&mut self, purchase: u32, provider_ref: &Text) {
        self.charge_owner.insert(provider_ref.clone(), purchase);
        let standing = self.standing_charges.entry(purchase).or_insert(0);
        *standing += 1;
        if *standing == 2 {
            let line = format!("purchase {purchase} holds two captured charges");
            self.in_current(|w| w.duplicates.push(line));
        }
    }
}
