//! What a suite shows: a console line per member as it finishes and the
//! verdict; `suite.json` (serde, one entry per member in input order),
//! `summary.md` (verdict first, then each failing member and why, every
//! member in a folded table: short enough for a CI job's step summary) and `junit.xml` (every member's cases). The views are
//! made by one function from `suite.json` and the members' reports, at the
//! end of a suite and again by `posim report DIR`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Member, Ran, SuiteConfig, SuiteRun};
use crate::check::Invariant;
use crate::report::views::{self, Rerender};
use crate::report::{self, RunReport, Verdict, junit};

/// 1: the first suite summary.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct SuiteSummary {
    pub schema_version: u32,
    pub verdict: Verdict,
    pub scenarios: usize,
    pub passed: usize,
    pub failed: usize,
    /// The seed given to every member; `null`: each scenario's own.
    pub seed: Option<u64>,
    pub stack_bugs: Vec<String>,
    pub threads: usize,
    pub wall_seconds: f64,
    pub runs: Vec<MemberSummary>,
}

/// One member, as the suite lists it.
#[derive(Debug, Serialize, Deserialize)]
pub struct MemberSummary {
    /// The file's stem: the name of its report folder (in the suite's folder).
    pub label: String,
    /// The scenario's own name.
    pub name: String,
    pub file: String,
    pub verdict: Verdict,
    pub outcome: String,
    pub violation_counts: BTreeMap<Invariant, usize>,
    pub failed_criteria: Vec<String>,
    pub seed: u64,
    pub trace_hash: String,
    pub report_dir: String,
    pub wall_seconds: f64,
}

impl SuiteSummary {
    pub fn of(suite: &SuiteRun, config: &SuiteConfig) -> SuiteSummary {
        let runs: Vec<MemberSummary> = suite
            .labels
            .iter()
            .zip(&suite.files)
            .zip(&suite.runs)
            .map(|((label, file), ran)| member(label, file, ran))
            .collect();
        let passed = runs.iter().filter(|run| run.verdict == Verdict::Pass).count();
        SuiteSummary {
            schema_version: SCHEMA_VERSION,
            verdict: suite.verdict(),
            scenarios: runs.len(),
            passed,
            failed: runs.len() - passed,
            seed: config.seed,
            stack_bugs: config.bugs.iter().map(ToString::to_string).collect(),
            threads: suite.threads,
            wall_seconds: suite.wall_seconds,
            runs,
        }
    }
}

fn member(label: &str, file: &Path, ran: &Ran) -> MemberSummary {
    let report = &ran.report;
    MemberSummary {
        label: label.to_string(),
        name: report.scenario.clone(),
        file: file.display().to_string(),
        verdict: report.verdict,
        outcome: report.outcome.line(),
        violation_counts: report.violation_counts.clone(),
        failed_criteria: report.failed_criteria.clone(),
        seed: report.seed,
        trace_hash: report.trace_hash.clone(),
        report_dir: ran.dir.display().to_string(),
        wall_seconds: ran.wall_seconds,
    }
}

/// The suite's own summary, the source of its views with the members' reports.
pub const SUITE_JSON: &str = "suite.json";

/// The suite's views, as (file name, contents): each member's label and
/// report, in input order, give the JUnit file its test suites.
pub fn render(summary: &SuiteSummary, members: &[(&str, &RunReport)]) -> Vec<(&'static str, String)> {
    vec![("summary.md", markdown(summary)), ("junit.xml", junit::testsuites(members))]
}

/// Writes `suite.json` and the suite's views into the suite's folder.
pub fn write(dir: &Path, summary: &SuiteSummary, members: &[(&str, &RunReport)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(summary).map_err(std::io::Error::other)?;
    report::write_whole(&dir.join(SUITE_JSON), &(json + "\n"))?;
    for (name, text) in render(summary, members) {
        report::write_whole(&dir.join(name), &text)?;
    }
    Ok(())
}

/// Whether `dir` holds a suite (rather than one run).
pub fn is_suite(dir: &Path) -> bool {
    dir.join(SUITE_JSON).is_file()
}

/// `posim report DIR`: re-renders a suite's folder or a run's, from its
/// JSON alone; says in a line what it re-rendered.
pub fn rerender_folder(dir: &Path) -> Result<String, Rerender> {
    if is_suite(dir) {
        let summary = rerender(dir)?;
        let verdict = summary.verdict.label();
        return Ok(format!("re-rendered suite {} ({}: {verdict})", dir.display(), tally(&summary)));
    }
    let report = views::rerender(dir)?;
    let verdict = report.verdict.label();
    Ok(format!("re-rendered run {} ({}: {verdict})", dir.display(), report.scenario))
}

/// Re-renders a suite's folder from its JSON alone (`posim report DIR`):
/// each member's views from its `summary.json` (in `DIR/<label>`), then the
/// suite's own. Reads everything before writing anything.
pub fn rerender(dir: &Path) -> Result<SuiteSummary, Rerender> {
    let summary: SuiteSummary = views::read_versioned(&dir.join(SUITE_JSON), SCHEMA_VERSION)?;
    let mut reports = Vec::with_capacity(summary.runs.len());
    for run in &summary.runs {
        reports.push(views::read(&dir.join(&run.label))?);
    }
    for (run, member) in summary.runs.iter().zip(&reports) {
        let member_dir = dir.join(&run.label);
        views::write(&member_dir, member).map_err(|source| Rerender::Unwritten { dir: member_dir, source })?;
    }
    let members: Vec<(&str, &RunReport)> = summary.runs.iter().map(|run| run.label.as_str()).zip(&reports).collect();
    for (name, text) in render(&summary, &members) {
        report::write_whole(&dir.join(name), &text)
            .map_err(|source| Rerender::Unwritten { dir: dir.to_path_buf(), source })?;
    }
    Ok(summary)
}

/// `D2×3 D4×1`, or that the invariants hold.
fn violations(counts: &BTreeMap<Invariant, usize>) -> String {
    if counts.is_empty() {
        return "D1–D9 hold".to_string();
    }
    counts.iter().map(|(code, count)| format!("{code}×{count}")).collect::<Vec<_>>().join(" ")
}

fn tally(summary: &SuiteSummary) -> String {
    format!("{} of {} scenarios pass", summary.passed, summary.scenarios)
}

/// Broken criteria listed per failing member in `summary.md` (all are in its own report).
const CRITERIA_SHOWN: usize = 3;

/// The verdict first, then each failing member and why, then every member
/// in a folded table.
pub fn markdown(summary: &SuiteSummary) -> String {
    let verdict = format!("{} {}", mark(summary.verdict), summary.verdict.label());
    let mut out = format!("# posim suite — {verdict}: {}\n\n", tally(summary));
    let failing: Vec<&MemberSummary> = summary.runs.iter().filter(|run| run.verdict != Verdict::Pass).collect();
    if !failing.is_empty() {
        let _ = writeln!(out, "## Failing\n");
        for run in failing {
            failing_member(run, &mut out);
        }
        out.push('\n');
    }
    let seed = summary.seed.map_or("each scenario's own".to_string(), |seed| seed.to_string());
    let bugs = if summary.stack_bugs.is_empty() { "none".to_string() } else { summary.stack_bugs.join(", ") };
    let _ = writeln!(
        out,
        "seed: {seed} · stack bugs: {bugs} · {:.1} s on {} threads\n",
        summary.wall_seconds, summary.threads
    );
    let _ = writeln!(out, "<details><summary>All {} scenarios</summary>\n", summary.scenarios);
    let _ = writeln!(out, "| | scenario | outcome | invariants | wall | report |\n|---|---|---|---|---|---|");
    for run in &summary.runs {
        let mark = mark(run.verdict);
        let outcome = run.outcome.strip_prefix("outcome: ").unwrap_or(&run.outcome);
        let _ = writeln!(
            out,
            "| {mark} | `{}` | {outcome} | {} | {:.1} s | `{}` |",
            run.file,
            violations(&run.violation_counts),
            run.wall_seconds,
            run.report_dir
        );
    }
    out.push_str("\n</details>\n");
    out
}

/// `- ❌ `file`: D2×3 · outcome: …`, its first broken criteria, where its report is.
fn failing_member(run: &MemberSummary, out: &mut String) {
    let _ = writeln!(out, "- ❌ `{}`: {} · {}", run.file, violations(&run.violation_counts), run.outcome);
    for criterion in run.failed_criteria.iter().take(CRITERIA_SHOWN) {
        let _ = writeln!(out, "  - criterion broken: {criterion}");
    }
    if run.failed_criteria.len() > CRITERIA_SHOWN {
        let _ = writeln!(out, "  - … and {} more criteria", run.failed_criteria.len() - CRITERIA_SHOWN);
    }
    let _ = writeln!(out, "  - report: `{}/summary.md`", run.report_dir);
}

/// The suite's first console line.
pub fn header(members: &[Member], config: &SuiteConfig) -> String {
    let seed = config.seed.map_or("each scenario's own".to_string(), |seed| seed.to_string());
    let bugs: Vec<String> = config.bugs.iter().map(ToString::to_string).collect();
    let bugs = if bugs.is_empty() { "none".to_string() } else { bugs.join(", ") };
    format!(
        "{} · suite of {} scenarios · {} threads · seed {seed} · stack bugs: {bugs}",
        config.command,
        members.len(),
        config.threads(members.len())
    )
}

/// `[3/9] rollout.toml PASS 2.1 s`, and what failed.
pub fn progress_line(done: usize, total: usize, member: &Member, ran: &Ran) -> String {
    let report = &ran.report;
    let mut line = format!("[{done}/{total}] {} ", member.file_name());
    if report.passed() {
        line += &format!("PASS {:.1} s", ran.wall_seconds);
    } else {
        line += &format!(
            "{} {:.1} s · {} · {}",
            report.verdict.label(),
            ran.wall_seconds,
            violations(&report.violation_counts),
            report.outcome.line()
        );
    }
    line
}

/// A verdict's mark in Markdown.
fn mark(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "✅",
        Verdict::Fail => "❌",
        Verdict::HarnessLimited => "⚠️",
    }
}

/// The console's last lines: the members that failed (input order), the verdict.
pub fn console(summary: &SuiteSummary) -> String {
    let mut out = String::new();
    for run in summary.runs.iter().filter(|run| run.verdict != Verdict::Pass) {
        let _ = writeln!(out, "failed: {} · {} · {}", run.file, violations(&run.violation_counts), run.outcome);
        for criterion in &run.failed_criteria {
            let _ = writeln!(out, "  criterion broken: {criterion}");
        }
    }
    let verdict = summary.verdict.label();
    let _ = writeln!(out, "suite: {} in {:.1} s on {} threads", tally(summary), summary.wall_seconds, summary.threads);
    let _ = writeln!(out, "verdict: {verdict}");
    out
}
