//! The same scenario and seed give the same trace, in separate processes;
//! another seed gives another trace. The report on disk carries the fields
//! CI reads.

use std::path::Path;
use std::process::Command;

fn run(seed: &str, out: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["run", "scenarios/rollout.toml", "--seed", seed, "--out"])
        .arg(out)
        .output()
        .expect("posim runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let hash = stdout
        .lines()
        .find_map(|line| line.strip_prefix("trace-hash: "))
        .unwrap_or_else(|| panic!("no trace-hash line in:\n{stdout}"))
        .to_string();
    (output.status.code().unwrap_or(-1), hash)
}

#[test]
fn same_seed_same_trace_in_two_processes() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (code_a, first) = run("3", &dir.path().join("a"));
    let (code_b, second) = run("3", &dir.path().join("b"));
    let (_, other) = run("4", &dir.path().join("c"));
    assert_eq!((code_a, code_b), (0, 0));
    assert_eq!(first.len(), 32);
    assert_eq!(first, second, "one seed, one trace");
    assert_ne!(first, other, "another seed, another trace");
    let trace_a = std::fs::read(dir.path().join("a/trace.jsonl")).expect("trace written");
    let trace_b = std::fs::read(dir.path().join("b/trace.jsonl")).expect("trace written");
    assert!(trace_a == trace_b, "the traces are identical byte for byte");
}

#[test]
fn the_summary_has_what_ci_reads() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (code, hash) = run("5", dir.path());
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(dir.path().join("summary.json")).expect("summary.json");
    let summary: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(summary["schema_version"], 6);
    assert_eq!(summary["scenario"], "rollout");
    assert_eq!(summary["seed"], 5);
    assert_eq!(summary["trace_hash"], hash.as_str());
    assert_eq!(summary["verdict"], "pass");
    assert_eq!(summary["violations"].as_array().map(Vec::len), Some(0));
    let phases = summary["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["5%", "25%", "100%"]);
    assert_eq!(phases[0]["canary"]["mode"], "allowlist");
    assert_eq!(phases[2]["canary"]["mode"], "off");
    assert!(phases[2]["confirm"]["attempts"].as_u64().unwrap_or(0) > 100);
    let markdown = std::fs::read_to_string(dir.path().join("summary.md")).expect("summary.md");
    assert!(markdown.contains("PASS") && markdown.contains("| 25% |"), "{markdown}");
}
