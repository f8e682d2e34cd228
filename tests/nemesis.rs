//! The nemesis in the simulator: every fault that bends time fires in the
//! bundled `nemesis` scenario, the reference stack keeps D1–D9 under it, and
//! each defect it was fixed for comes back behind its bug switch and is
//! caught with the invariant it breaks.

use std::collections::BTreeSet;
use std::path::Path;

use posim::faults::FaultKind;
use posim::history::Event;
use posim::scenario::Scenario;
use posim::stack::StackBug;
use posim::verdict::simulate;

fn scenario(path: &str) -> Scenario {
    Scenario::load(Path::new(path)).expect("the scenario loads")
}

#[test]
fn every_nemesis_fault_fires_and_the_planned_stack_faults_are_played() {
    let nemesis = scenario("scenarios/nemesis.toml");
    let mut fired = BTreeSet::new();
    // A pause is rare by design (a few a run): three seeds see every kind.
    for seed in 1..=3 {
        let judged = simulate(&nemesis, seed, &[]);
        fired.extend(judged.history.records.iter().filter_map(|record| match record.event {
            Event::Fault { kind, .. } => Some(kind),
            _ => None,
        }));
        let stack_faults =
            judged.history.records.iter().filter(|r| matches!(r.event, Event::StackFault { .. })).count();
        assert_eq!(stack_faults, 2 * nemesis.stack_faults.len(), "each stack fault begins and ends");
        assert!(judged.report.passed(), "{:?} {:?}", judged.report.violation_counts, judged.report.failed_criteria);
    }
    let planned: BTreeSet<FaultKind> = nemesis.faults.iter().map(|fault| fault.kind).collect();
    assert_eq!(fired, planned, "every planned kind fires");
}

/// (bug switches, scenario, the invariant they break)
const CAUGHT: [(&[StackBug], &str, &str); 4] = [
    (&[StackBug::UnfencedStart], "scenarios/nemesis.toml", "D2"),
    (&[StackBug::LateCaptureKept], "scenarios/nemesis.toml", "D3"),
    (&[StackBug::UnfencedStart], "fixtures/scenarios/live-nemesis.toml", "D2"),
    (&[StackBug::UnfencedStart, StackBug::LeaseOnReplicaClock], "fixtures/scenarios/clock-skew.toml", "D2"),
];

#[test]
fn each_nemesis_defect_is_caught_behind_its_switch_and_gone_without_it() {
    for (bugs, path, code) in CAUGHT {
        let scenario = scenario(path);
        let fixed = simulate(&scenario, scenario.seed, &[]);
        assert!(fixed.report.violation_counts.is_empty(), "{path}: {:?}", fixed.report.violation_counts);
        let broken = simulate(&scenario, scenario.seed, bugs);
        let found = broken.report.violation_counts.get(code).copied().unwrap_or(0);
        assert!(found > 0, "{bugs:?} on {path}: expected {code}, got {:?}", broken.report.violation_counts);
    }
}

#[test]
fn the_fence_alone_covers_a_lease_taken_on_a_skewed_clock() {
    let scenario = scenario("fixtures/scenarios/clock-skew.toml");
    let unfenced = simulate(&scenario, scenario.seed, &[StackBug::UnfencedStart]);
    assert!(unfenced.report.violation_counts.is_empty(), "{:?}", unfenced.report.violation_counts);
    let skewed = simulate(&scenario, scenario.seed, &[StackBug::LeaseOnReplicaClock]);
    assert!(skewed.report.violation_counts.is_empty(), "{:?}", skewed.report.violation_counts);
}
