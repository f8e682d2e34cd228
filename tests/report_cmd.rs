//! `posim report DIR`: a run's and a suite's views re-rendered from their
//! JSON alone are byte for byte what the run wrote; a summary of another
//! schema version or kind, broken JSON or a missing file is refused (exit 2) naming
//! the file; a report survives JSON → report → JSON unchanged; the Markdown
//! summaries (a run's, a suite's) put the verdict first and fold the long tables.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use posim::report::load::{Ceiling, KneeReport, LoadSection, Percentiles, StepReport, ThresholdResult};
use posim::report::views::{self, SUMMARY_JSON};
use posim::report::{RunReport, Verdict};
use posim::scenario::Scenario;
use posim::stack::StackBug;
use posim::verdict::simulate;

/// The views a run folder holds beside `summary.json`.
const RUN_VIEWS: [&str; 4] = ["summary.md", "oplog.jsonl", "junit.xml", "report.html"];
const SUITE_VIEWS: [&str; 2] = ["summary.md", "junit.xml"];

fn posim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_posim")).args(args).output().expect("posim runs")
}

fn said(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn run_into(dir: &Path, args: &[&str]) -> Output {
    let dir = dir.to_str().expect("a UTF-8 path");
    posim(&[&["run"], args, &["--no-trace", "--out", dir]].concat())
}

/// Reads `names` in `dir`, then deletes them.
fn take(dir: &Path, names: &[&str]) -> Vec<(PathBuf, Vec<u8>)> {
    names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            std::fs::remove_file(&path).expect("the view is deleted");
            (path, bytes)
        })
        .collect()
}

fn report_again(dir: &Path) -> Output {
    posim(&["report", dir.to_str().expect("a UTF-8 path")])
}

fn assert_same(written: &[(PathBuf, Vec<u8>)]) {
    for (path, bytes) in written {
        let again = std::fs::read(path).unwrap_or_else(|error| panic!("not re-rendered: {}: {error}", path.display()));
        assert!(again == *bytes, "{} differs once re-rendered", path.display());
    }
}

#[test]
fn a_run_folder_is_re_rendered_byte_for_byte() {
    let root = tempfile::tempdir().expect("a temp dir");
    let runs: [(&str, &[&str], i32); 3] = [
        ("passing", &["scenarios/rollout.toml"], 0),
        ("rollback", &["scenarios/rollback.toml"], 0),
        ("failing", &["scenarios/terminal-faults.toml", "--stack-bug", "nonidempotent-confirm"], 1),
    ];
    for (name, args, code) in runs {
        let dir = root.path().join(name);
        let output = run_into(&dir, args);
        assert_eq!(output.status.code(), Some(code), "{name}: {}", said(&output));
        let summary = std::fs::read(dir.join(SUMMARY_JSON)).expect("summary.json");
        let written = take(&dir, &RUN_VIEWS);
        let output = report_again(&dir);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", said(&output));
        assert_same(&written);
        assert_eq!(std::fs::read(dir.join(SUMMARY_JSON)).expect("summary.json"), summary, "the source is untouched");
    }
}

#[test]
fn a_suite_folder_is_re_rendered_byte_for_byte_with_its_members() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let members = ["fixtures/scenarios/world-faults.toml", "fixtures/scenarios/live-nemesis.toml"];
    let output = run_into(dir.path(), &[&members[..], &["--stack-bug", "unfenced-start"]].concat());
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    let mut written = take(dir.path(), &SUITE_VIEWS);
    for label in ["world-faults", "live-nemesis"] {
        written.extend(take(&dir.path().join(label), &RUN_VIEWS));
    }
    let output = report_again(dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert!(said(&output).contains("re-rendered suite"), "{}", said(&output));
    assert_same(&written);
    let markdown = std::fs::read_to_string(dir.path().join("summary.md")).expect("summary.md");
    let shown = unfolded(&markdown);
    assert!(shown.starts_with("# posim suite — ❌ FAIL: 1 of 2 scenarios pass\n\n## Failing"), "{shown}");
    assert!(shown.contains("live-nemesis.toml`: D2×") && !shown.contains("world-faults"), "only the failing: {shown}");
    assert!(markdown.contains("world-faults"), "every member in the folded table");
}

/// Runs `posim report` on a folder and expects a refusal naming `file`.
fn assert_refused(dir: &Path, file: &Path, why: &str) {
    let output = report_again(dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}", said(&output));
    assert!(stderr.contains(&file.display().to_string()) && stderr.contains(why), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn another_schema_version_broken_json_or_a_missing_file_is_refused_naming_the_file() {
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path().join("run");
    let output = run_into(&dir, &["scenarios/rollout.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let path = dir.join(SUMMARY_JSON);
    let text = std::fs::read_to_string(&path).expect("summary.json");

    let mut json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    json["schema_version"] = 99.into();
    std::fs::write(&path, json.to_string()).expect("written");
    assert_refused(&dir, &path, "schema_version 99");

    std::fs::write(&path, &text[..text.len() / 2]).expect("written");
    assert_refused(&dir, &path, "not valid JSON");

    let mut json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    json["verdict"] = "maybe".into();
    std::fs::write(&path, json.to_string()).expect("written");
    assert_refused(&dir, &path, "unknown variant");

    let mut json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    json["kind"] = "merged".into();
    std::fs::write(&path, json.to_string()).expect("written");
    assert_refused(&dir, &path, "is a `merged` summary");

    let nowhere = root.path().join("nowhere");
    assert_refused(&nowhere, &nowhere.join(SUMMARY_JSON), "cannot read");
}

#[test]
fn a_suite_missing_a_members_report_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let output =
        run_into(dir.path(), &["fixtures/scenarios/world-faults.toml", "fixtures/scenarios/live-nemesis.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let member = dir.path().join("live-nemesis").join(SUMMARY_JSON);
    std::fs::remove_file(&member).expect("removed");
    assert_refused(dir.path(), &member, "cannot read");
}

fn failing_report() -> RunReport {
    let scenario = Scenario::load(Path::new("scenarios/terminal-faults.toml")).expect("a bundled scenario");
    simulate(&scenario, scenario.seed, &[StackBug::NonidempotentConfirm]).report
}

/// A load section with every kind of field filled.
fn load_section() -> LoadSection {
    let all = Percentiles { count: 9, p50_ms: 1.5, p90_ms: 2.25, p99_ms: 0.1 + 0.2, p999_ms: 7.0, max_ms: 9.0 };
    let step = StepReport {
        step: 1,
        target: 12.5,
        latency: [("all".to_string(), all.clone())].into(),
        purchase: all,
        errors: [("timeout".to_string(), 2)].into(),
        ..StepReport::default()
    };
    LoadSection {
        model: "open".into(),
        steps: vec![step],
        knee: Some(KneeReport {
            step: 1,
            throughput: 11.9,
            p99_ms: 3.0,
            next_step: None,
            reason: "last".into(),
            limited_by: Default::default(),
        }),
        headroom: Some(2.0 / 3.0),
        thresholds: vec![ThresholdResult { threshold: "p99 < 50ms".into(), met: true, actual: "3 ms".into() }],
        database_ceiling: Some(Ceiling {
            clients: 4,
            seconds: 2,
            flows_per_second: 101.25,
            fsync: "on".into(),
            synchronous_commit: "on".into(),
        }),
        ..LoadSection::default()
    }
}

#[test]
fn a_report_survives_json_and_back_unchanged() {
    for report in [failing_report(), RunReport { load: Some(load_section()), ..failing_report() }] {
        let json = serde_json::to_string_pretty(&report).expect("serialized");
        let back: RunReport = serde_json::from_str(&json).expect("read back");
        assert_eq!(serde_json::to_string_pretty(&back).expect("serialized again"), json);
        assert_eq!(back.verdict, Verdict::Fail);
        assert!(back.violation_counts.get("D2").is_some_and(|&n| n > 0), "{:?}", back.violation_counts);
        let (views, again) = (views::render(&report).expect("views"), views::render(&back).expect("views"));
        assert_eq!(views, again, "the same views from the report read back");
    }
}

/// The Markdown outside `<details>`: what a CI page shows unfolded.
fn unfolded(markdown: &str) -> String {
    let mut out = String::new();
    let mut rest = markdown;
    while let Some(open) = rest.find("<details>") {
        out.push_str(&rest[..open]);
        let close = rest[open..].find("</details>").expect("a closed <details>");
        rest = &rest[open + close + "</details>".len()..];
    }
    out + rest
}

#[test]
fn the_markdown_summary_says_the_verdict_first_and_folds_the_long_tables() {
    let report = failing_report();
    let markdown = posim::report::markdown(&report);
    let first = markdown.lines().next().unwrap_or_default();
    assert!(first.starts_with("# ❌ FAIL · terminal-faults — outcome: "), "{first}");
    assert!(first.contains("expected `complete`"), "{first}");
    let shown = unfolded(&markdown);
    let why = shown.find("## Why it failed").expect("a failure explained");
    assert!(why < shown.find("## Invariants").expect("the invariants"), "{shown}");
    assert!(shown.contains("invariants broken: D2×"), "{shown}");
    assert!(!shown.contains("| Data/hora |") && !shown.contains("## Phases"), "long tables are folded: {shown}");
    assert!(markdown.contains("| Data/hora |") && markdown.contains("## Phases"), "but still there");
    // Before the change this run's summary.md was 128 KB, all of it unfolded.
    assert!(shown.len() < 8_000 && markdown.len() < 40_000, "{} unfolded of {}", shown.len(), markdown.len());
}
