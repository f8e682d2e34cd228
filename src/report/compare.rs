//! `posim compare`: several runs' verdicts and rollback times side by side,
//! read back from their `summary.json` — e.g. the same scenario with the
//! stack as processes and as containers, to see what container start-up
//! costs a rollback.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::time::{self, Millis};

/// The part of a summary.json that a comparison reads.
#[derive(Debug, Deserialize)]
pub struct RunSummary {
    #[serde(skip)]
    pub folder: PathBuf,
    pub scenario: String,
    pub seed: u64,
    /// Absent in reports written before it was recorded.
    #[serde(default)]
    pub engine: Option<String>,
    pub verdict: String,
    pub rollbacks: Vec<RollbackSummary>,
    pub violation_counts: BTreeMap<String, usize>,
}

#[derive(Debug, Deserialize)]
pub struct RollbackSummary {
    pub label: String,
    pub at_ms: Millis,
    pub replicas_on_new_config_ms: Option<Millis>,
    pub affected_denied_ms: Option<Millis>,
    pub rates_under_caps_ms: Option<Millis>,
    pub stable_ms: Option<Millis>,
}

/// Reads each folder's summary.json; the error names the file and what is wrong.
pub fn load(folders: &[PathBuf]) -> Result<Vec<RunSummary>, String> {
    folders.iter().map(|folder| load_one(folder)).collect()
}

fn load_one(folder: &Path) -> Result<RunSummary, String> {
    let file = folder.join("summary.json");
    let text = std::fs::read_to_string(&file).map_err(|error| format!("{}: {error}", file.display()))?;
    let mut summary: RunSummary =
        serde_json::from_str(&text).map_err(|error| format!("{}: not a posim summary: {error}", file.display()))?;
    summary.folder = folder.to_path_buf();
    Ok(summary)
}

/// The four times of §4B, as the summary names them.
type ReadTime = fn(&RollbackSummary) -> Option<Millis>;
const TIMES: [(&str, ReadTime); 4] = [
    ("replicas on new config", |b| b.replicas_on_new_config_ms),
    ("affected denied", |b| b.affected_denied_ms),
    ("rates under caps", |b| b.rates_under_caps_ms),
    ("stable", |b| b.stable_ms),
];

/// A Markdown table: one column per run, rollbacks matched by their order.
pub fn markdown(runs: &[RunSummary]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = vec![
        ("report".into(), runs.iter().map(|r| format!("`{}`", r.folder.display())).collect()),
        ("engine".into(), runs.iter().map(|r| r.engine.clone().unwrap_or_else(|| "?".into())).collect()),
        ("scenario · seed".into(), runs.iter().map(|r| format!("{} · {}", r.scenario, r.seed)).collect()),
        ("verdict".into(), runs.iter().map(|r| r.verdict.clone()).collect()),
        ("violations".into(), runs.iter().map(violations).collect()),
    ];
    let most = runs.iter().map(|r| r.rollbacks.len()).max().unwrap_or(0);
    for index in 0..most {
        let n = index + 1;
        let decided = runs.iter().map(|run| run.rollbacks.get(index).map_or("—".into(), decided)).collect();
        rows.push((format!("rollback {n}: decided"), decided));
        for (name, read) in TIMES {
            let column =
                runs.iter().map(|run| run.rollbacks.get(index).map_or("—".into(), |b| took(read(b)))).collect();
            rows.push((format!("rollback {n}: {name}"), column));
        }
    }
    table(runs.len(), &rows)
}

fn decided(rollback: &RollbackSummary) -> String {
    format!("{} at {}", rollback.label, time::human(rollback.at_ms))
}

fn took(time: Option<Millis>) -> String {
    time.map_or("never".into(), time::human)
}

fn violations(run: &RunSummary) -> String {
    let listed: Vec<String> =
        run.violation_counts.iter().filter(|(_, n)| **n > 0).map(|(code, n)| format!("{code}×{n}")).collect();
    if listed.is_empty() { "none".into() } else { listed.join(", ") }
}

fn table(columns: usize, rows: &[(String, Vec<String>)]) -> String {
    let mut out = String::new();
    let header: Vec<String> = (1..=columns).map(|n| format!("run {n}")).collect();
    let _ = writeln!(out, "| | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(columns));
    for (name, cells) in rows {
        let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
    }
    out
}
