//! A run's views — `summary.md`, `oplog.jsonl`, `junit.xml`, `report.html` — made from its
//! [`RunReport`] alone, by one function that both the end of a run
//! ([`super::write`]) and `posim report DIR` call, so that a re-rendered
//! folder is byte for byte what the run wrote. Also reads a report back
//! from `summary.json`, refusing another schema version.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{RunReport, SCHEMA_VERSION, html, junit, markdown, write_whole};

/// The report itself, the source of every view.
pub const SUMMARY_JSON: &str = "summary.json";

/// Every view of a run, as (file name, contents), in the order written.
pub fn render(report: &RunReport) -> serde_json::Result<Vec<(&'static str, String)>> {
    Ok(vec![
        ("summary.md", markdown(report)),
        ("oplog.jsonl", oplog_jsonl(report)?),
        ("junit.xml", junit::testsuite_of(&report.scenario, report)),
        ("report.html", html::page(report)),
    ])
}

/// Writes every view of `report` into `dir` (each whole or not at all).
pub fn write(dir: &Path, report: &RunReport) -> std::io::Result<()> {
    for (name, text) in render(report).map_err(std::io::Error::other)? {
        write_whole(&dir.join(name), &text)?;
    }
    Ok(())
}

/// The operation log (§5), one JSON object a line.
fn oplog_jsonl(report: &RunReport) -> serde_json::Result<String> {
    let mut log = String::new();
    for entry in &report.decisions {
        log.push_str(&serde_json::to_string(entry)?);
        log.push('\n');
    }
    Ok(log)
}

/// Why a report (or a suite's summary) could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("cannot read {}: {source}", .path.display())]
    Missing { path: PathBuf, source: std::io::Error },
    #[error("{} is not valid JSON of its kind: {source}", .path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{} has schema_version {found}; this posim reads version {reads} only (re-run the scenario)", .path.display())]
    Schema { path: PathBuf, found: u32, reads: u32 },
    #[error("{} is a `{kind}` summary (posim merge), which has no views to re-render", .path.display())]
    Kind { path: PathBuf, kind: String },
}

/// The version (and the kind a merged load summary names), read first: a
/// summary of another version or kind is refused by name, not by whichever
/// field happens to differ.
#[derive(Deserialize)]
struct Versioned {
    schema_version: u32,
    kind: Option<String>,
}

/// Reads a JSON file of schema version `reads` (a run's `summary.json`, a suite's `suite.json`).
pub fn read_versioned<T: serde::de::DeserializeOwned>(path: &Path, reads: u32) -> Result<T, Unreadable> {
    let text = std::fs::read_to_string(path).map_err(|source| Unreadable::Missing { path: path.into(), source })?;
    let json = |source| Unreadable::Json { path: path.into(), source };
    let Versioned { schema_version, kind } = serde_json::from_str(&text).map_err(json)?;
    if schema_version != reads {
        return Err(Unreadable::Schema { path: path.into(), found: schema_version, reads });
    }
    if let Some(kind) = kind {
        return Err(Unreadable::Kind { path: path.into(), kind });
    }
    serde_json::from_str(&text).map_err(json)
}

/// The report in `dir/summary.json`.
pub fn read(dir: &Path) -> Result<RunReport, Unreadable> {
    read_versioned(&dir.join(SUMMARY_JSON), SCHEMA_VERSION)
}

/// Re-renders a run's folder from its `summary.json` alone (`posim report DIR`).
pub fn rerender(dir: &Path) -> Result<RunReport, Rerender> {
    let report = read(dir)?;
    write(dir, &report).map_err(|source| Rerender::Unwritten { dir: dir.to_path_buf(), source })?;
    Ok(report)
}

/// Why a folder could not be re-rendered: its JSON (refused, exit 2) or its
/// views (not written, a harness failure).
#[derive(Debug, thiserror::Error)]
pub enum Rerender {
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
    #[error("cannot write the views into {}: {source}", .dir.display())]
    Unwritten { dir: PathBuf, source: std::io::Error },
}
