//! The graded family of builds `posim calibrate` runs the canary gate on:
//! the sound build (the scenario as written) and, for each phase, bad builds
//! that go bad at that phase's deploy and stay bad as the rollout widens —
//! confirm failures, execute-cycle failures and duplicates at 0.5×, 1×, 2×
//! and 4× their cap. The faults ride on the new deploy only (`BadBuild` of
//! the phase, see `src/sim/replicas.rs`): a rollback restores a good build.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;
use crate::scenario::phases::BadBuild;

/// The sizes of a bad build's fault, as multiples of its cap.
pub const MULTIPLES: [f64; 4] = [0.5, 1.0, 2.0, 4.0];

/// The multiple the false-promote aim is judged at ("a bad build at 2× cap").
pub const AIM_MULTIPLE: f64 = 2.0;

/// The duplicates' "1×": the runbook tolerates none ("duplicidade: 0"), so
/// there is no cap to scale. One start command in a hundred run twice is the
/// unit: at the 5% phase's ≈ 60 commands an hour it is about one duplicate
/// per phase hold, the smallest rate a zero-tolerance gate is meant to see
/// within the canary phase; 0.5× tests what it sees less often than that.
pub const DUPLICATE_UNIT: f64 = 0.01;

/// What a bad build gets wrong: one KPI of the runbook's §1 each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildFault {
    /// Fails a share of confirm requests ("confirm falha").
    ConfirmFailures,
    /// Fails a share of execute-cycle requests ("execute falha").
    ExecuteFailures,
    /// Runs a share of machines twice for one payment ("duplicidade").
    Duplicates,
}

impl BuildFault {
    pub const ALL: [BuildFault; 3] = [BuildFault::ConfirmFailures, BuildFault::ExecuteFailures, BuildFault::Duplicates];

    /// The name `--builds` takes.
    pub fn short(self) -> &'static str {
        match self {
            BuildFault::ConfirmFailures => "confirm",
            BuildFault::ExecuteFailures => "execute",
            BuildFault::Duplicates => "duplicates",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            BuildFault::ConfirmFailures => "confirm failures",
            BuildFault::ExecuteFailures => "execute-cycle failures",
            BuildFault::Duplicates => "duplicates",
        }
    }

    /// The rate its 1× stands for: the criterion's cap, or the duplicates' unit.
    pub fn unit(self, scenario: &Scenario) -> f64 {
        match self {
            BuildFault::ConfirmFailures => scenario.criteria.confirm_failure_rate_max,
            BuildFault::ExecuteFailures => scenario.criteria.execute_failure_rate_max,
            BuildFault::Duplicates => DUPLICATE_UNIT,
        }
    }
}

/// One build the gate is judged on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "build", rename_all = "snake_case")]
pub enum Build {
    /// The scenario as written: the gate should let it through.
    Sound,
    /// Bad from the deploy of phase `from_phase` (0-based) on.
    Bad { fault: BuildFault, multiple: f64, from_phase: usize },
}

impl Build {
    /// The rate its fault runs at (a share, at most 1).
    pub fn rate(&self, scenario: &Scenario) -> f64 {
        match self {
            Build::Sound => 0.0,
            Build::Bad { fault, multiple, .. } => (fault.unit(scenario) * multiple).min(1.0),
        }
    }

    /// `sound`, `confirm failures 2× cap from phase 5%`.
    pub fn label(&self, scenario: &Scenario) -> String {
        match self {
            Build::Sound => "sound build".to_string(),
            Build::Bad { fault, multiple, from_phase } => {
                let phase = scenario.phases.get(*from_phase).map_or("?", |phase| phase.name.as_str());
                let of = if *fault == BuildFault::Duplicates { "unit" } else { "cap" };
                format!("{} {multiple}× {of} from phase {phase}", fault.words())
            }
        }
    }

    /// The scenario with this build deployed: each phase from the bad one on
    /// carries the fault on its own deploy.
    pub fn apply(&self, scenario: &Scenario) -> Scenario {
        let mut built = scenario.clone();
        if let Build::Bad { fault, from_phase, .. } = *self {
            let rate = self.rate(scenario);
            let bad = match fault {
                BuildFault::ConfirmFailures => BadBuild { confirm_failure_rate: rate, ..BadBuild::default() },
                BuildFault::ExecuteFailures => BadBuild { execute_failure_rate: rate, ..BadBuild::default() },
                BuildFault::Duplicates => BadBuild { duplicate_rate: rate, ..BadBuild::default() },
            };
            for phase in built.phases.iter_mut().skip(from_phase) {
                phase.bad_build = bad;
            }
        }
        built
    }
}

/// Which builds to run (`--builds`): `sound`, a fault (every multiple), or
/// a fault at one multiple (`confirm@2x`); always at every phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BuildChoice {
    Sound,
    Fault(BuildFault, Option<f64>),
}

impl FromStr for BuildChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected =
            "expected `sound`, `confirm`, `execute` or `duplicates`, optionally with `@0.5x`, `@1x`, `@2x` or `@4x`";
        let text = text.trim();
        if text == "sound" {
            return Ok(BuildChoice::Sound);
        }
        let (name, multiple) = match text.split_once('@') {
            Some((name, multiple)) => (name, Some(multiple)),
            None => (text, None),
        };
        let fault = BuildFault::ALL
            .into_iter()
            .find(|fault| fault.short() == name)
            .ok_or_else(|| format!("`{text}` is not a build: {expected}"))?;
        let multiple = match multiple {
            None => None,
            Some(written) => {
                let number = written.strip_suffix('x').unwrap_or(written);
                let value: f64 =
                    number.parse().map_err(|_| format!("`{text}`: `{written}` is not a multiple: {expected}"))?;
                let known = MULTIPLES.into_iter().find(|m| (m - value).abs() < 1e-9);
                Some(known.ok_or_else(|| format!("`{text}`: the multiples are 0.5x, 1x, 2x and 4x"))?)
            }
        };
        Ok(BuildChoice::Fault(fault, multiple))
    }
}

impl fmt::Display for BuildChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildChoice::Sound => write!(f, "sound"),
            BuildChoice::Fault(fault, None) => write!(f, "{}", fault.short()),
            BuildChoice::Fault(fault, Some(multiple)) => write!(f, "{}@{multiple}x", fault.short()),
        }
    }
}

/// The family: the sound build first, then each fault, multiple and phase
/// (an empty `chosen` takes them all).
pub fn family(scenario: &Scenario, chosen: &[BuildChoice]) -> Vec<Build> {
    let wanted = |build: &Build| {
        chosen.is_empty()
            || chosen.iter().any(|choice| match (choice, build) {
                (BuildChoice::Sound, Build::Sound) => true,
                (BuildChoice::Fault(want, at), Build::Bad { fault, multiple, .. }) => {
                    want == fault && at.is_none_or(|at| at == *multiple)
                }
                _ => false,
            })
    };
    let mut builds = vec![Build::Sound];
    for fault in BuildFault::ALL {
        for multiple in MULTIPLES {
            for from_phase in 0..scenario.phases.len() {
                builds.push(Build::Bad { fault, multiple, from_phase });
            }
        }
    }
    builds.retain(wanted);
    builds
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn rollout() -> Scenario {
        Scenario::load(Path::new("scenarios/rollout.toml")).expect("bundled")
    }

    #[test]
    fn a_bad_build_is_bad_from_its_phase_on_and_scales_its_cap() {
        let scenario = rollout();
        let build = Build::Bad { fault: BuildFault::ConfirmFailures, multiple: 2.0, from_phase: 1 };
        let built = build.apply(&scenario);
        assert!(built.phases[0].bad_build.is_sound());
        assert!((built.phases[1].bad_build.confirm_failure_rate - 0.16).abs() < 1e-12);
        assert!((built.phases[2].bad_build.confirm_failure_rate - 0.16).abs() < 1e-12);
        assert_eq!(built.phases[2].bad_build.execute_failure_rate, 0.0);
        assert!(Build::Sound.apply(&scenario).phases.iter().all(|phase| phase.bad_build.is_sound()));
        assert_eq!(family(&scenario, &[]).len(), 1 + 3 * 4 * 3);
    }

    #[test]
    fn builds_are_chosen_by_name() {
        let scenario = rollout();
        let chosen = ["sound".parse().expect("sound"), "confirm@2x".parse().expect("confirm@2x")];
        let builds = family(&scenario, &chosen);
        assert_eq!(builds.len(), 1 + 3, "{builds:?}");
        assert!("confirm@3x".parse::<BuildChoice>().is_err());
        assert!("latency".parse::<BuildChoice>().is_err());
    }
}
