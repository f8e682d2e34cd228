//! The pre-check of runbook §1 ("Env de produção revisado", "Smoke: OK"):
//! a proposed canary env is parsed exactly as a stack would parse it at
//! start-up, its UUIDs are checked against the fleet, and a short smoke
//! scenario runs it on the reference stack before phase 1.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::contract::canary::{ALLOWLIST_VAR, BLOCKLIST_VAR};
use crate::contract::{CanaryConfig, CanaryMode, DeployConfig};
use crate::rollout::{Phase, Selection};
use crate::scenario::{ControllerMode, Scenario};
use crate::time::{self, Millis};
use crate::world::Fleet;

/// How long the smoke run holds the proposed config: an hour, so that even a
/// pilot of one small condominium sees customers (a 4-machine site gets none
/// in 20 minutes about one run in ten).
pub const SMOKE_HOLD: Millis = time::HOUR;

/// Reads `KEY=VALUE` lines (blank lines and `#` comments skipped).
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected NAME=VALUE, got `{line}`", number + 1));
        };
        env.insert(name.trim().to_string(), value.trim().to_string());
    }
    Ok(env)
}

/// Parses the env as the stack would, then checks every UUID against the
/// fleet. Errors name the variable.
pub fn proposed_config(env: &BTreeMap<String, String>, fleet: &Fleet) -> Result<(CanaryConfig, Vec<String>), String> {
    let config = DeployConfig::from_map(env).map_err(|error| error.to_string())?;
    let canary = config.canary;
    for (variable, list) in [(ALLOWLIST_VAR, &canary.allowlist), (BLOCKLIST_VAR, &canary.blocklist)] {
        let unknown: Vec<String> =
            list.iter().filter(|id| fleet.condominium_index(**id).is_none()).map(Uuid::to_string).collect();
        if !unknown.is_empty() {
            return Err(format!("{variable}: not a condominium of the fleet: {}", unknown.join(", ")));
        }
    }
    let mut warnings = Vec::new();
    if canary.mode == CanaryMode::Allowlist && canary.allowlist.is_empty() {
        warnings.push(format!("{ALLOWLIST_VAR} is empty: the allowlist admits no condominium"));
    }
    if canary.mode != CanaryMode::Allowlist && !canary.allowlist.is_empty() {
        warnings.push(format!("{ALLOWLIST_VAR} is set but the mode is `{}`: it is ignored", canary.mode));
    }
    if canary.mode != CanaryMode::Blocklist && !canary.blocklist.is_empty() {
        warnings.push(format!("{BLOCKLIST_VAR} is set but the mode is `{}`: it is ignored", canary.mode));
    }
    Ok((canary, warnings))
}

/// The smoke scenario: the proposed config alone, no faults, a short hold.
pub fn smoke_scenario(scenario: &Scenario, canary: CanaryConfig) -> Scenario {
    let mut smoke = scenario.clone();
    smoke.name = format!("{}-precheck", scenario.name);
    smoke.faults.clear();
    smoke.operator.clear();
    smoke.controller = ControllerMode::Scripted;
    // A smoke run proves the env serves; the scenario's incident expectation is not its.
    smoke.expect = crate::judge::Expectation::Complete;
    smoke.phases = vec![Phase {
        name: "pre-check".to_string(),
        mode: canary.mode,
        selection: Selection::Listed(canary.allowlist.iter().chain(&canary.blocklist).copied().collect()),
        hold: SMOKE_HOLD,
        hold_max: SMOKE_HOLD,
        canary,
        bad_build_error_rate: 0.0,
        bad_build: Default::default(),
    }];
    smoke
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::fleet::FleetShape;

    fn fleet() -> Fleet {
        Fleet::generate(&FleetShape {
            seed: 1,
            condominiums: 3,
            machines_per_condominium: 1,
            terminals_per_condominium: 1,
            naive_share: 0.0,
        })
    }

    #[test]
    fn a_bad_env_is_refused_naming_the_variable() {
        let fleet = fleet();
        let known = fleet.condominiums[0].id.to_string();
        let env = parse_env_file(&format!(
            "# phase 1\nPAYMENTS_POS_CANARY_MODE=allowlist\nPAYMENTS_POS_CANARY_ALLOWLIST={known}\n"
        ));
        let (canary, warnings) = proposed_config(&env.expect("valid file"), &fleet).expect("a valid env");
        assert_eq!(canary.allowlist.len(), 1);
        assert!(warnings.is_empty());
        let typo = BTreeMap::from([
            ("PAYMENTS_POS_CANARY_MODE".to_string(), "allowlist".to_string()),
            ("PAYMENTS_POS_CANARY_ALLOWLIST".to_string(), known[..35].to_string()),
        ]);
        assert!(proposed_config(&typo, &fleet).unwrap_err().contains("PAYMENTS_POS_CANARY_ALLOWLIST"));
        let stranger = BTreeMap::from([
            ("PAYMENTS_POS_CANARY_MODE".to_string(), "blocklist".to_string()),
            ("PAYMENTS_POS_CANARY_BLOCKLIST".to_string(), Uuid::from_u128(5).to_string()),
        ]);
        assert!(
            proposed_config(&stranger, &fleet)
                .unwrap_err()
                .starts_with("PAYMENTS_POS_CANARY_BLOCKLIST: not a condominium")
        );
        assert!(parse_env_file("MODE allowlist").is_err());
    }
}
