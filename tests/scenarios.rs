//! Every bundled scenario passes on the reference stack over 50 seeds; each
//! bug switch makes a bundled scenario fail with the invariant it breaks.

use std::path::Path;

use posim::scenario::Scenario;
use posim::stack::StackBug;
use posim::verdict::simulate;

/// Scenarios too large to run 50 times in a test (run once below).
const CAPACITY: &str = "capacity-2000x5";
/// A `posim load` scenario (2,000 machines for 4 h): one seed shows it passes.
const LOAD: &str = "capacity-knee";

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
        let seeds = if scenario.name == LOAD { 0..1 } else { 0..50 };
        for seed in seeds {
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
const CAUGHT: [(StackBug, &str, &str); 11] = [
    (StackBug::NonidempotentConfirm, "terminal-faults", "D2"),
    (StackBug::ResendAfterTimeout, "iot-faults", "D2"),
    (StackBug::RefundRacesCycle, "iot-faults", "D4"),
    (StackBug::GateBlocksInflight, "rollback", "D8"),
    (StackBug::StateLostOnRedeploy, "replica-crashes", "D6"),
    (StackBug::InvertedAllowlist, "rollout", "D5"),
    (StackBug::AuthorizeReplayNewPayment, "terminal-faults", "D9"),
    (StackBug::AuthorizeReplayNewPayment, "rollout", "D9"),
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

/// A second payment for a replayed authorize breaks no invariant of the
/// world (the extra payment just expires): only the contract's own promise,
/// D9, sees it — on every seed that replays an authorize.
#[test]
fn a_replayed_authorize_answered_with_a_second_payment_is_caught_over_50_seeds() {
    // (scenario, how many of 50 seeds replay an authorize at least once)
    for (name, at_least) in [("terminal-faults", 50), ("rollout", 30)] {
        let scenario = load(name);
        let mut caught = 0;
        for seed in 0..50 {
            let report = simulate(&scenario, seed, &[StackBug::AuthorizeReplayNewPayment]).report;
            let codes: Vec<&str> = report.violation_counts.keys().map(|code| code.code()).collect();
            assert!(codes.iter().all(|code| *code == "D9"), "{name} seed {seed}: only D9 sees it: {codes:?}");
            caught += usize::from(codes == ["D9"]);
        }
        assert!(caught >= at_least, "{name}: {caught} of 50 seeds caught, expected at least {at_least}");
    }
}

#[test]
fn the_capacity_scenario_passes() {
    let scenario = load(CAPACITY);
    let report = simulate(&scenario, scenario.seed, &[]).report;
    assert!(report.passed(), "{:?} {:?}", report.violation_counts, report.failed_criteria);
    assert!(report.stack_requests > 500_000, "a capacity run is large: {}", report.stack_requests);
}
