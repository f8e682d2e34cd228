//! `report.html`: one self-contained page a person reads first — the verdict
//! and outcome, then the phase timeline, each KPI per window against its
//! cap, the rollback times against their targets, latency per endpoint,
//! every violation with its witness (linked to `trace.jsonl`) and the
//! operation log (§5). Inline CSS with a print sheet, SVG charts, no script,
//! no URL: it opens offline. Made from the `RunReport` alone, so it can be
//! re-rendered from `summary.json`.

use std::fmt::Write as _;

use super::charts;
use super::load::LoadSection;
use super::{HEADERS, RunReport, ViolationReport, phase_rows};
use crate::time;

const STYLE: &str = include_str!("report.css");

/// Text made safe between tags and in a quoted attribute alike (the
/// attribute escape covers both; HTML reads `&apos;` and `&#10;` too).
pub use super::markup::attribute as escape;

/// The whole page.
pub fn page(report: &RunReport) -> String {
    let verdict = report.verdict.label();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>posim: {} — {verdict}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        escape(&report.scenario)
    );
    header(report, &mut out);
    if let Some(card) = &report.scorecard {
        scorecard_section(card, &mut out);
    }
    match &report.load {
        Some(load) => load_section(load, &mut out),
        None => rollout_sections(report, &mut out),
    }
    latency_section(report, &mut out);
    violations_section(report, &mut out);
    oplog_section(report, &mut out);
    let _ = write!(
        out,
        "<footer>posim report · schema_version {} · trace hash <code>{}</code></footer>\n</body>\n</html>\n",
        report.schema_version,
        escape(&report.trace_hash)
    );
    out
}

/// The verdict and the outcome first, then what was run.
fn header(report: &RunReport, out: &mut String) {
    let class = match report.verdict {
        super::Verdict::Pass => "pass",
        super::Verdict::Fail => "fail",
        super::Verdict::HarnessLimited => "harness",
    };
    let verdict = report.verdict.label();
    let _ = write!(
        out,
        "<header class=\"verdict {class}\"><h1><span class=\"badge\">{verdict}</span> {}</h1>",
        escape(&report.scenario)
    );
    if report.load.is_none() {
        let _ = write!(out, "<p class=\"outcome\">{}</p>", escape(&report.outcome.line()));
    }
    out.push_str("</header>\n<section class=\"facts\"><dl>");
    let bugs = if report.stack_bugs.is_empty() { "none".to_string() } else { report.stack_bugs.join(", ") };
    let facts = [
        ("scenario file", report.scenario_file.clone()),
        ("seed", report.seed.to_string()),
        ("engine", report.engine.clone()),
        ("stack bugs", bugs),
        ("simulated", time::human(report.simulated_ms)),
        ("stack requests", report.stack_requests.to_string()),
        ("purchases", report.purchases.to_string()),
    ];
    for (name, value) in facts {
        let _ = write!(out, "<dt>{name}</dt><dd>{}</dd>", escape(&value));
    }
    out.push_str("</dl>");
    list("note", &report.notes, out);
    let own_lag: Vec<String> = report.harness.iter().map(crate::harness::HarnessFigures::line).collect();
    list("posim itself", &own_lag, out);
    list("harness-limited (not judged)", &super::harness_limited_lines(report), out);
    list("criterion broken", &report.failed_criteria, out);
    invariants_line(report, out);
    out.push_str("</section>\n");
}

fn list(label: &str, lines: &[String], out: &mut String) {
    if lines.is_empty() {
        return;
    }
    out.push_str("<ul class=\"alerts\">");
    for line in lines {
        let _ = write!(out, "<li><strong>{label}:</strong> {}</li>", escape(line));
    }
    out.push_str("</ul>");
}

fn invariants_line(report: &RunReport, out: &mut String) {
    if report.violation_counts.is_empty() {
        out.push_str("<p class=\"ok\">Invariants D1–D9 hold: no violation.</p>");
        return;
    }
    let counts: Vec<String> = report
        .violation_counts
        .iter()
        .map(|(code, count)| format!("<a href=\"#{code}\">{code}</a> × {count}"))
        .collect();
    let _ = write!(out, "<p class=\"bad\">Invariants broken: {}</p>", counts.join(", "));
}

fn section(id: &str, title: &str, out: &mut String) {
    let _ = writeln!(out, "<section id=\"{id}\"><h2>{title}</h2>");
}

fn table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>, out: &mut String) {
    out.push_str("<table><thead><tr>");
    for header in headers {
        let _ = write!(out, "<th>{}</th>", escape(header));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
}

fn rollout_sections(report: &RunReport, out: &mut String) {
    section("timeline", "Phase timeline", out);
    let _ = write!(out, "<figure>{}</figure>", charts::timeline(report));
    legend(out);
    table(&HEADERS, phase_rows(report).into_iter().map(Vec::from), out);
    out.push_str("</section>\n");
    kpi_section(report, out);
    rollback_section(report, out);
    stack_faults(report, out);
}

fn legend(out: &mut String) {
    let keys = [
        (charts::PASS, "criteria met"),
        (charts::ROLLED_BACK, "breached, rolled back"),
        (charts::FAIL, "breached, not answered / rollback decision"),
        (charts::INCONCLUSIVE, "inconclusive (too few samples)"),
        (charts::HARNESS_LIMITED, "harness-limited (posim lagged: not judged)"),
    ];
    out.push_str("<p class=\"legend\">");
    for (colour, words) in keys {
        let _ =
            write!(out, "<span><i style=\"background:rgb({},{},{})\"></i>{words}</span>", colour.0, colour.1, colour.2);
    }
    out.push_str("<span>#n: decision n of the operation log</span></p>\n");
}

/// Charts side by side (two to a row on a wide screen and on paper).
fn grid(charts: Vec<String>, out: &mut String) {
    out.push_str("<div class=\"grid\">");
    for chart in charts {
        let _ = write!(out, "<figure>{chart}</figure>");
    }
    out.push_str("</div>\n");
}

fn kpi_section(report: &RunReport, out: &mut String) {
    section("kpis", "KPIs per window against their criteria", out);
    grid(charts::kpis(&report.phases), out);
    let rows = report.phases.iter().flat_map(|window| {
        window
            .criteria
            .iter()
            .map(|c| vec![window.name.clone(), c.name.to_string(), format!("{:?}", c.judgement), c.detail.clone()])
    });
    table(&["window", "criterion", "judgement", "detail"], rows, out);
    out.push_str("</section>\n");
}

/// A game day: the people's times beside posim-auto's, first after the verdict.
fn scorecard_section(card: &crate::gameday::scorecard::Scorecard, out: &mut String) {
    use super::scorecard as view;
    section("scorecard", "Game day scorecard", out);
    table(&view::INCIDENT_HEADERS, view::incident_rows(card), out);
    let rollbacks = view::rollback_rows(card);
    if !rollbacks.is_empty() {
        table(&view::ROLLBACK_HEADERS, rollbacks, out);
    }
    table(&view::IMPACT_HEADERS, view::impact_rows(card), out);
    out.push_str("<h3>Runbook adherence</h3><ul>");
    for (finding, line) in card.adherence.iter().zip(view::adherence_lines(card)) {
        let class = if finding.kept { "ok" } else { "bad" };
        let _ = write!(out, "<li class=\"{class}\">{}</li>", escape(&line));
    }
    out.push_str("</ul></section>\n");
}

fn rollback_section(report: &RunReport, out: &mut String) {
    section("rollbacks", "Rollback times (§4B) against their targets", out);
    if report.rollbacks.is_empty() {
        out.push_str("<p>No rollback was decided in this run.</p>");
    }
    for timing in &report.rollbacks {
        let _ = write!(out, "<figure>{}</figure>", charts::rollback(timing));
        let rows = charts::rollback_rows(timing).map(|(name, took, target)| vec![name.to_string(), took, target]);
        table(&["time to", "took", "target"], rows, out);
        list("breach", &timing.breaches, out);
    }
    out.push_str("</section>\n");
}

fn stack_faults(report: &RunReport, out: &mut String) {
    if report.stack_faults.is_empty() {
        return;
    }
    section("stack-faults", "Stack faults", out);
    let rows = report.stack_faults.iter().map(|fault| {
        vec![
            fault.action.to_string(),
            fault.replica.map_or("—".to_string(), |r| r.to_string()),
            time::clock(fault.began_ms),
            fault.ended_ms.map_or("not before the end".to_string(), time::clock),
        ]
    });
    table(&["fault", "replica", "began", "ended"], rows, out);
    out.push_str("</section>\n");
}

fn load_section(load: &LoadSection, out: &mut String) {
    section("load", "Load: latency per step", out);
    grid(charts::load_latency(&load.steps), out);
    let _ = write!(out, "<pre>{}</pre>", escape(&load.markdown()));
    out.push_str("</section>\n");
}

fn latency_section(report: &RunReport, out: &mut String) {
    section("latency", "Latency per endpoint (request sent → answer heard)", out);
    let _ = write!(out, "<figure>{}</figure>", charts::latency(&report.latency));
    let rows = report.latency.iter().map(|e| {
        // No answer, no time: a dash, not a misleading 0 ms.
        let ms = |value: u64| if e.answered == 0 { "—".to_string() } else { format!("{value} ms") };
        vec![
            e.endpoint.to_string(),
            e.answered.to_string(),
            e.timed_out.to_string(),
            ms(e.p50_ms),
            ms(e.p90_ms),
            ms(e.p99_ms),
            ms(e.max_ms),
        ]
    });
    table(&["endpoint", "answered", "timed out", "p50", "p90", "p99", "max"], rows, out);
    out.push_str("</section>\n");
}

fn violations_section(report: &RunReport, out: &mut String) {
    section("violations", "Violations and their witnesses", out);
    if report.violations.is_empty() {
        out.push_str("<p class=\"ok\">No violation: D1–D9 hold.</p>");
    } else {
        out.push_str(
            "<p>Each witness line gives its record number in <a href=\"trace.jsonl\">trace.jsonl</a> \
             (written unless the run had <code>--no-trace</code>); the lines marked → break the invariant, \
             the others tell what led to them.</p>",
        );
    }
    let mut anchored = std::collections::BTreeSet::new();
    for violation in &report.violations {
        let id = anchored.insert(violation.code).then_some(violation.code.code());
        witness(violation, id, out);
    }
    out.push_str("</section>\n");
}

fn witness(violation: &ViolationReport, id: Option<&str>, out: &mut String) {
    let id = id.map_or(String::new(), |code| format!(" id=\"{code}\""));
    let _ = write!(
        out,
        "<article class=\"violation\"{id}><h3>{} {} — {}</h3><ol class=\"witness\">",
        escape(violation.code.code()),
        escape(&violation.title),
        escape(&violation.summary)
    );
    for line in &violation.witness {
        let (class, mark) = if line.key { (" class=\"key\"", "→") } else { ("", "") };
        // The text begins with the record number and time the link shows.
        let prefix = format!("#{} {} ", line.record, time::clock(line.at_ms));
        let text = line.text.strip_prefix(&prefix).unwrap_or(&line.text);
        let _ = write!(
            out,
            "<li{class}><span class=\"mark\">{mark}</span><a class=\"record\" href=\"trace.jsonl\" \
             title=\"record {0} of trace.jsonl\">#{0}</a> <span class=\"at\">{1}</span> {2}</li>",
            line.record,
            time::clock(line.at_ms),
            escape(text)
        );
    }
    out.push_str("</ol></article>\n");
}

fn oplog_section(report: &RunReport, out: &mut String) {
    section("oplog", "Operation log (§5)", out);
    let rows = report.decisions.iter().enumerate().map(|(number, e)| {
        let applied = if e.applied { e.env.join("\n") } else { format!("(unchanged) {}", e.config.summary()) };
        let mut evidence = e.evidence.join("\n");
        if !e.violations.is_empty() {
            evidence.push_str(&format!("\nviolations: {}", e.violations.join(", ")));
        }
        let decision = e.decision.to_string();
        vec![
            format!("#{}", number + 1),
            e.at.clone(),
            e.who.clone(),
            applied,
            e.kpis_before.brief(),
            e.kpis_after.brief(),
            decision,
            evidence,
        ]
    });
    let headers = ["#", "Data/hora", "Quem", "Config aplicada", "KPIs antes", "KPIs depois", "Decisão", "Evidências"];
    table(&headers, rows, out);
    out.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_makes_markup_text() {
        assert_eq!(escape(r#"<b a='1'>"x" & y</b>"#), "&lt;b a=&apos;1&apos;&gt;&quot;x&quot; &amp; y&lt;/b&gt;");
        assert_eq!(escape("plain — ü"), "plain — ü");
    }
}
