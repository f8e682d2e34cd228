//! What a run shows: the console summary, `summary.json` (machine-readable,
//! versioned), `summary.md` (fit for a CI job page), `report.html` (offline,
//! with charts) and `trace.jsonl` (the event trace). Violations come with
//! their witnesses spelled out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write as _};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::check::kpi::Window;
use crate::check::rollback::RollbackTiming;
use crate::check::{Invariant, Violation};
use crate::criteria::Judgement;
use crate::faults::StackFaultAction;
use crate::history::{Event, History};
use crate::judge::{Expectation, HistoryIndex, Outcome};
use crate::scenario::Scenario;
use crate::time::{self, Millis};

pub mod charts;
pub mod compare;
pub mod generator;
pub mod html;
pub mod junit;
pub mod latency;
pub mod load;
pub mod markup;
pub mod oplog;
pub mod scorecard;
pub mod story;
pub mod summary_md;
pub mod views;

pub use oplog::OplogEntry;
pub use summary_md::render as markdown;

/// 2: `outcome` (expected and actual) first; windows judged on four criteria
/// (a rate's rise over the previous phase and the critical alert included).
/// 3: a `load` section (`posim load`: steps, latency percentiles, knee,
/// headroom, thresholds); absent from other runs' summaries.
/// 4: `latency` (per endpoint, sent to heard: percentiles and a histogram);
/// each criterion's `limit` (its cap); each rollback's `targets_ms`.
/// 5: `scorecard` (game days: per incident the times to detect and to
/// mitigate, rollbacks, adherence, customer impact, posim-auto's reference
/// line); absent from other runs' summaries.
/// 6: posim's own lag: the verdict `harness_limited` (exit 3) and the
/// criterion judgement `harness_limited`, each window's
/// `harness_lagged_requests` and `harness_max_lag_ms`, and `harness` (live
/// runs: scheduling delay, CPU wait, lagged requests); the trace's
/// `answer_broken` and `harness_lag` records; a load run's steps'
/// `limited_by`, its knee's `limited_by`, and `stopped_by` when posim's
/// generator or fleet, not the stack, ended the load.
pub const SCHEMA_VERSION: u32 = 6;
/// Violations listed per code (all are counted).
const LISTED_PER_CODE: usize = 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WitnessLine {
    pub record: usize,
    pub at_ms: Millis,
    pub text: String,
    /// One of the records that break the invariant; the others tell what
    /// led to them (the payment's requests, answers, faults and effects).
    pub key: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViolationReport {
    pub code: Invariant,
    pub title: String,
    pub summary: String,
    pub payment: Option<uuid::Uuid>,
    pub purchase: Option<u32>,
    pub witness: Vec<WitnessLine>,
}

/// Whether a run passed, as its gate says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// posim could not judge part of the run: it lagged itself, and the
    /// result would rest on that (exit 3, never 0 or 1).
    HarnessLimited,
}

impl Verdict {
    pub fn of(passed: bool) -> Verdict {
        if passed { Verdict::Pass } else { Verdict::Fail }
    }

    /// How a person reads it: `PASS`, `FAIL`, `HARNESS-LIMITED`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::HarnessLimited => "HARNESS-LIMITED",
        }
    }

    /// The process's exit code: 0 pass, 1 fail, 3 posim could not judge.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::HarnessLimited => 3,
        }
    }

    /// The verdict of several runs: any failure fails; else any run posim
    /// could not judge makes the whole not judged.
    pub fn of_all(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts.into_iter().fold(Verdict::Pass, |all, one| match (all, one) {
            (Verdict::Fail, _) | (_, Verdict::Fail) => Verdict::Fail,
            (Verdict::HarnessLimited, _) | (_, Verdict::HarnessLimited) => Verdict::HarnessLimited,
            _ => Verdict::Pass,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub schema_version: u32,
    /// How the rollout ended, and what the scenario expected.
    pub outcome: OutcomeReport,
    pub verdict: Verdict,
    pub scenario: String,
    pub scenario_file: String,
    pub seed: u64,
    /// What played the run: the simulator, or the live engine and what ran the stack.
    pub engine: String,
    pub stack_bugs: Vec<String>,
    pub trace_hash: String,
    pub simulated_ms: Millis,
    pub stack_requests: u64,
    pub purchases: u64,
    pub phases: Vec<Window>,
    /// The operation log (§5): one entry per decision.
    pub decisions: Vec<OplogEntry>,
    pub rollbacks: Vec<RollbackTiming>,
    pub violation_counts: BTreeMap<Invariant, usize>,
    pub violations: Vec<ViolationReport>,
    pub failed_criteria: Vec<String>,
    pub notes: Vec<String>,
    /// The stack faults carried out (live runs), with when each began and ended.
    pub stack_faults: Vec<StackFaultLine>,
    /// Per endpoint, the time from each request sent to what its sender heard.
    pub latency: Vec<latency::EndpointLatency>,
    /// A load run's numbers (`posim load` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<load::LoadSection>,
    /// A game day's scorecard (`[controller] mode = "human"` only), with
    /// posim-auto's reference line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scorecard: Option<crate::gameday::scorecard::Scorecard>,
    /// posim's own lag (live runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<crate::harness::HarnessFigures>,
}

/// The rollout's outcome against the scenario's expectation (first in every view).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutcomeReport {
    pub expected: Expectation,
    pub actual: Outcome,
    pub met: bool,
    /// In words: "rolled back at 45m to allowlist (0)", "completed at 6h 15m".
    pub text: String,
}

impl OutcomeReport {
    pub fn of(history: &History, expected: Expectation) -> OutcomeReport {
        let actual = Outcome::of(history);
        let met = actual.meets(expected);
        let text = actual.describe();
        OutcomeReport { expected, actual, met, text }
    }

    /// The line a person reads first.
    pub fn line(&self) -> String {
        let verdict = if self.met { "as expected" } else { "NOT what the scenario expects" };
        format!("outcome: {} — expected `{}`: {verdict}", self.text, self.expected)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StackFaultLine {
    pub action: StackFaultAction,
    pub replica: Option<u16>,
    pub began_ms: Millis,
    /// None: not undone before the run ended.
    pub ended_ms: Option<Millis>,
}

/// Whether a decision judged a criterion posim could not judge (the
/// controller held on it): the rollout's course rests on posim's lag.
fn held_on_harness(history: &History) -> bool {
    let limited = |c: &crate::criteria::CriterionResult| c.judgement == Judgement::HarnessLimited;
    history.decisions.iter().any(|decision| decision.criteria.iter().any(limited))
}

/// Pairs each stack fault's begin and end records.
fn stack_fault_lines(history: &History) -> Vec<StackFaultLine> {
    let mut lines: BTreeMap<u16, StackFaultLine> = BTreeMap::new();
    for record in &history.records {
        if let Event::StackFault { fault, action, replica, ended } = record.event {
            let replica = action.targets_replica().then_some(replica);
            let line =
                lines.entry(fault).or_insert(StackFaultLine { action, replica, began_ms: record.at, ended_ms: None });
            if ended {
                line.ended_ms = Some(record.at);
            }
        }
    }
    lines.into_values().collect()
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }
}

/// The inputs a report is made from.
pub struct RunFacts<'a> {
    pub scenario: &'a Scenario,
    pub seed: u64,
    pub engine: String,
    pub stack_bugs: Vec<String>,
    pub history: &'a History,
    pub index: &'a HistoryIndex,
    pub violations: &'a [Violation],
    pub windows: Vec<Window>,
    pub rollbacks: Vec<RollbackTiming>,
    pub simulated: Millis,
    pub stack_requests: u64,
    pub purchases: u64,
    /// What the engine could not do as asked (e.g. redeploy a stack given by URL).
    pub notes: Vec<String>,
    /// posim's own lag (live runs).
    pub harness: Option<crate::harness::HarnessFigures>,
}

pub fn build(facts: RunFacts<'_>) -> RunReport {
    let mut violation_counts = BTreeMap::new();
    let mut chosen = Vec::new();
    for violation in facts.violations {
        let count = violation_counts.entry(violation.code).or_insert(0);
        *count += 1;
        if *count <= LISTED_PER_CODE {
            chosen.push(violation);
        }
    }
    let stories = story::Stories::gather(facts.history, chosen.iter().copied());
    let listed = chosen.into_iter().map(|violation| witnessed(facts.history, &stories, violation)).collect();
    let mut failed_criteria: Vec<String> = facts
        .windows
        .iter()
        .filter(|window| window.unanswered_breach())
        .flat_map(|window| {
            window
                .criteria
                .iter()
                .filter(|c| c.judgement == Judgement::Fail)
                .map(move |c| format!("{}: {} ({})", window.name, c.name, c.detail))
        })
        .collect();
    failed_criteria.extend(facts.rollbacks.iter().flat_map(|r| r.breaches.iter().map(|b| format!("{}: {b}", r.label))));
    let decisions = oplog::entries(
        facts.history,
        facts.index,
        facts.violations,
        facts.scenario.start_unix_seconds,
        facts.simulated,
    );
    let outcome = OutcomeReport::of(facts.history, facts.scenario.expect);
    let stack_failed = !facts.violations.is_empty() || !failed_criteria.is_empty();
    let verdict = if stack_failed {
        Verdict::Fail
    } else if held_on_harness(facts.history) {
        Verdict::HarnessLimited // a decision rested on a window posim could not judge
    } else {
        Verdict::of(outcome.met)
    };
    RunReport {
        schema_version: SCHEMA_VERSION,
        scenario: facts.scenario.name.clone(),
        scenario_file: facts.scenario.source.display().to_string(),
        seed: facts.seed,
        engine: facts.engine,
        stack_bugs: facts.stack_bugs,
        trace_hash: facts.history.trace_hash(),
        verdict,
        outcome,
        simulated_ms: facts.simulated,
        stack_requests: facts.stack_requests,
        purchases: facts.purchases,
        phases: facts.windows,
        decisions,
        rollbacks: facts.rollbacks,
        violation_counts,
        violations: listed,
        failed_criteria,
        notes: facts.notes,
        stack_faults: stack_fault_lines(facts.history),
        latency: latency::per_endpoint(facts.history),
        load: None,
        scorecard: None,
        harness: facts.harness,
    }
}

fn witnessed(history: &History, stories: &story::Stories, violation: &Violation) -> ViolationReport {
    let witness = stories
        .of(violation)
        .into_iter()
        .map(|(record, key)| WitnessLine {
            record,
            at_ms: history.records[record].at,
            text: history.describe(record),
            key,
        })
        .collect();
    ViolationReport {
        code: violation.code,
        title: violation.code.title().to_string(),
        summary: violation.summary.clone(),
        payment: violation.payment,
        purchase: violation.purchase,
        witness,
    }
}

/// Writes `summary.json`, the views made from it ([`views::write`]: summary.md,
/// oplog.jsonl, junit.xml, report.html) and (if asked) `trace.jsonl` into `dir`.
pub fn write(dir: &Path, report: &RunReport, history: &History, with_trace: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    write_whole(&dir.join(views::SUMMARY_JSON), &(json + "\n"))?;
    views::write(dir, report)?;
    if with_trace {
        let mut out = BufWriter::new(std::fs::File::create(dir.join("trace.jsonl"))?);
        history.write_jsonl(&mut out)?;
        out.flush()?;
    }
    Ok(())
}

/// Writes a file whole or not at all (a temporary file renamed into place),
/// so a crash never leaves a half summary for CI to read.
pub fn write_whole(path: &Path, text: &str) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

fn percent(rate: f64) -> String {
    format!("{:.2}%", 100.0 * rate)
}

fn judgement(window: &Window) -> &'static str {
    if window.unanswered_breach() {
        "FAIL"
    } else if window.breached() {
        "breached → rolled back"
    } else if window.harness_limited() {
        "harness-limited"
    } else if window.criteria.iter().any(|c| c.judgement == Judgement::Inconclusive) {
        "inconclusive"
    } else {
        "pass"
    }
}

/// The per-phase table, as the console and the Markdown summary show it.
pub(crate) fn phase_rows(report: &RunReport) -> Vec<[String; 10]> {
    report
        .phases
        .iter()
        .map(|w| {
            [
                w.name.clone(),
                w.canary.summary(),
                format!("{}–{}", time::clock(w.from_ms), time::clock(w.until_ms)),
                format!("{} ({} washed)", w.purchases, w.washed),
                format!("{} of {}", percent(w.confirm.failure_rate), w.confirm.attempts),
                format!("{} of {}", percent(w.execute_cycle.failure_rate), w.execute_cycle.attempts),
                format!("{} ms", w.confirm.latency_ms_p99.max(w.execute_cycle.latency_ms_p99)),
                w.duplicates.to_string(),
                format!("{} (max {})", w.compensated, w.sweep_backlog_max),
                judgement(w).to_string(),
            ]
        })
        .collect()
}

pub(crate) const HEADERS: [&str; 10] = [
    "phase",
    "canary",
    "window",
    "purchases",
    "confirm fail",
    "execute fail",
    "p99",
    "dup",
    "compensated (backlog)",
    "criteria",
];

fn optional(duration: Option<Millis>) -> String {
    duration.map_or_else(|| "not reached".to_string(), time::human)
}

/// The four rollback times of §4B, for people.
pub(crate) fn four_times(r: &RollbackTiming) -> [String; 4] {
    [r.replicas_on_new_config_ms, r.affected_denied_ms, r.rates_under_caps_ms, r.stable_ms].map(optional)
}

pub(crate) fn decision_line(entry: &OplogEntry) -> String {
    let config = if entry.applied { format!(" → {}", entry.config.summary()) } else { String::new() };
    let why = entry.evidence.first().map_or(String::new(), |first| format!(": {first}"));
    format!("{} {} {}{config}{why}", time::clock(entry.at_ms), entry.who, entry.decision)
}

/// The console summary: per-phase KPIs, the verdict, the trace hash.
pub fn console(report: &RunReport) -> String {
    let mut out = String::new();
    // A load run has no rollout: its outcome line and KPI windows would mislead.
    match &report.load {
        Some(load) => out.push_str(&load.markdown()),
        None => console_rollout(report, &mut out),
    }
    for fault in &report.stack_faults {
        let replica = fault.replica.map_or(String::new(), |r| format!(" of replica {r}"));
        let ended = fault.ended_ms.map_or("not undone".to_string(), |at| format!("until {}", time::clock(at)));
        let _ = writeln!(out, "stack fault {}{replica} at {}, {ended}", fault.action, time::clock(fault.began_ms));
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    if let Some(harness) = &report.harness {
        let _ = writeln!(out, "{}", harness.line());
    }
    for line in harness_limited_lines(report) {
        let _ = writeln!(out, "harness-limited: {line}");
    }
    for line in &report.failed_criteria {
        let _ = writeln!(out, "criterion broken: {line}");
    }
    if report.violation_counts.is_empty() {
        let _ = writeln!(out, "invariants: D1–D9 hold");
    } else {
        let counts: Vec<String> = report.violation_counts.iter().map(|(code, n)| format!("{code}×{n}")).collect();
        let _ = writeln!(out, "invariants broken: {}", counts.join(" "));
        for violation in report.violations.iter().take(5) {
            let _ = writeln!(out, "  {} {}: {}", violation.code, violation.title, violation.summary);
            for line in violation.witness.iter().filter(|line| line.key).take(4) {
                let _ = writeln!(out, "      {}", line.text);
            }
            let context = violation.witness.iter().filter(|line| !line.key).count();
            if context > 0 {
                let _ = writeln!(out, "      (and {context} records of what led to it, in junit.xml and summary.json)");
            }
        }
    }
    if let Some(card) = &report.scorecard {
        out.push_str(&scorecard::console(card));
    }
    if report.load.is_none() {
        let _ = writeln!(out, "{}", report.outcome.line());
    }
    let _ = writeln!(out, "verdict: {}", report.verdict.label());
    let _ = writeln!(out, "trace-hash: {}", report.trace_hash);
    out
}

/// The console's rollout part: the outcome, per-phase KPIs, decisions, rollbacks.
/// Each criterion posim could not judge, by window: `5%: confirm_failure_rate (…)`.
pub fn harness_limited_lines(report: &RunReport) -> Vec<String> {
    let limited = |c: &&crate::criteria::CriterionResult| c.judgement == Judgement::HarnessLimited;
    report
        .phases
        .iter()
        .flat_map(|w| w.criteria.iter().filter(limited).map(move |c| format!("{}: {} ({})", w.name, c.name, c.detail)))
        .collect()
}

fn console_rollout(report: &RunReport, out: &mut String) {
    let mut rows = vec![HEADERS.map(str::to_string)];
    rows.extend(phase_rows(report));
    let widths: Vec<usize> =
        (0..HEADERS.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let _ = writeln!(out, "{}", report.outcome.line());
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    for entry in &report.decisions {
        let _ = writeln!(out, "decision {}", decision_line(entry));
    }
    for r in &report.rollbacks {
        let [replicas, denied, under, stable] = four_times(r);
        let (label, at) = (&r.label, time::clock(r.at_ms));
        let _ = writeln!(
            out,
            "rollback `{label}` at {at}: replicas on new config {replicas}, affected denied {denied}, \
             rates under caps {under}, stable {stable}"
        );
    }
}
