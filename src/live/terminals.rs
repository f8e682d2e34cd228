//! The customers of a live run: arrivals on the seeded plan, one tokio task
//! per purchase following the same purchase flow as the simulator (with the
//! terminal ↔ stack faults of the plan). A load run plays the same flow,
//! bent by a [`Variant`] (a retry on the same keys, a double tap).

use std::sync::{Arc, Mutex};

use rand_chacha::ChaCha8Rng;
use tokio::task::JoinSet;

use super::shared::{Heard, Shared, between};
use crate::contract::world_api::ChargeRequest;
use crate::contract::{Charge, ChargeStatus, Endpoint, Reply, Request};
use crate::faults::{Boundary, Crossing, FaultKey, FaultKind, Lane};
use crate::history::Event;
use crate::time::Millis;
use crate::traffic::PlannedPurchase;
use crate::world::outcomes::Fired;
use crate::world::terminal::{Heard as Told, Next, PurchaseOutcome};
use crate::world::terminal_faults;
use crate::world::{Purchase, PurchaseStep};

/// How a purchase departs from the terminal's own flow (a load run's
/// scenarios; the terminals of `posim live` are `Plain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    Plain,
    /// The first confirm's answer is lost: the terminal retries with the same keys.
    Retry,
    /// The customer taps twice: a second confirm with the same keys.
    DoubleTap,
}

/// Which machines a purchase holds (one purchase per machine at a time).
pub(crate) type Reservations = Arc<Mutex<Vec<bool>>>;

/// Plays the customers of the traffic plan; returns how many purchases started.
pub(super) async fn arrivals(shared: Arc<Shared>, mut card_rng: ChaCha8Rng) -> u64 {
    let reserved: Reservations = Arc::new(Mutex::new(vec![false; shared.scenario.fleet.machines.len()]));
    let mut tasks = JoinSet::new();
    let mut count = 0u64;
    for planned in shared.traffic.clone() {
        shared.clock().sleep_until(planned.at).await;
        let Some((machine, purchase)) = arrive(&shared, &planned, &reserved) else { continue };
        let card = between(&mut card_rng, shared.scenario.latency.card);
        let (shared, reserved) = (Arc::clone(&shared), Arc::clone(&reserved));
        tasks.spawn(async move {
            buy(&shared, planned.purchase, purchase, (card, planned.declined), Variant::Plain).await;
            reserved.lock().expect("reservations lock")[machine as usize] = false;
        });
        count += 1;
    }
    while tasks.join_next().await.is_some() {}
    count
}

/// The customer of `planned` takes a free machine of its condominium (none
/// free: the customer leaves, `None`); the purchase is registered and its
/// arrival recorded. The caller frees the machine when the purchase ends.
pub(crate) fn arrive(shared: &Shared, planned: &PlannedPurchase, reserved: &Reservations) -> Option<(u32, Purchase)> {
    let now = shared.clock().now();
    let mut taken = reserved.lock().expect("reservations lock");
    let machine =
        shared.traffic.pick_machine(planned, |m| !taken[m as usize] && shared.world.machine_idle(m as usize, now))?;
    taken[machine as usize] = true;
    drop(taken);
    let number = planned.purchase;
    let purchase =
        Purchase::in_fleet(&shared.scenario.fleet, (machine, planned.terminal), planned.amount_cents, number);
    shared.registry.lock().expect("registry lock").insert(number, (purchase.idempotency_key.clone(), None));
    shared.record(Event::Arrived { purchase: number, condominium: planned.condominium, machine });
    Some((machine, purchase))
}

/// One purchase, start to end; returns how it ended.
pub(crate) async fn buy(
    shared: &Arc<Shared>,
    number: u32,
    mut purchase: Purchase,
    (card, declined): (Millis, bool),
    variant: Variant,
) -> PurchaseOutcome {
    let policy = shared.scenario.terminals.clone();
    let twins: Arc<Mutex<Vec<Reply>>> = Arc::default();
    let mut twin_tasks = JoinSet::new();
    let outcome = loop {
        let next = match purchase.endpoint() {
            Some(endpoint) => {
                // A new step after the first: the terminal may be offline first.
                if purchase.attempt == 1 && endpoint != Endpoint::Authorize {
                    offline_before(shared, number, &purchase, Some(endpoint)).await;
                }
                let heard = attempt(shared, number, &purchase, (endpoint, variant), (&twins, &mut twin_tasks)).await;
                let walks_away = !matches!(&heard, Heard::Reply(r) if r.error_code().is_none())
                    && walks_away(shared, number, &purchase, endpoint);
                let told = match &heard {
                    Heard::Reply(reply) => Told::Reply(reply),
                    Heard::Nothing => Told::Nothing,
                };
                let next = purchase.on_heard(told, policy.max_attempts, walks_away);
                if let Some(payment) = purchase.payment_id
                    && let Some(entry) = shared.registry.lock().expect("registry lock").get_mut(&number)
                {
                    entry.1 = Some(payment);
                }
                next
            }
            None => match purchase.step.clone() {
                PurchaseStep::Charge => charge(shared, number, &mut purchase, card, declined).await,
                PurchaseStep::Done(outcome) => {
                    // Late duplicates may still bring an execute_key to run.
                    while twin_tasks.join_next().await.is_some() {}
                    let extra = twins.lock().expect("twins lock").drain(..).collect::<Vec<_>>();
                    match extra.iter().find_map(|reply| purchase.on_extra_confirmation(reply)) {
                        Some(next) => next,
                        None => break outcome,
                    }
                }
                step => unreachable!("no request at {step:?}"),
            },
        };
        match next {
            Next::Retry => {
                let shift = u32::from(purchase.attempt.saturating_sub(2)).min(6);
                shared.clock().sleep(policy.backoff << shift).await;
            }
            Next::Send | Next::Charge | Next::Finished(_) => {}
        }
    };
    shared.record(Event::Ended { purchase: number, outcome });
    outcome
}

fn crossing(shared: &Shared, purchase: &Purchase, endpoint: Endpoint) -> Crossing {
    Crossing {
        now: shared.clock().now(),
        phase: shared.world.phase(),
        condominium: Some(purchase.condominium),
        endpoint: Some(endpoint),
        world: None,
    }
}

/// One request of the purchase's current step, with the terminal-side faults.
async fn attempt(
    shared: &Arc<Shared>,
    number: u32,
    purchase: &Purchase,
    (endpoint, variant): (Endpoint, Variant),
    (twins, twin_tasks): (&Arc<Mutex<Vec<Reply>>>, &mut JoinSet<()>),
) -> Heard {
    let request = purchase.request();
    let attempt = purchase.attempt;
    let timeout = shared.scenario.terminals.request_timeout;
    let id = shared.new_request();
    shared.record(Event::Sent { request: id, purchase: number, endpoint, attempt, twin: false });
    let key = FaultKey::at_terminal(number, endpoint, Lane::Request, attempt);
    let fault = shared.faults.roll(Boundary::TerminalToStack, &crossing(shared, purchase, endpoint), key);
    if let Some((index, spec)) = fault {
        shared.record(Event::Fault { fault: index, kind: spec.kind, key });
        if spec.kind == FaultKind::RequestLost {
            shared.clock().sleep(timeout).await;
            shared.record(Event::Heard { request: id, status: None, error: None });
            return Heard::Nothing;
        }
        let fired = Fired { fault: index, kind: spec.kind, key };
        let planned = shared.traffic.duplicate_delay(number, endpoint, attempt);
        for delay in terminal_faults::twin_delays(&shared.faults, fired, planned) {
            let (shared, twins, request) = (Arc::clone(shared), Arc::clone(twins), request.clone());
            twin_tasks.spawn(async move { twin(&shared, number, (endpoint, attempt), request, delay, &twins).await });
        }
    }
    let first_confirm = endpoint == Endpoint::Confirm && attempt == 1;
    if variant == Variant::DoubleTap && first_confirm {
        let delay = shared.traffic.duplicate_delay(number, endpoint, attempt);
        let (shared, twins, request) = (Arc::clone(shared), Arc::clone(twins), request.clone());
        twin_tasks.spawn(async move { twin(&shared, number, (endpoint, attempt), request, delay, &twins).await });
    }
    let key = FaultKey::at_terminal(number, endpoint, Lane::Response, attempt);
    let lost = shared.faults.roll(Boundary::StackToTerminal, &crossing(shared, purchase, endpoint), key);
    if let Some((index, spec)) = lost {
        shared.record(Event::Fault { fault: index, kind: spec.kind, key });
    }
    let lost = lost.is_some() || (variant == Variant::Retry && first_confirm);
    let heard = shared.send(id, &request, timeout, lost).await;
    hear(shared, number, id, &heard);
    if lost {
        shared.clock().sleep(timeout).await;
    }
    heard
}

/// Records what the terminal heard, and the status it was told.
fn hear(shared: &Shared, number: u32, id: u32, heard: &Heard) {
    match heard {
        Heard::Reply(reply) => {
            shared.record(Event::Heard { request: id, status: Some(reply.http_status()), error: reply.error_code() });
            if let Some((payment, status)) = Purchase::told(reply) {
                shared.record(Event::Told { purchase: number, payment, status });
            }
        }
        Heard::Nothing => shared.record(Event::Heard { request: id, status: None, error: None }),
    }
}

/// A duplicate of a request, sent late; a confirmation it brings is kept.
async fn twin(
    shared: &Shared,
    number: u32,
    (endpoint, attempt): (Endpoint, u8),
    request: Request,
    delay: Millis,
    twins: &Mutex<Vec<Reply>>,
) {
    shared.clock().sleep(delay).await;
    let id = shared.new_request();
    shared.record(Event::Sent { request: id, purchase: number, endpoint, attempt, twin: true });
    let heard = shared.send(id, &request, shared.scenario.terminals.request_timeout, false).await;
    hear(shared, number, id, &heard);
    if let Heard::Reply(reply @ Reply::Confirmed { .. }) = heard {
        twins.lock().expect("twins lock").push(reply);
    }
}

fn walks_away(shared: &Shared, number: u32, purchase: &Purchase, endpoint: Endpoint) -> bool {
    let key = FaultKey::at_terminal(number, endpoint, Lane::Customer, purchase.attempt);
    match shared.faults.roll(Boundary::Customer, &crossing(shared, purchase, endpoint), key) {
        Some((index, spec)) => {
            shared.record(Event::Fault { fault: index, kind: spec.kind, key });
            true
        }
        None => false,
    }
}

/// The terminal goes offline before a step (`None`: the card charge) if
/// the plan says so, and comes back with the same keys.
async fn offline_before(shared: &Shared, number: u32, purchase: &Purchase, endpoint: Option<Endpoint>) {
    let crossing = crossing(shared, purchase, terminal_faults::step_endpoint(endpoint));
    if let Some((fired, duration)) = terminal_faults::offline_before(&shared.faults, &crossing, number, endpoint) {
        shared.record(fired.into());
        shared.clock().sleep(duration).await;
    }
}

/// The card is charged at posim's PSP (late, if its capture is).
async fn charge(shared: &Shared, number: u32, purchase: &mut Purchase, card: Millis, declined: bool) -> Next {
    offline_before(shared, number, purchase, None).await;
    let crossing = crossing(shared, purchase, terminal_faults::step_endpoint(None));
    let late = match terminal_faults::capture_late(&shared.faults, &crossing, number) {
        Some((fired, late)) => {
            shared.record(fired.into());
            late
        }
        None => 0,
    };
    shared.clock().sleep(card + late).await;
    let payment = purchase.payment_id.expect("authorized before the charge");
    let body = ChargeRequest {
        payment_id: payment,
        amount_cents: purchase.amount_cents,
        idempotency_key: format!("card-{}", purchase.idempotency_key).into(),
        purchase: Some(number),
        condominium: Some(purchase.condominium),
        declined,
    };
    let answer = shared.http.post(format!("{}/v1/charges", shared.world_url)).json(&body).send().await;
    let charged: Option<Charge> = match answer {
        Ok(response) => response.json().await.ok(),
        Err(_) => None,
    };
    let Some(charged) = charged else { return purchase.on_charged("".into(), false) };
    purchase.on_charged(charged.provider_ref, charged.status == ChargeStatus::Captured)
}
