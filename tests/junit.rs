//! `junit.xml`: a case per judgement of a run (outcome, phase criteria,
//! D1–D9, rollback targets, load thresholds), failing exactly when the run
//! fails, and valid against Jenkins' JUnit schema (`.ci/junit-schema` fetches it
//! from PyPI into `target/schemas/`).

use std::path::Path;
use std::process::Command;

use posim::check::Invariant;
use posim::report::RunReport;
use posim::report::junit::{testsuite_of, testsuites};
use posim::report::load::{LoadSection, ThresholdResult};
use posim::scenario::Scenario;
use posim::stack::StackBug;
use posim::verdict::simulate;

/// Where `.ci/junit-schema` puts Jenkins' `junit-10.xsd`.
const SCHEMA: &str = "target/schemas/junit-10.xsd";

fn judged(path: &str, bugs: &[StackBug]) -> RunReport {
    let scenario = Scenario::load(Path::new(path)).expect("a bundled scenario");
    simulate(&scenario, scenario.seed, bugs).report
}

/// The `<testcase …>` opening tags of a document.
fn testcases(xml: &str) -> Vec<&str> {
    xml.match_indices("<testcase ").map(|(at, _)| &xml[at..at + xml[at..].find('>').expect("a closed tag")]).collect()
}

/// The whole `<testcase>` element whose name is `name`.
fn case<'a>(xml: &'a str, name: &str) -> &'a str {
    let named = xml.find(&format!(" name=\"{name}\" ")).unwrap_or_else(|| panic!("no case `{name}` in\n{xml}"));
    let at = xml[..named].rfind("<testcase ").expect("a case's name");
    let end = at + xml[at..].find("</testcase>").expect("a closed case");
    &xml[at..end]
}

fn attribute<'a>(xml: &'a str, element: &str, name: &str) -> &'a str {
    let tag = &xml[xml.find(&format!("<{element} ")).expect("the element")..];
    let value = &tag[tag.find(&format!(" {name}=\"")).expect("the attribute") + name.len() + 3..];
    &value[..value.find('"').expect("a closed value")]
}

#[test]
fn a_passing_rollout_has_a_passing_case_per_judgement() {
    let report = judged("scenarios/rollout.toml", &[]);
    assert!(report.passed());
    let xml = testsuite_of("rollout", &report);
    let criteria: usize = report.phases.iter().map(|window| window.criteria.len()).sum();
    let rollback_targets = 4 * report.rollbacks.len();
    assert_eq!(testcases(&xml).len(), 1 + criteria + Invariant::ALL.len() + rollback_targets);
    assert_eq!(attribute(&xml, "testsuites", "failures"), "0");
    assert_eq!(attribute(&xml, "testsuite", "name"), "rollout");
    assert!(!xml.contains("<failure"), "{xml}");
    assert!(case(&xml, "outcome: expected complete").contains("<system-out>"));
    for window in &report.phases {
        for criterion in &window.criteria {
            let name = format!("phase {} · {}", window.name, criterion.name.replace('_', " "));
            assert!(xml.contains(&format!(" name=\"{name}")), "no case for {name}");
        }
    }
    for code in Invariant::ALL {
        assert!(case(&xml, &format!("{code} {}", code.title())).contains("classname=\"invariants\""));
    }
    let seconds = format!("{}.{:03}", report.simulated_ms / 1000, report.simulated_ms % 1000);
    assert_eq!(attribute(&xml, "testsuite", "time"), seconds, "the simulated time, not the wall clock");
    assert_eq!(testsuite_of("rollout", &report), xml, "deterministic");
}

#[test]
fn a_broken_invariant_fails_its_case_with_the_count_and_witnesses() {
    let report = judged("scenarios/terminal-faults.toml", &[StackBug::NonidempotentConfirm]);
    let count = report.violation_counts["D2"];
    let xml = testsuite_of("terminal-faults", &report);
    let d2 = case(&xml, "D2 duplicate cycle");
    let noun = if count == 1 { "violation" } else { "violations" };
    assert!(
        d2.contains(&format!("<failure type=\"invariant\" message=\"D2 duplicate cycle: {count} {noun}\"")),
        "{d2}"
    );
    let first = report.violations.iter().find(|v| v.code == "D2").expect("a listed D2");
    assert!(d2.contains(&first.summary), "the summary is the failure's text: {d2}");
    assert!(first.witness.iter().all(|line| d2.contains(&line.text.replace('<', "&lt;").replace('>', "&gt;"))));
    let failing = xml.matches("<failure ").count();
    assert_eq!(attribute(&xml, "testsuite", "failures"), failing.to_string());
    assert!(failing >= report.violation_counts.len(), "one failing case per broken invariant at least");
    assert!(!case(&xml, "D1 duplicate charge").contains("<failure"), "D1 holds");
}

#[test]
fn a_breached_rollback_target_and_an_unmet_outcome_fail_by_name() {
    let report = judged("fixtures/scenarios/rollback-target-too-tight.toml", &[]);
    assert!(!report.passed());
    let xml = testsuite_of("rollback-target-too-tight", &report);
    let [rollback] = report.rollbacks.as_slice() else { panic!("one rollback: {:?}", report.rollbacks) };
    let at = posim::time::clock(rollback.at_ms);
    let breached = case(&xml, &format!("rollback at {at} ({}) · replicas_on_new_config", rollback.label));
    assert!(breached.contains("<failure type=\"rollback target\""), "{breached}");
    assert!(breached.contains("took 1m 0s"), "{breached}");
    let stable = case(&xml, &format!("rollback at {at} ({}) · stable", rollback.label));
    assert!(!stable.contains("<failure"), "{stable}");

    let mut unmet = judged("scenarios/rollout.toml", &[]);
    unmet.outcome.met = false;
    let xml = testsuite_of("rollout", &unmet);
    let outcome = case(&xml, "outcome: expected complete");
    let message = format!("message=\"{} (expected `complete`)\"", unmet.outcome.text);
    assert!(outcome.contains("<failure type=\"outcome\"") && outcome.contains(&message), "{outcome}");
}

#[test]
fn failures_are_counted_exactly_when_the_run_fails() {
    let runs = [
        ("rollout", judged("scenarios/rollout.toml", &[])),
        ("rollback", judged("scenarios/rollback.toml", &[])),
        ("rollback-gate-bug", judged("scenarios/rollback.toml", &[StackBug::GateBlocksInflight])),
        ("too-tight", judged("fixtures/scenarios/rollback-target-too-tight.toml", &[])),
    ];
    for (label, report) in &runs {
        let xml = testsuite_of(label, report);
        assert_eq!(attribute(&xml, "testsuites", "failures") == "0", report.passed(), "{label}: {xml}");
    }
    let labelled: Vec<(&str, &RunReport)> = runs.iter().map(|(label, report)| (*label, report)).collect();
    let all = testsuites(&labelled);
    assert_eq!(all.matches("<testsuite ").count(), runs.len());
    let cases: usize = runs.iter().map(|(label, report)| testcases(&testsuite_of(label, report)).len()).sum();
    assert_eq!(attribute(&all, "testsuites", "tests"), cases.to_string());
}

fn load_report() -> RunReport {
    let mut report = judged("scenarios/rollout.toml", &[]);
    let threshold = |threshold: &str, met, actual: &str| ThresholdResult {
        threshold: threshold.into(),
        met,
        actual: actual.into(),
    };
    report.load = Some(LoadSection {
        thresholds: vec![threshold("p99<300ms", true, "104 ms"), threshold("error_rate<1%", false, "3.2% > 1%")],
        ..LoadSection::default()
    });
    report
}

#[test]
fn a_load_run_has_threshold_cases_and_no_rollout_cases() {
    let xml = testsuite_of("capacity-knee", &load_report());
    assert_eq!(testcases(&xml).len(), Invariant::ALL.len() + 2);
    assert!(!xml.contains("outcome: expected") && !xml.contains("name=\"phase "), "{xml}");
    assert!(case(&xml, "threshold p99&lt;300ms").contains("104 ms"));
    let breached = case(&xml, "threshold error_rate&lt;1%");
    assert!(breached.contains("message=\"threshold error_rate&lt;1% breached: actual 3.2% &gt; 1%\""), "{breached}");
}

/// `xmllint --noout --schema` on a file: the schema's verdict.
fn validate(file: &Path) {
    assert!(Path::new(SCHEMA).is_file(), "{SCHEMA} is missing: run .ci/junit-schema (it fetches it from PyPI)");
    let output = Command::new("xmllint")
        .args(["--noout", "--schema", SCHEMA])
        .arg(file)
        .output()
        .expect("xmllint runs (Debian: apt-get install libxml2-utils)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{} does not validate: {stderr}", file.display());
}

/// `posim run SCENARIO --out DIR`, with its exit code and the `junit.xml` it wrote.
fn run(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .arg("run")
        .args(args)
        .args(["--no-trace", "--out"])
        .arg(dir)
        .output()
        .expect("posim runs");
    let xml = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml beside summary.json");
    (output.status.code(), xml)
}

#[test]
#[ignore = "needs xmllint and the JUnit schema (.ci/junit-schema)"]
fn posim_runs_write_junit_xml_that_the_schema_accepts() {
    let root = tempfile::tempdir().expect("a temp dir");
    let passing = root.path().join("passing");
    let (code, xml) = run(&["scenarios/rollout.toml"], &passing);
    assert_eq!(code, Some(0));
    validate(&passing.join("junit.xml"));
    assert_eq!(attribute(&xml, "testsuites", "failures"), "0");
    for code in Invariant::ALL {
        assert!(!case(&xml, &format!("{code} {}", code.title())).contains("<failure"), "{code} holds");
    }
    assert!(xml.contains(" name=\"phase 5% · confirm failure rate\""), "{xml}");

    let failing = root.path().join("failing");
    let (code, xml) = run(&["scenarios/terminal-faults.toml", "--stack-bug", "nonidempotent-confirm"], &failing);
    assert_eq!(code, Some(1));
    validate(&failing.join("junit.xml"));
    assert_ne!(attribute(&xml, "testsuites", "failures"), "0");
    assert!(case(&xml, "D2 duplicate cycle").contains("message=\"D2 duplicate cycle: "), "{xml}");
    assert_eq!(testcases(&xml).iter().filter(|tag| tag.contains("classname=\"invariants\"")).count(), 9);
}

#[test]
#[ignore = "needs xmllint and the JUnit schema (.ci/junit-schema)"]
fn several_runs_and_awkward_text_validate_too() {
    let mut awkward = judged("fixtures/scenarios/rollback-target-too-tight.toml", &[]);
    awkward.notes.push("ignored".into());
    awkward.scenario_file = "a \"quoted\" <file> & a bell \u{7}\n".into();
    let load = load_report();
    let xml = testsuites(&[("tight <\"&'>", &awkward), ("load", &load)]);
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("junit.xml");
    std::fs::write(&file, &xml).expect("written");
    validate(&file);
    assert!(xml.contains("name=\"tight &lt;&quot;&amp;&apos;&gt;\""), "{xml}");
}
