//! `summary.md`, sized for a CI job page (GitHub's step summary): the
//! verdict and the outcome against the expectation in the first line; then
//! only what explains a failure — the broken criteria, the invariants with a
//! few key witness lines each, the rollback times against their targets —
//! and the long tables (every window, the timeline and operation log, the
//! stack faults, whole witness stories) folded in `<details>`. Every witness
//! in full is in `junit.xml` and `summary.json`.

use std::fmt::Write as _;

use super::Verdict;
use super::{HEADERS, RunReport, ViolationReport, decision_line, four_times, phase_rows};
use crate::check::Invariant;
use crate::time;

/// Violations of one code shown with their key lines (all are counted).
const SHOWN_PER_CODE: usize = 2;
/// Key witness lines shown per violation (the records that break the invariant).
const KEY_LINES_SHOWN: usize = 4;
/// Broken criteria listed before "… and n more".
const CRITERIA_SHOWN: usize = 10;

/// The whole summary, in reading order.
pub fn render(report: &RunReport) -> String {
    let mut out = headline(report);
    if !report.passed() {
        why_it_failed(report, &mut out);
    }
    if let Some(card) = &report.scorecard {
        out.push_str(&super::scorecard::markdown(card));
    }
    invariants(report, &mut out);
    if !report.rollbacks.is_empty() {
        rollback_timing(report, &mut out);
    }
    facts(report, &mut out);
    match &report.load {
        Some(load) => {
            let _ = writeln!(out, "\n{}", load.markdown());
        }
        None => folded_tables(report, &mut out),
    }
    out
}

/// `# ❌ FAIL · rollout — outcome: rolled back at 45m … — expected `complete`: NOT what the scenario expects`.
fn headline(report: &RunReport) -> String {
    let verdict = match report.verdict {
        Verdict::Pass => "✅ PASS",
        Verdict::Fail => "❌ FAIL",
        Verdict::HarnessLimited => "⚠️ HARNESS-LIMITED",
    };
    // A load run has no rollout: an outcome would mislead.
    let outcome = match report.load {
        Some(_) => "load run".to_string(),
        None => report.outcome.line(),
    };
    format!("# {verdict} · {} — {outcome}\n", report.scenario)
}

fn why_it_failed(report: &RunReport, out: &mut String) {
    let _ = writeln!(out, "\n## Why it failed\n");
    if report.load.is_none() && !report.outcome.met {
        let _ = writeln!(out, "- outcome: {}, not the expected `{}`", report.outcome.text, report.outcome.expected);
    }
    for line in super::harness_limited_lines(report) {
        let _ = writeln!(out, "- harness-limited (posim lagged; not the stack's failure): {line}");
    }
    if let Some(harness) = report.harness.as_ref().filter(|_| report.verdict == Verdict::HarnessLimited) {
        let _ = writeln!(out, "- {}", harness.line());
    }
    for line in report.failed_criteria.iter().take(CRITERIA_SHOWN) {
        let _ = writeln!(out, "- criterion broken: {line}");
    }
    if report.failed_criteria.len() > CRITERIA_SHOWN {
        let _ = writeln!(out, "- … and {} more criteria", report.failed_criteria.len() - CRITERIA_SHOWN);
    }
    if !report.violation_counts.is_empty() {
        let _ = writeln!(out, "- invariants broken: {} (witnesses below)", counts(report));
    }
}

/// `D2×17 D9×3`.
fn counts(report: &RunReport) -> String {
    let counts: Vec<String> = report.violation_counts.iter().map(|(code, n)| format!("{code}×{n}")).collect();
    counts.join(" ")
}

fn invariants(report: &RunReport, out: &mut String) {
    let _ = writeln!(out, "\n## Invariants\n");
    if report.violation_counts.is_empty() {
        let _ = writeln!(out, "D1–D9 hold: no violation.");
        return;
    }
    for (&code, &count) in &report.violation_counts {
        invariant(report, code, count, out);
    }
}

/// One broken invariant: its count, a few violations with their key lines,
/// the first one's whole story folded.
fn invariant(report: &RunReport, code: Invariant, count: usize, out: &mut String) {
    let _ = writeln!(out, "### {code} {}: {count}\n", code.title());
    let listed: Vec<&ViolationReport> = report.violations.iter().filter(|v| v.code == code).collect();
    for (shown, violation) in listed.iter().take(SHOWN_PER_CODE).enumerate() {
        let _ = writeln!(out, "- {}", violation.summary);
        let keys = violation.witness.iter().filter(|line| line.key);
        for line in keys.take(KEY_LINES_SHOWN) {
            let _ = writeln!(out, "  - → {}", line.text);
        }
        if shown == 0 && violation.witness.iter().any(|line| !line.key) {
            story(violation, out);
        }
    }
    let rest = count.saturating_sub(listed.len().min(SHOWN_PER_CODE));
    if rest > 0 {
        let _ = writeln!(out, "- … and {rest} more (witnesses in junit.xml and summary.json)");
    }
    out.push('\n');
}

/// A violation's whole witness: what led to it, the key records marked.
fn story(violation: &ViolationReport, out: &mut String) {
    let _ = writeln!(out, "\n  <details><summary>what led to it ({} records)</summary>\n", violation.witness.len());
    for line in &violation.witness {
        let mark = if line.key { "→" } else { " " };
        let _ = writeln!(out, "      {mark} {}", line.text);
    }
    let _ = writeln!(out, "\n  </details>\n");
}

/// The four times of §4B against their targets (a breach names the target).
fn rollback_timing(report: &RunReport, out: &mut String) {
    let _ = writeln!(out, "## Rollback timing (§4B)\n");
    let _ = writeln!(
        out,
        "| rollback | at | affected | replicas on new config | affected denied | rates under caps | stable | breaches |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for r in &report.rollbacks {
        let [replicas, denied, under, stable] = four_times(r);
        let breaches = if r.breaches.is_empty() { "none".to_string() } else { r.breaches.join("; ") };
        let (label, at, affected) = (&r.label, time::clock(r.at_ms), r.affected);
        let _ =
            writeln!(out, "| {label} | {at} | {affected} | {replicas} | {denied} | {under} | {stable} | {breaches} |");
    }
}

/// What was run: the file, the seed, the engine, the bugs, the trace hash.
fn facts(report: &RunReport, out: &mut String) {
    let bugs = if report.stack_bugs.is_empty() { "none".to_string() } else { report.stack_bugs.join(", ") };
    let _ = writeln!(
        out,
        "\n`{}` · seed {} · {} · stack bugs: {bugs} · simulated {} · {} stack requests · {} purchases · trace hash `{}`",
        report.scenario_file,
        report.seed,
        report.engine,
        time::human(report.simulated_ms),
        report.stack_requests,
        report.purchases,
        report.trace_hash
    );
    for note in &report.notes {
        let _ = writeln!(out, "\n**note**: {note}");
    }
}

/// Opens a folded section; `close` ends it.
fn open(out: &mut String, summary: &str) {
    let _ = writeln!(out, "\n<details><summary>{summary}</summary>\n");
}

fn close(out: &mut String) {
    out.push_str("\n</details>\n");
}

/// Every window's KPIs, the timeline and operation log, the stack faults.
fn folded_tables(report: &RunReport, out: &mut String) {
    open(out, &format!("Phases: {} windows, KPIs and criteria", report.phases.len()));
    let _ = writeln!(out, "## Phases\n\n| {} |\n|{}", HEADERS.join(" | "), "---|".repeat(HEADERS.len()));
    for row in phase_rows(report) {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    close(out);
    open(out, &format!("Timeline and operation log (§5): {} decisions", report.decisions.len()));
    timeline(report, out);
    close(out);
    if !report.stack_faults.is_empty() {
        open(out, &format!("Stack faults: {}", report.stack_faults.len()));
        stack_faults(report, out);
        close(out);
    }
}

fn stack_faults(report: &RunReport, out: &mut String) {
    let _ = writeln!(out, "| fault | replica | began | ended |");
    let _ = writeln!(out, "|---|---|---|---|");
    for fault in &report.stack_faults {
        let replica = fault.replica.map_or("—".to_string(), |r| r.to_string());
        let ended = fault.ended_ms.map_or("not before the end".to_string(), time::clock);
        let _ = writeln!(out, "| {} | {replica} | {} | {ended} |", fault.action, time::clock(fault.began_ms));
    }
}

/// The decisions in brief, then the operation log (§5) in full.
fn timeline(report: &RunReport, out: &mut String) {
    let _ = writeln!(out, "## Timeline\n");
    for entry in &report.decisions {
        let _ = writeln!(out, "- {}", decision_line(entry));
    }
    let _ = writeln!(out, "\n## Operation log (§5)\n");
    let _ = writeln!(out, "| Data/hora | Quem | Config aplicada | KPIs antes | KPIs depois | Decisão | Evidências |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for e in &report.decisions {
        let applied = if e.applied { e.env.join("<br>") } else { format!("(unchanged) {}", e.config.summary()) };
        let mut evidence = e.evidence.join("<br>");
        if !e.violations.is_empty() {
            evidence.push_str(&format!("<br>violations: {}", e.violations.join(", ")));
        }
        let _ = writeln!(
            out,
            "| {} | {} | {applied} | {} | {} | {} | {evidence} |",
            e.at,
            e.who,
            e.kpis_before.brief(),
            e.kpis_after.brief(),
            e.decision
        );
    }
}
