//! The runbook, executed: phases advance on their criteria, a bad build is
//! rolled back within its targets, a target tighter than the deploy model
//! fails by name, a game day's typo is refused, the incidents are handled,
//! and every decision has a full §5 entry in the operation log.

use std::path::Path;
use std::process::Command;

use posim::history::DecisionKind;
use posim::report::RunReport;
use posim::scenario::Scenario;
use posim::verdict::simulate;

fn run(name: &str) -> RunReport {
    let scenario = Scenario::load(Path::new(&format!("scenarios/{name}.toml"))).expect("a bundled scenario");
    simulate(&scenario, scenario.seed, &[]).report
}

fn kinds(report: &RunReport) -> Vec<DecisionKind> {
    report.decisions.iter().map(|entry| entry.decision).collect()
}

#[test]
fn the_rollout_advances_through_the_three_phases() {
    let report = run("rollout");
    assert!(report.passed(), "{:?}", report.failed_criteria);
    use DecisionKind::*;
    assert_eq!(kinds(&report), [Start, Advance, Advance, Advance]);
    let phases: Vec<&str> = report.phases.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(phases, ["5%", "25%", "100%"]);
    assert!(
        report.decisions.last().is_some_and(|e| e.evidence.iter().any(|line| line.contains("rollout is complete")))
    );
    assert!(report.rollbacks.is_empty());
}

#[test]
fn a_bad_build_is_rolled_back_within_its_targets() {
    let report = run("incident-b-bad-deploy");
    assert!(report.passed(), "{:?}", report.failed_criteria);
    let rollback = report.decisions.iter().find(|e| e.decision == DecisionKind::PartialRollback).expect("a rollback");
    assert_eq!(rollback.who, "posim-auto");
    assert!(rollback.evidence.iter().any(|line| line.contains("above the cap")), "{:?}", rollback.evidence);
    let [timing] = report.rollbacks.as_slice() else { panic!("one rollback: {:?}", report.rollbacks) };
    let times =
        [timing.replicas_on_new_config_ms, timing.affected_denied_ms, timing.rates_under_caps_ms, timing.stable_ms];
    assert!(times.iter().all(Option::is_some), "all four rollback times measured: {times:?}");
    assert_eq!(timing.replicas_on_new_config_ms, Some(60_000), "3 replicas × 20 s restarts");
    assert!(timing.affected > 0 && timing.breaches.is_empty());
    assert!(timing.stable_ms >= timing.rates_under_caps_ms.map(|t| t + 15 * 60_000));
}

#[test]
fn a_target_tighter_than_the_deploy_model_fails_by_name() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["run", "fixtures/scenarios/rollback-target-too-tight.toml", "--no-trace", "--out"])
        .arg(dir.path())
        .output()
        .expect("posim runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("rollback target `replicas_on_new_config` (45.0s) breached: took 1m 0s"), "{stdout}");
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).expect("summary.md");
    assert!(summary.contains("Rollback timing") && summary.contains("replicas_on_new_config"), "{summary}");
}

#[test]
fn a_game_day_typo_is_refused_and_the_previous_config_keeps_serving() {
    let report = run("game-day-operator");
    assert!(report.passed(), "{:?}", report.failed_criteria);
    use DecisionKind::*;
    assert_eq!(kinds(&report), [Start, Refused, Deploy, PartialRollback]);
    let refused = &report.decisions[1];
    assert_eq!(refused.who, "ana.souza");
    assert!(!refused.applied);
    assert!(refused.evidence[0].contains("PAYMENTS_POS_CANARY_ALLOWLIST"), "{:?}", refused.evidence);
    assert_eq!(refused.config, report.decisions[0].config, "the previous config keeps serving");
    assert_eq!(report.phases.len(), 3, "the refused deploy opened no window");
}

#[test]
fn incident_a_reprocesses_paid_customers_to_exactly_one_cycle() {
    let report = run("incident-a-paid-no-wash");
    assert!(report.passed(), "{:?} {:?}", report.violation_counts, report.failed_criteria);
    let reprocessed = report.decisions.iter().filter(|e| e.decision == DecisionKind::Reprocess).count();
    assert!(reprocessed >= 3, "support reprocessed several times: {reprocessed}");
    assert!(!report.violation_counts.contains_key("D2"));
}

#[test]
fn incident_c_freezes_and_audits_a_suspected_duplicate() {
    let report = run("incident-c-suspected-duplicate");
    assert!(report.passed(), "{:?}", report.failed_criteria);
    let freeze = report.decisions.iter().position(|e| e.decision == DecisionKind::Freeze).expect("a freeze");
    assert_eq!(report.decisions[freeze].config.mode, posim::contract::CanaryMode::Allowlist);
    let audit = &report.decisions[freeze + 1];
    assert_eq!(audit.decision, DecisionKind::Audit);
    assert!(
        audit.evidence[0].contains("idempotency_key") && audit.evidence[0].contains("no duplicate"),
        "{:?}",
        audit.evidence
    );
}

#[test]
fn every_decision_has_a_full_operation_log_entry() {
    for name in ["rollout", "incident-b-bad-deploy", "game-day-operator", "incident-c-suspected-duplicate"] {
        let report = run(name);
        assert!(!report.decisions.is_empty());
        for entry in &report.decisions {
            assert!(entry.at.starts_with("2026-12-01T") && entry.at.ends_with('Z'), "{name}: {}", entry.at);
            assert!(!entry.who.is_empty(), "{name}: who");
            assert_eq!(entry.env.len(), 3, "{name}: mode and both lists");
            assert!(entry.env[0].starts_with("PAYMENTS_POS_CANARY_MODE="));
            assert!(entry.kpis_before.until_ms == entry.at_ms && entry.kpis_after.from_ms == entry.at_ms);
            assert!(!entry.evidence.is_empty(), "{name}: evidence for {:?}", entry.decision);
        }
    }
}

#[test]
fn the_report_folder_has_the_operation_log() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let status = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["run", "scenarios/incident-b-bad-deploy.toml", "--no-trace", "--out"])
        .arg(dir.path())
        .status()
        .expect("posim runs");
    assert!(status.success());
    let log = std::fs::read_to_string(dir.path().join("oplog.jsonl")).expect("oplog.jsonl");
    let entries: Vec<serde_json::Value> = log.lines().map(|line| serde_json::from_str(line).expect("JSON")).collect();
    assert!(entries.len() >= 3);
    for key in ["at", "who", "config", "env", "kpis_before", "kpis_after", "decision", "evidence"] {
        assert!(entries.iter().all(|e| !e[key].is_null()), "every entry has `{key}`");
    }
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).expect("summary.md");
    for heading in ["## Timeline", "## Rollback timing (§4B)", "## Operation log (§5)", "| Data/hora | Quem |"] {
        assert!(summary.contains(heading), "summary.md lacks {heading}");
    }
}

#[test]
fn the_precheck_validates_the_env_and_smokes_it() {
    let posim = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_posim")).args(args).output().expect("posim runs");
    let ok = posim(&["precheck", "scenarios/game-day-operator.toml"]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("env: OK") && stdout.contains("smoke: OK"), "{stdout}");
    let typo = posim(&[
        "precheck",
        "scenarios/game-day-operator.toml",
        "--set",
        "PAYMENTS_POS_CANARY_MODE=allowlist",
        "--set",
        "PAYMENTS_POS_CANARY_ALLOWLIST=3f9c1e52-7a0b-4d8e-b6c1-2e5f8a9d0b1",
    ]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("PAYMENTS_POS_CANARY_ALLOWLIST"));
    let stranger = posim(&[
        "precheck",
        "scenarios/game-day-operator.toml",
        "--set",
        "PAYMENTS_POS_CANARY_MODE=blocklist",
        "--set",
        "PAYMENTS_POS_CANARY_BLOCKLIST=00000000-0000-4000-8000-000000000000",
    ]);
    assert_eq!(stranger.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("not a condominium of the fleet"));
    let mode = posim(&["precheck", "scenarios/rollout.toml", "--set", "PAYMENTS_POS_CANARY_MODE=canary"]);
    assert_eq!(mode.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&mode.stderr).contains("PAYMENTS_POS_CANARY_MODE"));
}
