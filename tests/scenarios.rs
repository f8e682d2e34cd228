//! Every bundled scenario passes on the reference stack over 50 seeds; each
//! bug switch makes a bundled scenario fail with the invariant it breaks.

use std::path::Path;

use posim::cli::simulate;
use posim::scenario::Scenario;
use posim::stack::StackBug;

/// Scenarios too large to run 50 times in a test (run once below).
const CAPACITY: &str = "capacity-2000x5";

fn bundled() -> Vec<Scenario> {
    let mut paths: Vec<_> = std::fs::read_dir("scenarios")
        .expect("scenarios/ exists")
        .map(|entry| entry.expect("a readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "the rollout, one scenario per fault family, the incidents");
    paths.iter().map(|path| Scenario::load(path).unwrap_or_else(|error| panic!("{error}"))).collect()
}

#[test]
fn every_bundled_scenario_passes_over_50_seeds() {
    for scenario in bundled().iter().filter(|s| s.name != CAPACITY) {
        for seed in 0..50 {
            let report = simulate(scenario, seed, &[]).report;
            assert!(
                report.passed(),
                "{} seed {seed} failed: {:?} {:?}\n{}",
                scenario.name,
                report.violation_counts,
                report.failed_criteria,
                report.violations.first().map(|v| format!("{v:#?}")).unwrap_or_default()
            );
        }
    }
}

fn load(name: &str) -> Scenario {
    Scenario::load(Path::new(&format!("scenarios/{name}.toml"))).expect("a bundled scenario")
}

/// Each switch, the scenario that exposes it, and the invariant it breaks.
const CAUGHT: [(StackBug, &str, &str); 9] = [
    (StackBug::NonidempotentConfirm, "terminal-faults", "D2"),
    (StackBug::ResendAfterTimeout, "iot-faults", "D2"),
    (StackBug::RefundRacesCycle, "iot-faults", "D4"),
    (StackBug::GateBlocksInflight, "rollback", "D8"),
    (StackBug::StateLostOnRedeploy, "replica-crashes", "D6"),
    (StackBug::InvertedAllowlist, "rollout", "D5"),
    // The runbook's incidents, each with the defect that would turn it into a real one.
    (StackBug::ResendAfterTimeout, "incident-a-paid-no-wash", "D2"),
    (StackBug::GateBlocksInflight, "incident-b-bad-deploy", "D8"),
    (StackBug::NonidempotentConfirm, "incident-c-suspected-duplicate", "D2"),
];

#[test]
fn every_bug_switch_is_caught_by_name() {
    for (bug, scenario, code) in CAUGHT {
        let scenario = load(scenario);
        let report = simulate(&scenario, scenario.seed, &[bug]).report;
        assert!(!report.passed(), "{bug} on {} passed", scenario.name);
        assert!(
            report.violation_counts.contains_key(code),
            "{bug} on {}: expected {code}, got {:?}",
            scenario.name,
            report.violation_counts
        );
        let witnessed = report.violations.iter().find(|v| v.code == code).expect("a listed violation");
        assert!(!witnessed.witness.is_empty(), "{code} comes with its witness");
        assert_eq!(report.stack_bugs, vec![bug.to_string()]);
    }
}

#[test]
fn the_capacity_scenario_passes() {
    let scenario = load(CAPACITY);
    let report = simulate(&scenario, scenario.seed, &[]).report;
    assert!(report.passed(), "{:?} {:?}", report.violation_counts, report.failed_criteria);
    assert!(report.stack_requests > 500_000, "a capacity run is large: {}", report.stack_requests);
}
