//! `junit.xml`: a run's judgements as JUnit XML, the test report CI systems
//! (Jenkins, GitLab, GitHub's test reporters) show on a job page. One
//! `<testsuite>` per run, one testcase per thing the run judged — the rollout's
//! outcome, each phase criterion, each invariant D1–D9, each rollback timing
//! target, each load threshold — failing with what was measured and, for an
//! invariant, its witnesses. Validates against Jenkins' `junit-10.xsd`
//! (fetched by `.ci/junit-schema`). Deterministic: times are the run's own, never the wall clock.

use std::fmt::Write as _;

use crate::check::Invariant;
use crate::criteria::Judgement;
use crate::report::RunReport;
use crate::report::markup::{attribute, text_node};
use crate::time::{self, Millis};

/// Violations whose witnesses a failing invariant case spells out (all are counted).
const WITNESSED_PER_CODE: usize = 20;

/// The four rollback targets of §4B, as `check::rollback` names them in a breach.
const ROLLBACK_TARGETS: [&str; 4] = ["replicas_on_new_config", "affected_denied", "rates_under_caps", "stable"];

/// How one testcase ended.
#[derive(Clone, Debug, PartialEq)]
enum Verdict {
    /// Passed; the text (what was measured) goes to `<system-out>`.
    Passed(String),
    /// Not judged (a criterion with too few samples).
    Skipped(String),
    Failed {
        message: String,
        text: String,
    },
    /// posim could not judge it (its own lag): an `<error>`, not a `<failure>`.
    Errored(String),
}

#[derive(Clone, Debug, PartialEq)]
struct Case {
    classname: &'static str,
    name: String,
    /// The failure's `type`: what kind of judgement failed.
    kind: &'static str,
    verdict: Verdict,
}

impl Case {
    fn failed(&self) -> bool {
        matches!(self.verdict, Verdict::Failed { .. })
    }

    fn skipped(&self) -> bool {
        matches!(self.verdict, Verdict::Skipped(_))
    }

    fn errored(&self) -> bool {
        matches!(self.verdict, Verdict::Errored(_))
    }
}

/// One run's cases, with the counts its `<testsuite>` carries.
struct Suite<'a> {
    label: &'a str,
    report: &'a RunReport,
    cases: Vec<Case>,
}

impl Suite<'_> {
    fn failures(&self) -> usize {
        self.cases.iter().filter(|case| case.failed()).count()
    }

    fn errors(&self) -> usize {
        self.cases.iter().filter(|case| case.errored()).count()
    }
}

/// A JUnit XML document of several runs, one `<testsuite>` each, named by its label.
pub fn testsuites(runs: &[(&str, &RunReport)]) -> String {
    let suites: Vec<Suite<'_>> =
        runs.iter().map(|&(label, report)| Suite { label, report, cases: cases(report) }).collect();
    let tests: usize = suites.iter().map(|suite| suite.cases.len()).sum();
    let failures: usize = suites.iter().map(Suite::failures).sum();
    let errors: usize = suites.iter().map(Suite::errors).sum();
    let time_ms = suites.iter().fold(0, |sum: Millis, suite| sum.saturating_add(suite.report.simulated_ms));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"posim\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{}\">",
        seconds(time_ms)
    );
    for suite in &suites {
        write_suite(suite, &mut out);
    }
    out.push_str("</testsuites>\n");
    out
}

/// The JUnit XML document of one run (what `report::write` puts in `junit.xml`).
pub fn testsuite_of(label: &str, report: &RunReport) -> String {
    testsuites(&[(label, report)])
}

/// Every case of a run, in the order a person reads the run: outcome,
/// criteria, invariants, rollbacks, thresholds.
fn cases(report: &RunReport) -> Vec<Case> {
    let mut cases = Vec::new();
    match &report.load {
        // A load run has no rollout: it is judged on the invariants and its thresholds.
        Some(load) => {
            cases.extend(invariant_cases(report));
            cases.extend(load.thresholds.iter().map(|t| Case {
                classname: "thresholds",
                name: format!("threshold {}", t.threshold),
                kind: "threshold",
                verdict: match t.met {
                    true => Verdict::Passed(format!("actual {}", t.actual)),
                    false => {
                        let message = format!("threshold {} breached: actual {}", t.threshold, t.actual);
                        failure(message.clone(), &message)
                    }
                },
            }));
        }
        None => {
            cases.push(outcome_case(report));
            cases.extend(criterion_cases(report));
            cases.extend(invariant_cases(report));
            cases.extend(rollback_cases(report));
        }
    }
    cases
}

fn failure(message: String, text: &str) -> Verdict {
    Verdict::Failed { message, text: text.to_string() }
}

fn outcome_case(report: &RunReport) -> Case {
    let outcome = &report.outcome;
    let line = outcome.line();
    Case {
        classname: "outcome",
        name: format!("outcome: expected {}", outcome.expected),
        kind: "outcome",
        verdict: match outcome.met {
            true => Verdict::Passed(line),
            false => failure(format!("{} (expected `{}`)", outcome.text, outcome.expected), &line),
        },
    }
}

/// One case per criterion of each phase's window, judged as the report
/// judges it: a breach the rollout rolled back is the runbook working.
fn criterion_cases(report: &RunReport) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for window in &report.phases {
        for criterion in &window.criteria {
            let base = format!("phase {} · {}", window.name, criterion.name.replace('_', " "));
            let detail = criterion.detail.clone();
            let verdict = match criterion.judgement {
                Judgement::Pass => Verdict::Passed(detail),
                Judgement::Inconclusive => Verdict::Skipped(detail),
                Judgement::HarnessLimited => Verdict::Errored(detail),
                Judgement::Fail if window.closed_by_rollback => {
                    Verdict::Passed(format!("breached, answered by a rollback: {detail}"))
                }
                Judgement::Fail => failure(detail.clone(), &detail),
            };
            let name = unique(&cases, base);
            cases.push(Case { classname: "criteria", name, kind: "criterion", verdict });
        }
    }
    cases
}

/// A phase deployed twice (after a rollback) gets `(2)`, `(3)`…: case names
/// are unique in a suite, as CI systems key their history on them.
fn unique(cases: &[Case], base: String) -> String {
    let taken = |name: &str| cases.iter().any(|case| case.name == name);
    if !taken(&base) {
        return base;
    }
    (2..).map(|n| format!("{base} ({n})")).find(|name| !taken(name)).unwrap_or(base)
}

fn invariant_cases(report: &RunReport) -> Vec<Case> {
    Invariant::ALL
        .iter()
        .map(|&code| {
            let title = code.title();
            let name = format!("{code} {title}");
            let count = report.violation_counts.get(&code).copied().unwrap_or(0);
            let verdict = match count {
                0 => Verdict::Passed(format!("{code} holds: no violation")),
                _ => {
                    let noun = if count == 1 { "violation" } else { "violations" };
                    failure(format!("{code} {title}: {count} {noun}"), &witnesses(report, code, count))
                }
            };
            Case { classname: "invariants", name, kind: "invariant", verdict }
        })
        .collect()
}

/// Each listed violation of `code`: its summary, then its witness lines.
fn witnesses(report: &RunReport, code: Invariant, count: usize) -> String {
    let mut text = String::new();
    let listed: Vec<_> = report.violations.iter().filter(|v| v.code == code).take(WITNESSED_PER_CODE).collect();
    for violation in &listed {
        let _ = writeln!(text, "{} {}: {}", violation.code, violation.title, violation.summary);
        for line in &violation.witness {
            let _ = writeln!(text, "    {}", line.text);
        }
    }
    if count > listed.len() {
        let _ = writeln!(text, "… and {} more (all counted in summary.json)", count - listed.len());
    }
    text
}

/// Four cases per rollback, one per §4B target. A target the scenario does
/// not set is never breached: its case passes with the time measured.
fn rollback_cases(report: &RunReport) -> Vec<Case> {
    let mut cases = Vec::new();
    for rollback in &report.rollbacks {
        let took = [
            rollback.replicas_on_new_config_ms,
            rollback.affected_denied_ms,
            rollback.rates_under_caps_ms,
            rollback.stable_ms,
        ];
        // The deploy label says what kind of rollback it was ("rollback: partial").
        let at = format!("rollback at {} ({})", time::clock(rollback.at_ms), rollback.label);
        for (target, took) in ROLLBACK_TARGETS.into_iter().zip(took) {
            let quoted = format!("`{target}`");
            let breach = rollback.breaches.iter().find(|breach| breach.contains(&quoted));
            let verdict = match breach {
                Some(breach) => failure(format!("{at}: {breach}"), breach),
                None => Verdict::Passed(match took {
                    Some(took) => format!("took {}: within its target, if the scenario sets one", time::human(took)),
                    None => "not reached before the run ended; the scenario sets no target for it".to_string(),
                }),
            };
            let name = format!("{at} · {target}");
            cases.push(Case { classname: "rollback", name: unique(&cases, name), kind: "rollback target", verdict });
        }
    }
    cases
}

fn write_suite(suite: &Suite<'_>, out: &mut String) {
    let report = suite.report;
    let skipped = suite.cases.iter().filter(|case| case.skipped()).count();
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{skipped}\" time=\"{}\">",
        attribute(suite.label),
        suite.cases.len(),
        suite.failures(),
        suite.errors(),
        seconds(report.simulated_ms)
    );
    let properties = [
        ("scenario", report.scenario.clone()),
        ("scenario_file", report.scenario_file.clone()),
        ("seed", report.seed.to_string()),
        ("engine", report.engine.clone()),
        ("stack_bugs", report.stack_bugs.join(",")),
        ("trace_hash", report.trace_hash.clone()),
        ("verdict", report.verdict.to_string()),
    ];
    out.push_str("    <properties>\n");
    for (name, value) in properties {
        let _ = writeln!(out, "      <property name=\"{name}\" value=\"{}\"/>", attribute(&value));
    }
    out.push_str("    </properties>\n");
    for case in &suite.cases {
        write_case(case, out);
    }
    out.push_str("  </testsuite>\n");
}

fn write_case(case: &Case, out: &mut String) {
    let _ =
        writeln!(out, "    <testcase classname=\"{}\" name=\"{}\" time=\"0\">", case.classname, attribute(&case.name));
    match &case.verdict {
        Verdict::Passed(text) => {
            let _ = writeln!(out, "      <system-out>{}</system-out>", text_node(text));
        }
        Verdict::Skipped(text) => {
            let _ = writeln!(out, "      <skipped message=\"{}\"/>", attribute(text));
        }
        Verdict::Errored(text) => {
            let _ = writeln!(
                out,
                "      <error type=\"harness-limited\" message=\"{}\">{}</error>",
                attribute(text),
                text_node(text)
            );
        }
        Verdict::Failed { message, text } => {
            let _ = writeln!(
                out,
                "      <failure type=\"{}\" message=\"{}\">{}</failure>",
                case.kind,
                attribute(message),
                text_node(text)
            );
        }
    }
    out.push_str("    </testcase>\n");
}

/// Seconds with milliseconds, as JUnit's `time` reads them: `22500.000`.
fn seconds(ms: Millis) -> String {
    format!("{}.{:03}", ms / time::SECOND, ms % time::SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_case_carries_its_message_and_text_escaped() {
        let case = Case {
            classname: "invariants",
            name: "D2 duplicate cycle".into(),
            kind: "invariant",
            verdict: failure("D2 duplicate cycle: 1 violation".into(), "payment <p> ran twice & more\n"),
        };
        let mut out = String::new();
        write_case(&case, &mut out);
        assert_eq!(
            out,
            "    <testcase classname=\"invariants\" name=\"D2 duplicate cycle\" time=\"0\">\n      \
             <failure type=\"invariant\" message=\"D2 duplicate cycle: 1 violation\">payment &lt;p&gt; ran twice \
             &amp; more\n</failure>\n    </testcase>\n"
        );
    }

    #[test]
    fn a_repeated_phase_name_gets_a_number() {
        let case = |name: &str| Case {
            classname: "criteria",
            name: name.into(),
            kind: "criterion",
            verdict: Verdict::Passed(String::new()),
        };
        let cases = vec![case("phase 5% · duplicates"), case("phase 5% · duplicates (2)")];
        assert_eq!(unique(&cases, "phase 5% · duplicates".into()), "phase 5% · duplicates (3)");
        assert_eq!(unique(&cases, "phase 25% · duplicates".into()), "phase 25% · duplicates");
    }

    #[test]
    fn times_are_seconds_with_milliseconds() {
        assert_eq!(seconds(0), "0.000");
        assert_eq!(seconds(22_500_042), "22500.042");
    }
}
