//! A live run writes its trace as it goes and keeps a partial summary: one
//! killed midway (SIGKILL: no handler runs) leaves both, readable. Needs
//! PostgreSQL (the embedded stack's database): ignored by a plain
//! `cargo test`, run under `--include-ignored`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|text| text.lines().count()).unwrap_or(0)
}

#[test]
#[ignore = "needs PostgreSQL"]
fn a_live_run_killed_midway_leaves_a_trace_and_a_summary_that_parse() {
    let out = tempfile::tempdir().expect("a temp dir");
    let report = out.path().join("report");
    let runs = out.path().join("runs");
    let mut run = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["live", "fixtures/scenarios/live-two-hours.toml", "--time-scale", "60", "--out"])
        .arg(&report)
        .env("POSIM_RUNS_DIR", &runs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("posim starts");
    let trace = report.join("trace.jsonl");
    let started = Instant::now();
    // Past the first analysis tick (10 runbook minutes: 10 s here), with traffic on the trace.
    while (lines(&trace) < 300 || started.elapsed() < Duration::from_secs(12))
        && started.elapsed() < Duration::from_secs(90)
    {
        std::thread::sleep(Duration::from_millis(250));
    }
    run.kill().expect("SIGKILL");
    run.wait().expect("reaped");
    let cleaned = Command::new(env!("CARGO_BIN_EXE_posim")).arg("clean").env("POSIM_RUNS_DIR", &runs).output();
    let text = std::fs::read_to_string(&trace).expect("the trace was written as the run went");
    let records: Vec<serde_json::Value> =
        text.lines().map(|line| serde_json::from_str(line).expect("every line of the trace parses")).collect();
    assert!(records.len() >= 300, "the trace holds what happened before the kill: {} records", records.len());
    let summary = std::fs::read_to_string(report.join("summary.json")).expect("a partial summary");
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("the partial summary parses");
    assert_eq!(summary["complete"], false, "{summary}");
    assert_eq!(summary["verdict"], "INCOMPLETE", "{summary}");
    assert!(summary["reached_ms"].as_u64().is_some_and(|ms| ms >= 600_000), "past the first tick: {summary}");
    assert!(summary["records"].as_u64().is_some_and(|n| n > 0 && n as usize <= records.len()), "{summary}");
    let cleaned = cleaned.expect("posim clean runs");
    assert!(cleaned.status.success(), "posim clean: {}", String::from_utf8_lossy(&cleaned.stderr));
}
