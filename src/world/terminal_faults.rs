//! The faults a terminal plays on its own side, decided once for both
//! engines: an offline spell before a purchase's next step (a POS in
//! store-and-forward mode), a capture that lands late at the PSP, and the
//! copies a duplicated request leaves as. Each is a keyed roll on the
//! purchase, so the simulator and a live run play the same ones.

use super::outcomes::Fired;
use crate::contract::Endpoint;
use crate::faults::{Boundary, CONCURRENT_SPREAD, Crossing, FaultKey, FaultKind, FaultPlan, Lane};
use crate::time::Millis;

/// The card charge is keyed as the step before confirm (attempt 0 of the
/// `Step` lane); a request's own step uses attempt 1.
const CHARGE_STEP: Endpoint = Endpoint::Confirm;

/// Before a purchase's next step (`endpoint`, or the card charge when
/// `None`): does the terminal go offline, and for how long?
pub fn offline_before(
    plan: &FaultPlan,
    crossing: &Crossing,
    purchase: u32,
    endpoint: Option<Endpoint>,
) -> Option<(Fired, Millis)> {
    let key = step_key(purchase, endpoint);
    let (fault, spec) = plan.roll(Boundary::TerminalStep, crossing, key)?;
    Some((Fired { fault, kind: spec.kind, key }, spec.duration))
}

/// How late the card's capture lands at the PSP (the terminal waits for it).
pub fn capture_late(plan: &FaultPlan, crossing: &Crossing, purchase: u32) -> Option<(Fired, Millis)> {
    let key = step_key(purchase, None);
    let (fault, spec) = plan.roll(Boundary::Card, crossing, key)?;
    Some((Fired { fault, kind: spec.kind, key }, plan.extent(key, spec.duration)))
}

/// When the copies of a duplicated request leave, after the original: one
/// copy at the plan's duplicate delay, or two within a few milliseconds for
/// a concurrent duplicate (replicas race on one payment).
pub fn twin_delays(plan: &FaultPlan, fired: Fired, duplicate_delay: Millis) -> Vec<Millis> {
    match fired.kind {
        FaultKind::ConcurrentDuplicates => vec![1, plan.extent(fired.key, CONCURRENT_SPREAD)],
        _ => vec![duplicate_delay],
    }
}

/// The endpoint a step's crossing is scoped by (the charge: confirm's).
pub fn step_endpoint(endpoint: Option<Endpoint>) -> Endpoint {
    endpoint.unwrap_or(CHARGE_STEP)
}

fn step_key(purchase: u32, endpoint: Option<Endpoint>) -> FaultKey {
    match endpoint {
        Some(endpoint) => FaultKey::at_terminal(purchase, endpoint, Lane::Step, 1),
        None => FaultKey::at_terminal(purchase, CHARGE_STEP, Lane::Step, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultSpec;

    fn plan(kind: FaultKind) -> FaultPlan {
        FaultPlan::new(3, vec![FaultSpec::everywhere(kind, 1.0, 60_000)])
    }

    const CROSSING: Crossing =
        Crossing { now: 0, phase: 0, condominium: Some(0), endpoint: Some(Endpoint::Confirm), world: None };

    #[test]
    fn steps_and_the_charge_roll_apart_and_late_captures_stay_in_bounds() {
        let offline = plan(FaultKind::TerminalOffline);
        let (at_charge, duration) = offline_before(&offline, &CROSSING, 7, None).expect("fires");
        let (at_confirm, _) = offline_before(&offline, &CROSSING, 7, Some(Endpoint::Confirm)).expect("fires");
        assert_ne!(at_charge.key, at_confirm.key, "the charge and confirm are two steps");
        assert_eq!(duration, 60_000);
        let late = plan(FaultKind::CaptureLate);
        let delays: Vec<Millis> =
            (0..200).filter_map(|p| capture_late(&late, &CROSSING, p)).map(|(_, delay)| delay).collect();
        assert_eq!(delays.len(), 200);
        assert!(delays.iter().all(|d| (1..=60_000).contains(d)));
        assert!(delays.iter().any(|d| *d < 30_000) && delays.iter().any(|d| *d >= 30_000), "spread over the bound");
    }

    #[test]
    fn a_concurrent_duplicate_leaves_twice_within_milliseconds() {
        let plan = plan(FaultKind::ConcurrentDuplicates);
        let key = FaultKey::at_terminal(1, Endpoint::ExecuteCycle, Lane::Request, 1);
        let fired = Fired { fault: 0, kind: FaultKind::ConcurrentDuplicates, key };
        let delays = twin_delays(&plan, fired, 20_000);
        assert_eq!(delays.len(), 2);
        assert!(delays.iter().all(|d| *d <= CONCURRENT_SPREAD));
        let plain = Fired { kind: FaultKind::DuplicateRequest, ..fired };
        assert_eq!(twin_delays(&plan, plain, 20_000), [20_000]);
    }
}
