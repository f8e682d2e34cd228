//! Suites through the binary: several scenarios as one gate. Two small
//! fixture scenarios pass with a report folder each and `suite.json`; a bug
//! switch fails the suite and names the scenario and D-code; a folder with a
//! broken scenario is refused before anything runs; the trace of each member
//! is the same on one thread, on two, and run alone.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const NEMESIS: &str = "fixtures/scenarios/live-nemesis.toml";
const WORLD: &str = "fixtures/scenarios/world-faults.toml";

fn posim(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_posim")).args(args).arg("--out").arg(out).output().expect("posim runs")
}

fn said(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

/// Each member's (label, trace hash), in the suite's order.
fn trace_hashes(suite: &Value) -> Vec<(String, String)> {
    let runs = suite["runs"].as_array().expect("runs");
    runs.iter()
        .map(|run| (run["label"].as_str().unwrap_or("").into(), run["trace_hash"].as_str().unwrap_or("").into()))
        .collect()
}

#[test]
fn a_suite_of_two_passing_scenarios_passes_with_a_report_folder_each() {
    let out = tempfile::tempdir().expect("a temp dir");
    let output = posim(&["run", WORLD, NEMESIS, "--jobs", "2"], out.path());
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let console = said(&output);
    assert!(console.contains("[1/2] ") && console.contains("[2/2] "), "{console}");
    assert!(console.contains("world-faults.toml PASS") && console.contains("verdict: PASS"), "{console}");
    let suite = read_json(&out.path().join("suite.json"));
    assert_eq!(suite["verdict"], "pass");
    let labels: Vec<String> = trace_hashes(&suite).into_iter().map(|(label, _)| label).collect();
    assert_eq!(labels, ["world-faults", "live-nemesis"], "input order");
    for label in &labels {
        let member = out.path().join(label);
        assert_eq!(read_json(&member.join("summary.json"))["verdict"], "pass");
        for file in ["summary.md", "oplog.jsonl", "trace.jsonl"] {
            assert!(member.join(file).is_file(), "{label}/{file}");
        }
    }
    let markdown = std::fs::read_to_string(out.path().join("summary.md")).expect("summary.md");
    assert!(markdown.starts_with("# posim suite — ✅ PASS: 2 of 2 scenarios pass"), "{markdown}");
}

#[test]
fn a_bug_switch_fails_the_suite_naming_the_scenario_and_its_invariant() {
    let out = tempfile::tempdir().expect("a temp dir");
    let output = posim(&["run", WORLD, NEMESIS, "--stack-bug", "unfenced-start"], out.path());
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(said(&output).contains("verdict: FAIL"), "{}", said(&output));
    let suite = read_json(&out.path().join("suite.json"));
    assert_eq!(suite["verdict"], "fail");
    assert_eq!(suite["stack_bugs"][0], "unfenced-start");
    let nemesis = &suite["runs"][1];
    assert_eq!((nemesis["label"].as_str(), nemesis["verdict"].as_str()), (Some("live-nemesis"), Some("fail")));
    assert!(nemesis["violation_counts"]["D2"].as_u64().is_some_and(|count| count > 0), "{nemesis}");
    assert_eq!(nemesis["file"], NEMESIS);
    let markdown = std::fs::read_to_string(out.path().join("summary.md")).expect("summary.md");
    assert!(markdown.starts_with("# posim suite — ❌ FAIL"), "{markdown}");
    assert!(markdown.lines().any(|line| line.contains("live-nemesis") && line.contains("D2×")), "{markdown}");
    let junit = std::fs::read_to_string(out.path().join("junit.xml")).expect("the suite's junit.xml");
    let nemesis = junit.split("<testsuite ").find(|suite| suite.contains("name=\"live-nemesis\""));
    let nemesis = nemesis.expect("a testsuite named after the failing scenario");
    let failing = nemesis.split("<testcase ").find(|case| case.contains("<failure") && case.contains("D2"));
    assert!(failing.is_some(), "its failing case names D2: {nemesis}");
}

#[test]
fn a_folder_with_a_broken_scenario_is_refused_and_nothing_runs() {
    let folder = tempfile::tempdir().expect("a temp dir");
    std::fs::copy(WORLD, folder.path().join("a-good.toml")).expect("copied");
    std::fs::copy("fixtures/bad-scenarios/broken-toml.toml", folder.path().join("b-broken.toml")).expect("copied");
    std::fs::copy("fixtures/bad-scenarios/unknown-key.toml", folder.path().join("c-unknown.toml")).expect("copied");
    std::fs::write(folder.path().join("notes.txt"), "not a scenario").expect("written");
    let out = folder.path().join("out");
    let output = posim(&["run", folder.path().to_str().expect("UTF-8")], &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}", said(&output));
    assert!(stderr.contains("b-broken.toml:2:7:") && stderr.contains("expected `]`"), "{stderr}");
    assert!(
        stderr.contains("c-unknown.toml:11:1:") && stderr.contains("unknown field `colour`"),
        "every error: {stderr}"
    );
    assert!(!stderr.contains("a-good.toml"), "{stderr}");
    assert!(!out.exists(), "nothing ran, nothing was written");
}

#[test]
fn bad_jobs_are_a_usage_error_naming_the_flag() {
    let out = tempfile::tempdir().expect("a temp dir");
    for jobs in ["0", "65", "many"] {
        let output = posim(&["run", WORLD, NEMESIS, "--jobs", jobs], out.path());
        assert_eq!(output.status.code(), Some(2), "{}", said(&output));
        assert!(String::from_utf8_lossy(&output.stderr).contains("--jobs"), "{}", said(&output));
    }
}

#[test]
fn two_threads_give_each_scenario_the_trace_it_has_alone() {
    let out = tempfile::tempdir().expect("a temp dir");
    let suite = |jobs: &str| {
        let dir = out.path().join(format!("jobs-{jobs}"));
        let output = posim(&["run", NEMESIS, WORLD, "--no-trace", "--jobs", jobs], &dir);
        assert_eq!(output.status.code(), Some(0), "{}", said(&output));
        trace_hashes(&read_json(&dir.join("suite.json")))
    };
    let (one, two) = (suite("1"), suite("2"));
    assert_eq!(one, two, "threads change nothing but the speed");
    for (file, (label, hash)) in [NEMESIS, WORLD].into_iter().zip(&one) {
        let dir = out.path().join(format!("alone-{label}"));
        let output = posim(&["run", file, "--no-trace"], &dir);
        assert_eq!(output.status.code(), Some(0), "{}", said(&output));
        assert_eq!(read_json(&dir.join("summary.json"))["trace_hash"], hash.as_str(), "{label} alone");
    }
}
