//! Scenario edits as data: the one place where swarm, replay and shrink
//! change a parsed scenario. Three edits: each `[[faults]]` entry on or off
//! with the probability it runs at (the per-seed fault mix), the rollout cut
//! at a shorter horizon, and the fleet cut to its first condominiums. The
//! same edits on the same scenario give the same scenario, so an artifact
//! replays to the same trace.

use serde::{Deserialize, Serialize};

use crate::faults::FaultKind;
use crate::scenario::Scenario;
use crate::scenario::phases::{self, Selection};
use crate::seed::KeyedRoll;
use crate::time::Millis;

/// The chance that the mix turns a fault on for a seed.
const ON_SHARE: f64 = 0.5;
/// Probabilities in edits carry this many significant digits: short decimals
/// that JSON carries bit for bit (see [`round_digits`]).
pub const PROBABILITY_DIGITS: i32 = 4;
/// Below this a probability is not halved any more (the shrinker's floor).
pub const MIN_PROBABILITY: f64 = 1e-9;

/// One `[[faults]]` entry as a run plays it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSetting {
    /// The entry's kind: checked against the scenario's entry at this index.
    pub kind: FaultKind,
    pub on: bool,
    /// The probability when on: at most the scenario's.
    pub probability: f64,
}

/// Edits to a parsed scenario; `None` leaves that part as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edits {
    /// One setting per `[[faults]]` entry, in file order.
    pub faults: Option<Vec<FaultSetting>>,
    /// The rollout ends here: later phases are dropped, the last one kept is cut.
    pub horizon_ms: Option<Millis>,
    /// Only the first this many condominiums (with their machines and terminals).
    pub condominiums: Option<u32>,
}

/// Edits that do not fit the scenario they are applied to.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EditError {
    #[error("the fault mix has {mix} entries, the scenario has {scenario} [[faults]]")]
    FaultCount { mix: usize, scenario: usize },
    #[error("fault {index} is `{mix}` in the mix but `{scenario}` in the scenario")]
    FaultKind { index: usize, mix: FaultKind, scenario: FaultKind },
    #[error("fault {index}: probability {probability} is outside 0..={bound} (the scenario's)")]
    Probability { index: usize, probability: f64, bound: f64 },
    #[error("horizon_ms must be above zero")]
    ZeroHorizon,
    #[error("condominiums must be at least 1")]
    NoCondominium,
    #[error("the fleet's machines or terminals are not in condominium order: it cannot be cut")]
    FleetOrder,
}

impl Edits {
    /// The scenario as these edits change it; `scenario` itself is left alone.
    pub fn apply(&self, scenario: &Scenario) -> Result<Scenario, EditError> {
        let mut edited = scenario.clone();
        if let Some(settings) = &self.faults {
            set_faults(&mut edited, settings)?;
        }
        if let Some(horizon) = self.horizon_ms {
            cut_horizon(&mut edited, horizon)?;
        }
        if let Some(count) = self.condominiums {
            cut_fleet(&mut edited, count)?;
        }
        Ok(edited)
    }
}

/// The per-seed fault mix, in the manner of TigerBeetle's VOPR (swarm
/// testing): a seed turns each fault on with probability 1/2 and runs it at
/// a share in (0, 1] of the scenario's probability. Runs that leave some
/// faults out explore interleavings the full mix drowns.
pub fn draw_mix(scenario: &Scenario, seed: u64) -> Vec<FaultSetting> {
    let roll = KeyedRoll::new(seed, "swarm:mix");
    let setting = |(index, fault): (usize, &crate::faults::FaultSpec)| {
        let index = index as u64;
        let on = roll.unit([index, 0, 0]) < ON_SHARE;
        let share = 1.0 - roll.unit([index, 1, 0]);
        let probability = round_digits(fault.probability * share, PROBABILITY_DIGITS).min(fault.probability);
        FaultSetting { kind: fault.kind, on, probability }
    };
    scenario.faults.iter().enumerate().map(setting).collect()
}

/// The scenario's own faults as settings: all on, as written.
pub fn as_written(scenario: &Scenario) -> Vec<FaultSetting> {
    let setting = |fault: &crate::faults::FaultSpec| FaultSetting {
        kind: fault.kind,
        on: fault.probability > 0.0,
        probability: fault.probability,
    };
    scenario.faults.iter().map(setting).collect()
}

/// `value` rounded to `digits` significant digits. The result is the double
/// nearest a short decimal: serde_json prints it as that decimal and parses
/// it back exactly, so a replayed probability is the one the run used.
pub fn round_digits(value: f64, digits: i32) -> f64 {
    if !(value.is_finite() && value > 0.0) {
        return 0.0;
    }
    // Powers of ten up to 10^22 are exact doubles; smaller values are not rounded.
    let exponent = digits - 1 - value.log10().floor() as i32;
    if !(0..=22).contains(&exponent) {
        return value;
    }
    let scale = 10f64.powi(exponent);
    (value * scale).round() / scale
}

fn set_faults(scenario: &mut Scenario, settings: &[FaultSetting]) -> Result<(), EditError> {
    if settings.len() != scenario.faults.len() {
        return Err(EditError::FaultCount { mix: settings.len(), scenario: scenario.faults.len() });
    }
    for (index, (fault, setting)) in scenario.faults.iter_mut().zip(settings).enumerate() {
        if fault.kind != setting.kind {
            return Err(EditError::FaultKind { index, mix: setting.kind, scenario: fault.kind });
        }
        if !(0.0..=fault.probability).contains(&setting.probability) {
            let (probability, bound) = (setting.probability, fault.probability);
            return Err(EditError::Probability { index, probability, bound });
        }
        // Off is probability zero, not removal: fault indices in the trace
        // keep naming the file's entries.
        fault.probability = if setting.on { setting.probability } else { 0.0 };
    }
    Ok(())
}

/// Keeps the phases that start before `horizon` and cuts the last one kept
/// (its `hold_max` keeps its slack over `hold`). Traffic stops at the
/// horizon and the drain follows it, as in any scenario; stack faults past
/// the new end go (the simulator does not play them anyway).
fn cut_horizon(scenario: &mut Scenario, horizon: Millis) -> Result<(), EditError> {
    if horizon == 0 {
        return Err(EditError::ZeroHorizon);
    }
    let (starts, end) = phases::phase_starts(&scenario.phases);
    if horizon >= end {
        return Ok(());
    }
    let kept = starts.iter().take_while(|&&start| start < horizon).count();
    scenario.phases.truncate(kept);
    if let (Some(last), Some(start)) = (scenario.phases.last_mut(), starts.get(kept.saturating_sub(1))) {
        let cut = last.hold - (horizon - start);
        last.hold -= cut;
        last.hold_max -= cut;
    }
    let end = horizon + scenario.drain;
    scenario.stack_faults.retain(|fault| fault.at < end);
    Ok(())
}

/// Keeps the first `count` condominiums with their machines and terminals,
/// and resolves every phase's canary again on the smaller fleet. Faults
/// scoped to a condominium that is gone keep its index and never fire.
fn cut_fleet(scenario: &mut Scenario, count: u32) -> Result<(), EditError> {
    if count == 0 {
        return Err(EditError::NoCondominium);
    }
    let fleet = &mut scenario.fleet;
    if count as usize >= fleet.condominiums.len() {
        return Ok(());
    }
    fleet.condominiums.truncate(count as usize);
    fleet.machines.retain(|machine| machine.condominium < count);
    fleet.terminals.retain(|terminal| terminal.condominium < count);
    // Machines and terminals are numbered fleet-wide in condominium order, so
    // the kept ones are a prefix and the condominiums' indices stay valid.
    let in_range = |indices: &[u32], len: usize| indices.iter().all(|&index| (index as usize) < len);
    let (machines, terminals) = (fleet.machines.len(), fleet.terminals.len());
    if !fleet.condominiums.iter().all(|c| in_range(&c.machines, machines) && in_range(&c.terminals, terminals)) {
        return Err(EditError::FleetOrder);
    }
    for phase in &mut scenario.phases {
        if let Selection::Listed(ids) = &mut phase.selection {
            ids.retain(|id| fleet.condominium_index(*id).is_some());
        }
        phase.canary = phases::canary_for(fleet, phase.mode, &phase.selection);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::time::MINUTE;

    /// Phases 5% (45m, up to 1h), 25% (90m, up to 2h), 100% (4h); 200
    /// condominiums of 6 machines and 2 terminals; nine faults.
    fn scenario() -> Scenario {
        Scenario::load(Path::new("scenarios/rollout.toml")).expect("a bundled scenario")
    }

    #[test]
    fn the_mix_is_deterministic_and_within_the_scenarios_bounds() {
        let scenario = scenario();
        let mut seen_on = [0; 9];
        for seed in 0..200 {
            let mix = draw_mix(&scenario, seed);
            assert_eq!(mix, draw_mix(&scenario, seed), "seed {seed}");
            for (index, (setting, fault)) in mix.iter().zip(&scenario.faults).enumerate() {
                assert_eq!(setting.kind, fault.kind);
                assert!(setting.probability > 0.0 && setting.probability <= fault.probability, "{setting:?}");
                seen_on[index] += usize::from(setting.on);
            }
        }
        assert!(seen_on.iter().all(|on| (60..140).contains(on)), "about half on: {seen_on:?}");
        assert_ne!(draw_mix(&scenario, 1), draw_mix(&scenario, 2));
    }

    #[test]
    fn mixed_probabilities_survive_json_bit_for_bit() {
        let scenario = scenario();
        for setting in (0..100).flat_map(|seed| draw_mix(&scenario, seed)) {
            let mut probability = setting.probability;
            while probability > MIN_PROBABILITY {
                let text = serde_json::to_string(&probability).expect("a number");
                let back: f64 = serde_json::from_str(&text).expect("a number");
                assert_eq!(back.to_bits(), probability.to_bits(), "{text}");
                probability = round_digits(probability / 2.0, PROBABILITY_DIGITS);
            }
        }
    }

    #[test]
    fn fault_settings_turn_faults_off_and_scale_them() {
        let scenario = scenario();
        let mut settings = as_written(&scenario);
        settings[0].on = false;
        settings[1].probability = 0.002;
        let edited = Edits { faults: Some(settings.clone()), ..Edits::default() }.apply(&scenario).expect("fits");
        assert_eq!(edited.faults.len(), 9, "off keeps the index");
        assert_eq!(edited.faults[0].probability, 0.0);
        assert_eq!(edited.faults[1].probability, 0.002);
        settings[1].probability = 0.5;
        let too_high = Edits { faults: Some(settings.clone()), ..Edits::default() }.apply(&scenario);
        assert!(matches!(too_high, Err(EditError::Probability { index: 1, .. })), "{too_high:?}");
        settings.pop();
        let short = Edits { faults: Some(settings), ..Edits::default() }.apply(&scenario);
        assert_eq!(short.err(), Some(EditError::FaultCount { mix: 8, scenario: 9 }));
    }

    #[test]
    fn a_horizon_cut_drops_later_phases_and_cuts_the_last_one() {
        let scenario = scenario();
        assert_eq!(scenario.horizon(), 375 * MINUTE);
        let cut = |minutes| Edits { horizon_ms: Some(minutes * MINUTE), ..Edits::default() }.apply(&scenario);
        let short = cut(30).expect("fits");
        assert_eq!((short.phases.len(), short.horizon()), (1, 30 * MINUTE));
        assert_eq!(short.phases[0].hold_max, 45 * MINUTE, "the slack over hold is kept");
        let longer = cut(100).expect("fits");
        assert_eq!((longer.phases.len(), longer.horizon()), (2, 100 * MINUTE));
        assert_eq!(cut(1000).expect("fits").horizon(), 375 * MINUTE, "a cut never lengthens");
        assert_eq!(cut(0).err(), Some(EditError::ZeroHorizon));
    }

    #[test]
    fn a_fleet_cut_keeps_the_first_condominiums_and_their_canaries() {
        let scenario = scenario();
        let small = Edits { condominiums: Some(4), ..Edits::default() }.apply(&scenario).expect("fits");
        assert_eq!(small.fleet.condominiums, scenario.fleet.condominiums[..4]);
        assert_eq!((small.fleet.machines.len(), small.fleet.terminals.len()), (24, 8));
        let allowed = &small.phases[1].canary.allowlist;
        assert_eq!(allowed.len(), 1, "25% of 4");
        assert!(allowed.iter().all(|id| small.fleet.condominium_index(*id).is_some()));
        let none = Edits { condominiums: Some(0), ..Edits::default() }.apply(&scenario);
        assert_eq!(none.err(), Some(EditError::NoCondominium));
    }
}
