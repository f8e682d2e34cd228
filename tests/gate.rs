//! The verdict a CI gate can trust: a run states the outcome it expects and
//! fails when the rollout ends otherwise; the report's criteria for a window
//! are the controller's; an unproven phase is never advanced unless the
//! scenario chose so, and then the log says it.

use std::path::Path;
use std::process::Command;

use posim::criteria::Judgement;
use posim::history::DecisionKind;
use posim::judge::{HistoryIndex, OnInconclusive, Outcome};
use posim::scenario::Scenario;
use posim::verdict::simulate;

const BUNDLED: [&str; 10] = [
    "rollout",
    "terminal-faults",
    "psp-faults",
    "iot-faults",
    "replica-crashes",
    "rollback",
    "incident-a-paid-no-wash",
    "incident-b-bad-deploy",
    "incident-c-suspected-duplicate",
    "game-day-operator",
];

fn bundled(name: &str) -> Scenario {
    Scenario::load(Path::new(&format!("scenarios/{name}.toml"))).expect("a bundled scenario")
}

#[test]
fn a_rollout_that_rolls_back_fails_the_gate() {
    let text = std::fs::read_to_string("scenarios/rollout.toml").expect("the bundled rollout");
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("rollout-psp-errors.toml");
    std::fs::write(&file, text + "\n[[faults]]\nkind = \"psp_error\"\nprobability = 0.6\n").expect("written");
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["run", "--no-trace", "--out"])
        .arg(dir.path().join("report"))
        .arg(&file)
        .output()
        .expect("posim runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let first = stdout.lines().find(|line| line.starts_with("outcome:")).expect("an outcome line");
    assert!(first.contains("rolled back at") && first.contains("NOT what the scenario expects"), "{first}");
    let summary = std::fs::read_to_string(dir.path().join("report/summary.json")).expect("summary.json");
    let json: serde_json::Value = serde_json::from_str(&summary).expect("json");
    assert_eq!(json["outcome"]["actual"]["kind"], "rolled_back");
    assert_eq!(json["outcome"]["expected"], "complete");
    assert_eq!(json["verdict"], "fail");
    let markdown = std::fs::read_to_string(dir.path().join("report/summary.md")).expect("summary.md");
    let first = markdown.lines().next().unwrap_or("");
    assert!(
        first.starts_with("# ❌ FAIL") && first.contains("outcome: rolled back"),
        "verdict and outcome first: {markdown}"
    );
}

#[test]
fn every_bundled_scenario_declares_and_meets_its_outcome() {
    for name in BUNDLED {
        let scenario = bundled(name);
        let judged = simulate(&scenario, scenario.seed, &[]);
        let outcome = &judged.report.outcome;
        assert!(outcome.met, "{name}: {}", outcome.line());
        assert!(judged.report.passed(), "{name}: {:?}", judged.report.failed_criteria);
    }
    let declared = |name: &str| std::fs::read_to_string(format!("scenarios/{name}.toml")).unwrap_or_default();
    for incident in ["incident-a-paid-no-wash", "incident-b-bad-deploy", "incident-c-suspected-duplicate"] {
        assert!(declared(incident).contains("\nexpect = "), "{incident} states what it expects");
    }
}

/// What the report shows for a window is what the controller decided on.
#[test]
fn the_report_judges_each_window_as_the_controller_did() {
    for name in BUNDLED {
        let scenario = bundled(name);
        for seed in 0..10 {
            let judged = simulate(&scenario, seed, &[]);
            let index = HistoryIndex::of(&judged.history);
            for (decision, windows) in judged.history.decisions.iter().zip(&index.decisions) {
                if decision.criteria.is_empty() {
                    continue; // an operator's or the plan's call: nothing judged
                }
                let window = windows.judged.expect("a judged decision judged a window");
                let closed = decision.kind != DecisionKind::Hold;
                if closed {
                    let shown = &judged.report.phases[window].criteria;
                    assert_eq!(shown, &decision.criteria, "{name} seed {seed}: window {window}");
                }
                let unproven = decision.criteria.iter().any(|c| c.judgement == Judgement::Inconclusive);
                if decision.kind == DecisionKind::Advance && unproven {
                    assert_eq!(scenario.criteria.on_inconclusive, OnInconclusive::Advance, "{name} seed {seed}");
                    let said = decision.evidence.iter().any(|line| line.contains("on_inconclusive = advance"));
                    assert!(said, "{name} seed {seed}: the log says so: {:?}", decision.evidence);
                }
            }
        }
    }
}

#[test]
fn an_unproven_phase_holds_by_default_and_the_log_says_why() {
    let mut scenario = bundled("replica-crashes");
    scenario.criteria.on_inconclusive = OnInconclusive::Hold;
    let judged = simulate(&scenario, scenario.seed, &[]);
    let holds: Vec<_> = judged.history.decisions.iter().filter(|d| d.kind == DecisionKind::Hold).collect();
    assert!(holds.iter().any(|d| d.evidence.iter().any(|l| l.contains("on_inconclusive = hold"))), "{holds:?}");
    let phase_one = &scenario.phases[0];
    let advanced_early =
        judged.history.decisions.iter().any(|d| {
            d.kind == DecisionKind::Advance && d.criteria.iter().any(|c| c.judgement == Judgement::Inconclusive)
        });
    assert!(!advanced_early, "no advance on an unproven phase ({})", phase_one.name);
    let ended = Outcome::of(&judged.history);
    assert!(matches!(ended, Outcome::Held { .. }), "{ended:?}");
    assert!(!judged.report.passed(), "a held rollout does not pass a gate that expects it complete");
}

/// The bundled rollout completes on the reference stack over 200 seeds,
/// every phase proven within its `hold_max` (no rollback, no long hold).
#[test]
fn the_bundled_rollout_completes_over_200_seeds() {
    let scenario = bundled("rollout");
    let failures: Vec<String> = std::thread::scope(|scope| {
        let halves: Vec<_> = [0u64, 1]
            .map(|half| {
                let scenario = &scenario;
                scope.spawn(move || {
                    (0..200u64)
                        .filter(|seed| seed % 2 == half)
                        .filter_map(|seed| check_seed(scenario, seed))
                        .collect::<Vec<_>>()
                })
            })
            .into_iter()
            .collect();
        halves.into_iter().flat_map(|h| h.join().expect("a seed thread")).collect()
    });
    assert!(failures.is_empty(), "{} seeds: {failures:#?}", failures.len());
}

fn check_seed(scenario: &Scenario, seed: u64) -> Option<String> {
    let judged = simulate(scenario, seed, &[]);
    if !judged.report.passed() {
        return Some(format!("seed {seed}: {} {:?}", judged.report.outcome.line(), judged.report.failed_criteria));
    }
    // Each advance comes within its phase's hold_max of the phase start.
    let advances = judged.history.decisions.iter().filter(|d| d.kind == DecisionKind::Advance);
    let mut phase_start = 0;
    for (phase, advance) in scenario.phases.iter().zip(advances) {
        if advance.at > phase_start + phase.hold_max {
            return Some(format!("seed {seed}: phase {} held past hold_max", phase.name));
        }
        phase_start = advance.at;
    }
    None
}
