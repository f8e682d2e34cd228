//! The operator in a live run: a thin shell that feeds the sans-IO
//! [`Operator`] the controller's commands, the stack's answers and its
//! wake-ups, and carries out what it asks as tokio tasks over HTTP.

use std::sync::Arc;
use std::time::Duration;

use super::shared::{Heard, Shared, now_in};
use crate::operator::{self, Operator, Output};
use crate::rollout::controller::Command;
use crate::time::Millis;

/// How long posim waits for the operator's last requests before the final audit.
const SETTLE_WALL_MAX: Duration = Duration::from_secs(120);

impl Shared {
    /// Carries out a controller's probe, audit or reprocess command.
    pub(super) fn operator_command(self: &Arc<Self>, command: Command) {
        self.operate(|operator, facts, now| operator.command(command, now, facts));
    }

    /// After the drain and the operator's last requests: every payment a
    /// terminal was given, and every captured charge, read back (§4C).
    pub(crate) async fn final_audit(self: &Arc<Self>) {
        self.operator_settled(Some(SETTLE_WALL_MAX)).await;
        let payments: Vec<_> = self.registry.lock().expect("registry lock").values().filter_map(|(_, p)| *p).collect();
        let charges = self.recorder.with(|history| operator::captured_charges(history));
        let from = self.recorder.with(|history| history.records.len());
        let total = payments.len() + charges.len();
        self.operate(|operator, facts, now| operator.final_audit((payments, charges), now, facts));
        let shown = self.show_audit(from, total);
        self.operator_settled(None).await;
        shown.abort();
    }

    /// The final audit's progress on stderr, every ten seconds while it
    /// goes (a slow stack can take minutes to read every payment back).
    fn show_audit(self: &Arc<Self>, from: usize, total: usize) -> tokio::task::JoinHandle<()> {
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::progress::LINE_EVERY);
            every.tick().await;
            // Each line reads only the records added since the last one.
            let (mut read, mut done) = (from, 0usize);
            loop {
                every.tick().await;
                done += shared.recorder.with(|history| {
                    let audited = |r: &&crate::history::Record| {
                        matches!(
                            r.event,
                            crate::history::Event::Audited { .. } | crate::history::Event::AuditedCharge { .. }
                        )
                    };
                    let new = history.records.get(read..).map_or(0, |records| records.iter().filter(audited).count());
                    read = history.records.len();
                    new
                });
                eprintln!("{}: final audit, {done} of {total} payments and charges read back", shared.scenario.name);
            }
        })
    }

    /// Feeds the operator one input, at the runbook time now.
    fn operate(self: &Arc<Self>, input: impl FnOnce(&mut Operator, &Self, Millis) -> Vec<Output>) {
        let now = self.recorder.with(|history| now_in(history, self.clock().now()));
        let outputs = input(&mut self.operator.lock().expect("operator lock"), self, now);
        for output in outputs {
            self.carry_out_operator(output);
        }
    }

    fn carry_out_operator(self: &Arc<Self>, output: Output) {
        let shared = Arc::clone(self);
        match output {
            Output::Send(send) => self.spawn_operation(async move {
                let id = shared.new_request();
                send.events(id).into_iter().for_each(|event| shared.record(event));
                let reply = match shared.send(id, &send.request, 60_000, false).await {
                    Heard::Reply(reply) => Some(reply),
                    Heard::Nothing => None,
                };
                shared.operate(|operator, facts, now| operator.answered(send.token, reply, now, facts));
            }),
            // Like the simulator's agenda, nothing wakes after the drain.
            Output::Wake { at, token } if at <= self.scenario.end() => {
                self.spawn_operation(async move {
                    shared.clock().sleep_until(at).await;
                    shared.operate(|operator, facts, _| operator.wake(token, facts));
                });
            }
            Output::Wake { .. } => {}
            Output::Record(event) => self.record(event),
            Output::Decide(mut decision) => self.recorder.with(|history| {
                decision.at = now_in(history, decision.at);
                history.add_decision(decision);
            }),
        }
    }

    fn spawn_operation(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.operations.lock().expect("operations lock").spawn(task);
    }

    /// Waits until no operator task is left (tasks may start more), at most `limit`.
    async fn operator_settled(&self, limit: Option<Duration>) {
        let settle = async {
            loop {
                let mut tasks = std::mem::take(&mut *self.operations.lock().expect("operations lock"));
                if tasks.is_empty() {
                    return;
                }
                while tasks.join_next().await.is_some() {}
            }
        };
        match limit {
            Some(limit) => drop(tokio::time::timeout(limit, settle).await),
            None => settle.await,
        }
    }
}
