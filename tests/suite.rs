//! Suites through the binary: several scenarios as one gate. Two small
//! fixture scenarios pass with a report folder each and `suite.json`; a bug
//! switch fails the suite and names the scenario and D-code; a folder with a
//! broken scenario is refused before anything runs; the trace of each member
//! is the same on one thread, on two, and run alone.
//!
//! `posim live` suites, against the reference stack it launches for each
//! member (a throwaway PostgreSQL and replicas of its own): one verdict, a
//! report folder per member, the suite's junit.xml naming each member; a bug
//! switch fails a folder naming the scenario and its invariant; the default
//! live gate — every bundled scenario but the capacity benchmarks, two at a
//! time — passes. These need PostgreSQL's server binaries: ignored by a
//! plain `cargo test`, run by `.ci/run` (`--include-ignored`).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const NEMESIS: &str = "fixtures/scenarios/live-nemesis.toml";
const WORLD: &str = "fixtures/scenarios/world-faults.toml";
const SMOKE: &str = "fixtures/scenarios/live-smoke.toml";
const FAULTS: &str = "fixtures/scenarios/live-faults.toml";

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

// ---- posim live suites ----

fn need_postgres() {
    assert!(
        posim::live::postgres::find_binaries().is_some(),
        "PostgreSQL server binaries not found; install postgresql to run the live tests"
    );
}

/// The suite's members (label, verdict), in input order.
fn members(suite: &Value) -> Vec<(String, String)> {
    let runs = suite["runs"].as_array().expect("runs");
    let field = |run: &Value, name: &str| run[name].as_str().unwrap_or_default().to_string();
    runs.iter().map(|run| (field(run, "label"), field(run, "verdict"))).collect()
}

#[test]
#[ignore = "needs PostgreSQL"]
fn two_scenarios_live_in_parallel_give_one_verdict_and_a_report_folder_each() {
    need_postgres();
    let out = tempfile::tempdir().expect("a temp dir");
    let args = ["live", SMOKE, FAULTS, "--jobs", "2", "--time-scale", "120", "--no-trace"];
    let output = posim(&args, out.path());
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("posim live · suite of 2 scenarios · 2 threads"), "{stdout}");
    assert!(stdout.contains("live-smoke.toml PASS") && stdout.contains("live-faults.toml PASS"), "{stdout}");
    assert_eq!(stdout.matches("verdict: ").count(), 1, "one verdict for the suite: {stdout}");
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
    let suite = read_json(&out.path().join("suite.json"));
    assert_eq!(suite["verdict"], "pass");
    let expected = [("live-smoke", "pass"), ("live-faults", "pass")].map(|(l, v)| (l.to_string(), v.to_string()));
    assert_eq!(members(&suite), expected, "input order");
    let mut ports = Vec::new();
    for (label, _) in &expected {
        let member = out.path().join(label);
        let summary = read_json(&member.join("summary.json"));
        assert_eq!(summary["verdict"], "pass", "{label}");
        assert!(summary["engine"].as_str().is_some_and(|e| e.starts_with("live")), "{label}: {}", summary["engine"]);
        assert!(member.join("junit.xml").is_file() && member.join("stack-logs").is_dir(), "{label}");
        ports.push(std::fs::read_dir(member.join("stack-logs")).expect("stack logs").count());
    }
    assert!(ports.iter().all(|logs| *logs > 0), "each member kept its own replicas' logs: {ports:?}");
    let junit = std::fs::read_to_string(out.path().join("junit.xml")).expect("the suite's junit.xml");
    for label in ["live-smoke", "live-faults"] {
        assert!(junit.contains(&format!("<testsuite name=\"{label}\"")), "a testsuite per member: {junit}");
    }
    assert!(!junit.contains("<failure"), "{junit}");
}

#[test]
#[ignore = "needs PostgreSQL"]
fn a_bug_switch_fails_a_live_folder_naming_the_scenario_and_invariant_and_skipped_ones_stay_out() {
    need_postgres();
    let folder = tempfile::tempdir().expect("a temp dir");
    std::fs::copy(SMOKE, folder.path().join("smoke.toml")).expect("copy the smoke scenario");
    let benchmark = std::fs::read_to_string(SMOKE).expect("the smoke scenario") + "\n[live]\nskip = \"load only\"\n";
    std::fs::write(folder.path().join("benchmark.toml"), benchmark).expect("write a skipped scenario");
    let out = tempfile::tempdir().expect("a temp dir");
    let folder_arg = folder.path().to_string_lossy().into_owned();
    let args = ["live", &folder_arg, "--jobs", "2", "--time-scale", "120", "--no-trace"];
    let output = posim(&[&args[..], &["--stack-bug", "inverted-allowlist"]].concat(), out.path());
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("skipped: benchmark.toml (load only)"), "{stdout}");
    assert!(stdout.contains("verdict: FAIL") && stdout.contains("failed: "), "{stdout}");
    let suite = read_json(&out.path().join("suite.json"));
    assert_eq!(members(&suite), [("smoke".to_string(), "fail".to_string())], "the skipped scenario is not run");
    assert!(suite["runs"][0]["violation_counts"]["D5"].as_u64().is_some_and(|count| count > 0), "{suite}");
    assert!(!out.path().join("benchmark").exists(), "no report folder for a skipped scenario");
    let junit = std::fs::read_to_string(out.path().join("junit.xml")).expect("the suite's junit.xml");
    let smoke = junit.split("<testsuite ").find(|suite| suite.contains("name=\"smoke\"")).expect("the member's suite");
    let failing = smoke.split("<testcase ").find(|case| case.contains("<failure") && case.contains("D5"));
    assert!(failing.is_some(), "its failing case names D5: {smoke}");
}

/// The default live gate, as CI enforces it: `posim live scenarios/ --jobs 2`
/// (each scenario at its own `[live] time_scale`; the capacity benchmarks
/// are skipped by their `[live] skip`). About 13 minutes on two cores.
#[test]
#[ignore = "needs PostgreSQL"]
fn the_default_live_gate_passes() {
    need_postgres();
    let out = tempfile::tempdir().expect("a temp dir");
    let output = posim(&["live", "scenarios/", "--jobs", "2", "--no-trace"], out.path());
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("skipped: capacity-2000x5.toml") && stdout.contains("skipped: capacity-knee.toml"));
    let suite = read_json(&out.path().join("suite.json"));
    let files = std::fs::read_dir("scenarios").expect("scenarios/").filter_map(Result::ok);
    let bundled = files.filter(|file| file.path().extension().is_some_and(|ext| ext == "toml")).count();
    assert_eq!(suite["scenarios"].as_u64(), u64::try_from(bundled - 2).ok(), "all but the two benchmarks ran");
    assert!(members(&suite).iter().all(|(_, verdict)| verdict == "pass"), "{suite}");
}
