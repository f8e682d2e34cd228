//! The game day's scorecard as rows, for the Markdown summary and the HTML
//! page alike: the people's times beside posim-auto's on the same seed,
//! their rollbacks against the targets, adherence and customer impact.

use super::charts;
use crate::gameday::scorecard::{Decider, IncidentScore, Scorecard};
use crate::time;

pub const INCIDENT_HEADERS: [&str; 6] =
    ["who decided", "incident", "set off at", "time to detect", "time to mitigate", "first action"];
pub const ROLLBACK_HEADERS: [&str; 5] = ["who decided", "rollback", "at", "time to", "took / target"];
pub const IMPACT_HEADERS: [&str; 6] =
    ["who decided", "paid, no wash (D3)", "stranded (D8)", "duplicated (D1, D2)", "refunded", "how it ended"];

fn decider(card: &Scorecard) -> &'static str {
    match card.decider {
        Decider::People => "people",
        Decider::PosimAuto => "posim-auto (reference)",
    }
}

/// The people's card, then the reference's.
fn cards(card: &Scorecard) -> impl Iterator<Item = &Scorecard> {
    std::iter::once(card).chain(card.reference.as_deref())
}

fn span(ms: Option<u64>, missing: &str) -> String {
    ms.map_or(missing.to_string(), time::human)
}

fn incident_row(card: &Scorecard, incident: &IncidentScore) -> Vec<String> {
    vec![
        decider(card).to_string(),
        format!("{} — {}", incident.incident, incident.description),
        time::clock(incident.at_ms),
        span(incident.detect_ms, "UNDETECTED"),
        span(incident.mitigate_ms, "not mitigated"),
        incident.first_action.clone().unwrap_or_else(|| "none".into()),
    ]
}

pub fn incident_rows(card: &Scorecard) -> Vec<Vec<String>> {
    cards(card).flat_map(|c| c.incidents.iter().map(move |incident| incident_row(c, incident))).collect()
}

pub fn rollback_rows(card: &Scorecard) -> Vec<Vec<String>> {
    cards(card)
        .flat_map(|c| {
            c.rollbacks.iter().flat_map(move |timing| {
                charts::rollback_rows(timing).into_iter().map(move |(name, took, target)| {
                    let label = format!("{} ({})", timing.label, timing.kind);
                    vec![
                        decider(c).to_string(),
                        label,
                        time::clock(timing.at_ms),
                        name.to_string(),
                        format!("{took} / {target}"),
                    ]
                })
            })
        })
        .collect()
}

pub fn impact_rows(card: &Scorecard) -> Vec<Vec<String>> {
    cards(card)
        .map(|c| {
            let i = &c.impact;
            vec![
                decider(c).to_string(),
                i.paid_no_wash.to_string(),
                i.stranded.to_string(),
                i.duplicated.to_string(),
                i.refunded.to_string(),
                c.outcome.clone(),
            ]
        })
        .collect()
}

/// `✓ rule: detail` per adherence finding.
pub fn adherence_lines(card: &Scorecard) -> Vec<String> {
    card.adherence.iter().map(|f| format!("{} {}: {}", if f.kept { "✓" } else { "✗" }, f.rule, f.detail)).collect()
}

/// A Markdown table.
pub fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|{}\n", headers.join(" | "), "---|".repeat(headers.len()));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ").replace('\n', " ")));
    }
    out
}

/// The scorecard section of `summary.md`.
pub fn markdown(card: &Scorecard) -> String {
    let mut out = String::from("\n## Game day scorecard\n\n");
    out.push_str(&markdown_table(&INCIDENT_HEADERS, &incident_rows(card)));
    let rollbacks = rollback_rows(card);
    if !rollbacks.is_empty() {
        out.push('\n');
        out.push_str(&markdown_table(&ROLLBACK_HEADERS, &rollbacks));
    }
    out.push('\n');
    out.push_str(&markdown_table(&IMPACT_HEADERS, &impact_rows(card)));
    out.push_str("\nRunbook adherence:\n\n");
    for line in adherence_lines(card) {
        out.push_str(&format!("- {line}\n"));
    }
    out
}

/// The scorecard in a few lines, people first, then posim-auto's reference.
pub fn console(card: &Scorecard) -> String {
    let mut out = String::from("scorecard:\n");
    for (who, card) in std::iter::once(("people", card)).chain(card.reference.as_deref().map(|r| ("posim-auto", r))) {
        for incident in &card.incidents {
            out.push_str(&format!("  {who:<10} incident {}: {}\n", incident.incident, times(incident)));
        }
        if card.incidents.is_empty() {
            out.push_str(&format!("  {who:<10} no incident was set off\n"));
        }
    }
    for finding in &card.adherence {
        out.push_str(&format!(
            "  adherence  {} {}: {}\n",
            if finding.kept { "✓" } else { "✗" },
            finding.rule,
            finding.detail
        ));
    }
    let impact = &card.impact;
    out.push_str(&format!(
        "  impact     paid, no wash {} · stranded {} · duplicated {} · refunded {}\n",
        impact.paid_no_wash, impact.stranded, impact.duplicated, impact.refunded
    ));
    out
}

fn times(incident: &IncidentScore) -> String {
    let span = |ms: Option<u64>| ms.map_or("never".to_string(), time::human);
    match incident.detect_ms {
        None => "UNDETECTED (nobody acted)".into(),
        Some(_) => format!("detected in {}, mitigated in {}", span(incident.detect_ms), span(incident.mitigate_ms)),
    }
}
