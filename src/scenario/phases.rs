//! The rollout's phases as a scenario states them: each with the canary
//! config it deploys and how long it holds; condominiums named by fraction,
//! lowest risk first as "1 condomínio de baixo risco", or by UUID. Data
//! only: the controller (in `rollout`) reads it.

use uuid::Uuid;

use crate::contract::{CanaryConfig, CanaryMode};
use crate::time::Millis;
use crate::world::Fleet;

/// How a phase picks its condominiums.
#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    /// No list (mode `off`).
    Everyone,
    /// This share of the fleet: lowest risk first for an allowlist, highest
    /// risk first for a blocklist.
    Fraction(f64),
    /// These UUIDs, as written.
    Listed(Vec<Uuid>),
}

/// One phase of the rollout, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    pub name: String,
    pub mode: CanaryMode,
    pub selection: Selection,
    /// How long the phase is held and watched ("monitorar por 30–60 min")...
    pub hold: Millis,
    /// ...and how long it may be held while the criteria are inconclusive.
    pub hold_max: Millis,
    /// The phase's build fails this share of confirm and execute-cycle
    /// requests (a bad deploy, incident B); a rollback restores the last good build.
    pub bad_build_error_rate: f64,
    /// The phase's build fails or duplicates per endpoint (simulator only;
    /// `posim calibrate`'s graded bad builds); all zero: a sound build.
    pub bad_build: BadBuild,
    /// The config the phase deploys, resolved against the fleet.
    pub canary: CanaryConfig,
}

/// A bad build's faults, each on its own endpoint, on the deploys of the
/// phase that carries it (a rollback restores the last good build). Apart
/// from `bad_build_error_rate` (both endpoints at one rate) so that a build
/// can be bad on one KPI alone.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BadBuild {
    /// Share of confirm requests the build fails (503 before the domain logic).
    pub confirm_failure_rate: f64,
    /// Share of execute-cycle requests the build fails.
    pub execute_failure_rate: f64,
    /// Share of the build's start commands that run the machine twice: a
    /// second cycle for one payment, the duplicate of §1 ("duplicidade").
    pub duplicate_rate: f64,
}

impl BadBuild {
    pub fn is_sound(&self) -> bool {
        *self == BadBuild::default()
    }
}

/// How many condominiums a fraction names: at least one for any fraction
/// above zero ("liberar 1 condomínio").
pub fn count_for(fraction: f64, fleet_size: usize) -> usize {
    if fraction <= 0.0 {
        return 0;
    }
    ((fraction * fleet_size as f64).ceil() as usize).clamp(1, fleet_size)
}

/// Resolves a phase's selection into the canary config it deploys.
pub fn canary_for(fleet: &Fleet, mode: CanaryMode, selection: &Selection) -> CanaryConfig {
    let picked = match selection {
        Selection::Everyone => Vec::new(),
        Selection::Listed(ids) => ids.clone(),
        Selection::Fraction(fraction) => {
            let mut order = fleet.lowest_risk_first();
            if mode == CanaryMode::Blocklist {
                order.reverse();
            }
            let count = count_for(*fraction, order.len());
            order[..count].iter().map(|&index| fleet.condominiums[index as usize].id).collect()
        }
    };
    match mode {
        CanaryMode::Off => CanaryConfig::off(),
        CanaryMode::Allowlist => CanaryConfig::new(mode, picked, Vec::new()),
        CanaryMode::Blocklist => CanaryConfig::new(mode, Vec::new(), picked),
    }
}

/// When each phase starts, and when the rollout ends (the horizon).
pub fn phase_starts(phases: &[Phase]) -> (Vec<Millis>, Millis) {
    let mut starts = Vec::with_capacity(phases.len());
    let mut at: Millis = 0;
    for phase in phases {
        starts.push(at);
        at = at.saturating_add(phase.hold);
    }
    (starts, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::fleet::FleetShape;

    #[test]
    fn fractions_pick_lowest_risk_first() {
        let shape = FleetShape {
            seed: 4,
            condominiums: 20,
            machines_per_condominium: 1,
            terminals_per_condominium: 1,
            naive_share: 0.0,
        };
        let fleet = Fleet::generate(&shape);
        assert_eq!(count_for(0.05, 20), 1);
        assert_eq!(count_for(0.25, 20), 5);
        assert_eq!(count_for(0.0, 20), 0);
        let canary = canary_for(&fleet, CanaryMode::Allowlist, &Selection::Fraction(0.05));
        let first = fleet.lowest_risk_first()[0];
        assert_eq!(canary.allowlist, vec![fleet.condominiums[first as usize].id]);
        let blocked = canary_for(&fleet, CanaryMode::Blocklist, &Selection::Fraction(0.05));
        let riskiest = *fleet.lowest_risk_first().last().unwrap();
        assert_eq!(blocked.blocklist, vec![fleet.condominiums[riskiest as usize].id]);
    }
}
