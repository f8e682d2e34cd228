//! What a suite shows: a console line per member as it finishes and the
//! verdict; `suite.json` (serde, one entry per member in input order) and
//! `summary.md` (verdict first, one line per member, short enough for a CI
//! job's step summary).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::{Member, Ran, SuiteConfig, SuiteRun};

/// 1: the first suite summary.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct SuiteSummary<'a> {
    pub schema_version: u32,
    pub verdict: &'static str,
    pub scenarios: usize,
    pub passed: usize,
    pub failed: usize,
    /// The seed given to every member; `null`: each scenario's own.
    pub seed: Option<u64>,
    pub stack_bugs: Vec<String>,
    pub threads: usize,
    pub wall_seconds: f64,
    pub runs: Vec<MemberSummary<'a>>,
}

/// One member, as the suite lists it.
#[derive(Debug, Serialize)]
pub struct MemberSummary<'a> {
    /// The file's stem: the name of its report folder.
    pub label: &'a str,
    /// The scenario's own name.
    pub name: &'a str,
    pub file: String,
    pub verdict: &'static str,
    pub outcome: String,
    pub violation_counts: &'a BTreeMap<&'static str, usize>,
    pub failed_criteria: &'a [String],
    pub seed: u64,
    pub trace_hash: &'a str,
    pub report_dir: String,
    pub wall_seconds: f64,
}

impl SuiteSummary<'_> {
    pub fn of<'a>(suite: &'a SuiteRun, config: &SuiteConfig) -> SuiteSummary<'a> {
        let runs: Vec<MemberSummary<'a>> = suite
            .labels
            .iter()
            .zip(&suite.files)
            .zip(&suite.runs)
            .map(|((label, file), ran)| member(label, file, ran))
            .collect();
        let passed = runs.iter().filter(|run| run.verdict == "pass").count();
        SuiteSummary {
            schema_version: SCHEMA_VERSION,
            verdict: if suite.passed() { "pass" } else { "fail" },
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

fn member<'a>(label: &'a str, file: &Path, ran: &'a Ran) -> MemberSummary<'a> {
    let report = &ran.report;
    MemberSummary {
        label,
        name: &report.scenario,
        file: file.display().to_string(),
        verdict: report.verdict,
        outcome: report.outcome.line(),
        violation_counts: &report.violation_counts,
        failed_criteria: &report.failed_criteria,
        seed: report.seed,
        trace_hash: &report.trace_hash,
        report_dir: ran.dir.display().to_string(),
        wall_seconds: ran.wall_seconds,
    }
}

/// Writes `suite.json` and `summary.md` into the suite's folder.
pub fn write(dir: &Path, summary: &SuiteSummary<'_>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(summary).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("suite.json"), json + "\n")?;
    std::fs::write(dir.join("summary.md"), markdown(summary))
}

/// `D2×3 D4×1`, or that the invariants hold.
fn violations(counts: &BTreeMap<&'static str, usize>) -> String {
    if counts.is_empty() {
        return "D1–D9 hold".to_string();
    }
    counts.iter().map(|(code, count)| format!("{code}×{count}")).collect::<Vec<_>>().join(" ")
}

fn tally(summary: &SuiteSummary<'_>) -> String {
    format!("{} of {} scenarios pass", summary.passed, summary.scenarios)
}

pub fn markdown(summary: &SuiteSummary<'_>) -> String {
    let verdict = if summary.verdict == "pass" { "✅ PASS" } else { "❌ FAIL" };
    let mut out = format!("# posim suite — {verdict}: {}\n\n", tally(summary));
    let seed = summary.seed.map_or("each scenario's own".to_string(), |seed| seed.to_string());
    let bugs = if summary.stack_bugs.is_empty() { "none".to_string() } else { summary.stack_bugs.join(", ") };
    let _ = writeln!(
        out,
        "seed: {seed} · stack bugs: {bugs} · {:.1} s on {} threads\n",
        summary.wall_seconds, summary.threads
    );
    let _ = writeln!(out, "| | scenario | outcome | invariants | wall | report |\n|---|---|---|---|---|---|");
    for run in &summary.runs {
        let mark = if run.verdict == "pass" { "✅" } else { "❌" };
        let outcome = run.outcome.strip_prefix("outcome: ").unwrap_or(&run.outcome);
        let _ = writeln!(
            out,
            "| {mark} | `{}` | {outcome} | {} | {:.1} s | `{}` |",
            run.file,
            violations(run.violation_counts),
            run.wall_seconds,
            run.report_dir
        );
    }
    out
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
            "FAIL {:.1} s · {} · {}",
            ran.wall_seconds,
            violations(&report.violation_counts),
            report.outcome.line()
        );
    }
    line
}

/// The console's last lines: the members that failed (input order), the verdict.
pub fn console(summary: &SuiteSummary<'_>) -> String {
    let mut out = String::new();
    for run in summary.runs.iter().filter(|run| run.verdict != "pass") {
        let _ = writeln!(out, "failed: {} · {} · {}", run.file, violations(run.violation_counts), run.outcome);
        for criterion in run.failed_criteria {
            let _ = writeln!(out, "  criterion broken: {criterion}");
        }
    }
    let verdict = if summary.verdict == "pass" { "PASS" } else { "FAIL" };
    let _ = writeln!(out, "suite: {} in {:.1} s on {} threads", tally(summary), summary.wall_seconds, summary.threads);
    let _ = writeln!(out, "verdict: {verdict}");
    out
}
