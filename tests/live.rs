//! `posim live` against the reference stack it launches (a throwaway
//! PostgreSQL and one `posim stack serve` per replica): a short rollout
//! passes; each bug switch it can provoke live breaks its invariant; a stack
//! that cannot start ends the run with exit 3 and its own words. Without
//! PostgreSQL these tests fail: they are ignored by a plain `cargo test` and
//! run with `--include-ignored` (what `.ci/run` runs).

use std::process::{Command, Output};

mod common;
use common::need_postgres;

/// 120×, but the rollback with payments in flight at 40×: on a loaded
/// two-core CI host a rolling restart takes seconds of wall time, which at
/// 120× outlasts the card reads meant to keep payments in flight across it.
fn time_scale(scenario: &str) -> &'static str {
    if scenario == "live-rollback" { "40" } else { "120" }
}

fn live(scenario: &str, extra: &[&str]) -> (Output, String) {
    let out = tempfile::tempdir().expect("a temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["live", &format!("fixtures/scenarios/{scenario}.toml"), "--time-scale", time_scale(scenario)])
        .args(["--no-trace", "--out"])
        .arg(out.path())
        .args(extra)
        .output()
        .expect("posim runs");
    let summary = std::fs::read_to_string(out.path().join("summary.json")).unwrap_or_default();
    (output, summary)
}

#[test]
#[ignore = "needs PostgreSQL"]
fn a_short_rollout_passes_live() {
    need_postgres();
    let (output, summary) = live("live-smoke", &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary.json");
    assert_eq!(summary["verdict"], "pass");
    let phases: Vec<&str> =
        summary["phases"].as_array().expect("phases").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(phases, ["25%", "100%"], "the live run redeployed for phase 2");
    assert!(summary["stack_requests"].as_u64().unwrap_or(0) > 50, "{summary}");
    let washed: u64 = summary["phases"].as_array().expect("phases").iter().filter_map(|p| p["washed"].as_u64()).sum();
    assert!(washed > 10, "customers got their washes: {washed}");
}

/// Each switch, the live scenario that provokes it, and the invariant it breaks.
const CAUGHT_LIVE: [(&str, &str, &str); 8] = [
    ("inverted-allowlist", "live-smoke", "D5"),
    ("state-lost-on-redeploy", "live-smoke", "D6"),
    ("nonidempotent-confirm", "live-faults", "D2"),
    ("resend-after-timeout", "live-faults", "D2"),
    ("refund-races-cycle", "live-faults", "D4"),
    ("gate-blocks-inflight", "live-rollback", "D8"),
    ("unfenced-start", "live-nemesis", "D2"),
    ("late-capture-kept", "live-nemesis", "D3"),
];

#[test]
#[ignore = "needs PostgreSQL"]
fn bug_switches_are_caught_live() {
    need_postgres();
    for (bug, scenario, code) in CAUGHT_LIVE {
        let (output, summary) = live(scenario, &["--stack-bug", bug]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{bug}: {stdout}");
        let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary.json");
        assert!(
            summary["violation_counts"][code].as_u64().unwrap_or(0) > 0,
            "{bug}: expected {code}: {}",
            summary["violation_counts"]
        );
    }
}

#[test]
#[ignore = "needs PostgreSQL"]
fn the_reference_stack_keeps_the_invariants_under_faults_and_rollbacks_live() {
    need_postgres();
    // (scenario, stack faults it plans: a pause, a kill and a database restart)
    for (scenario, planned) in [("live-faults", 0), ("live-rollback", 0), ("live-stack-faults", 3), ("live-nemesis", 2)]
    {
        let (output, summary) = live(scenario, &[]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{scenario}: {stdout}");
        assert!(stdout.contains("invariants: D1–D9 hold"), "{scenario}: {stdout}");
        let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary.json");
        let faults = summary["stack_faults"].as_array().expect("stack faults");
        let undone = faults.iter().filter(|f| f["ended_ms"].is_u64()).count();
        assert_eq!((faults.len(), undone), (planned, planned), "{scenario}: carried out and undone: {faults:?}");
    }
}

/// D9 live: replayed authorizes (lost responses, double taps) answered with a
/// second payment break the contract; the reference stack keeps it.
#[test]
#[ignore = "needs PostgreSQL"]
fn a_replayed_authorize_answered_with_a_second_payment_is_caught_live() {
    assert!(posim::live::postgres::find_binaries().is_some(), "this test needs PostgreSQL's server binaries");
    let (output, summary) = live("live-replays", &["--stack-bug", "authorize-replay-new-payment"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary.json");
    let counts = summary["violation_counts"].as_object().expect("violation counts");
    assert!(counts.get("D9").and_then(|n| n.as_u64()).unwrap_or(0) > 0, "expected D9: {counts:?}");
    let (output, _) = live("live-replays", &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("invariants: D1–D9 hold"), "{stdout}");
}

#[test]
#[ignore = "needs PostgreSQL"]
fn a_stack_that_cannot_start_ends_the_run_with_its_own_words() {
    need_postgres();
    let posim = env!("CARGO_BIN_EXE_posim");
    let command = format!("PAYMENTS_POS_CANARY_MODE=sideways exec {posim} stack serve");
    let (output, _) = live("live-smoke", &["--stack-cmd", &command]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the stack exited at start-up"), "{stderr}");
    assert!(stderr.contains("PAYMENTS_POS_CANARY_MODE=`sideways` is refused"), "the stack's own message: {stderr}");
}

#[test]
#[ignore = "needs PostgreSQL"]
fn a_running_stack_is_driven_by_url_and_never_redeployed() {
    need_postgres();
    let world_port = common::free_port();
    let stack = common::ServedStack::start(world_port);
    let (output, summary) = live("live-smoke", &["--stack-url", &stack.url, "--world-port", &world_port.to_string()]);
    drop(stack);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("posim could not redeploy it"), "the report says so: {stdout}");
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary.json");
    assert_eq!(summary["phases"][0]["canary"]["mode"], "off", "the config the stack really applies, read off /health");
    let notes = summary["notes"].as_array().expect("notes");
    assert!(
        notes.iter().any(|n| n.as_str().is_some_and(|n| n.contains("could not redeploy"))),
        "the summary says so: {notes:?}"
    );
}

/// `clock_skew` live: replica processes start under libfaketime with the
/// plan's offsets. The fixed stack holds; a lease on the replica's clock
/// without the fence runs naive machines twice, and without the skew the
/// same unfenced stack does not — the skew is what was played.
#[test]
#[ignore = "needs PostgreSQL and libfaketime"]
fn replica_clocks_are_skewed_live_under_libfaketime() {
    need_postgres();
    assert!(posim::live::clock_skew::find_libfaketime().is_some(), "libfaketime is not installed");
    let (output, _) = live("clock-skew", &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("clock_skew is not played"), "{stdout}");
    let (output, summary) =
        live("clock-skew", &["--stack-bug", "unfenced-start", "--stack-bug", "lease-on-replica-clock"]);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stdout));
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary.json");
    assert!(summary["violation_counts"]["D2"].as_u64().unwrap_or(0) > 0, "{}", summary["violation_counts"]);
    let (output, _) = live("clock-skew", &["--stack-bug", "unfenced-start"]);
    assert_eq!(output.status.code(), Some(0), "unfenced alone: {}", String::from_utf8_lossy(&output.stdout));
}
