//! `posim merge`: the results of shards (`posim load --shard i/n`, run
//! together against one stack) made one, exactly: each step's histograms
//! are written losslessly (hdrhistogram's V2 format) and added, its counts
//! summed; the knee, headroom and thresholds are judged again on the sum.
//! Shards own disjoint payments, machines and condominiums, so the
//! invariants (per payment, per machine) judged by each shard on its own
//! world's ground truth are judged for the whole: their violations are
//! combined, each labelled with its shard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Serialize};

use super::knee::Caps;
use super::meter::{StepCounts, Tallies};
use super::run::{Head, summarize};
use super::shard::Shard;
use crate::report::load::{LoadSection, StepReport};
use crate::scenario::load::Threshold;

/// Each step's raw numbers, beside `summary.json`.
pub const STEPS_FILE: &str = "load-steps.json";

/// A step as written for a merge: its tallies and its histograms (base64 of V2).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    pub step: usize,
    pub target: f64,
    pub seconds: f64,
    #[serde(flatten)]
    pub tallies: Tallies,
    /// Stack request latency per endpoint, microseconds.
    pub latency: BTreeMap<String, String>,
    /// Whole purchases, microseconds.
    pub purchase: Option<String>,
}

impl StepRecord {
    pub fn of(report: &StepReport, counts: &StepCounts) -> StepRecord {
        StepRecord {
            step: report.step,
            target: report.target,
            seconds: report.seconds,
            tallies: counts.tallies.clone(),
            latency: counts.latency.iter().map(|(name, h)| (name.clone(), encode(h))).collect(),
            purchase: counts.purchase.as_ref().map(encode),
        }
    }

    pub fn counts(&self) -> Result<StepCounts, String> {
        let mut latency = BTreeMap::new();
        for (name, text) in &self.latency {
            latency.insert(name.clone(), decode(text).map_err(|e| format!("step {} {name}: {e}", self.step))?);
        }
        let purchase = match &self.purchase {
            Some(text) => Some(decode(text).map_err(|e| format!("step {} purchases: {e}", self.step))?),
            None => None,
        };
        Ok(StepCounts { latency, purchase, tallies: self.tallies.clone() })
    }
}

fn encode(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Writing into memory cannot fail for a histogram the meter made.
    let written = V2Serializer::new().serialize(histogram, &mut bytes);
    debug_assert!(written.is_ok(), "a histogram serializes into memory");
    STANDARD.encode(bytes)
}

fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD.decode(text).map_err(|e| format!("not base64: {e}"))?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(|e| format!("not a V2 histogram: {e:?}"))
}

/// What a merge reads of a shard's `summary.json`.
#[derive(Deserialize)]
struct SummaryView {
    scenario: String,
    seed: u64,
    #[serde(default)]
    violation_counts: BTreeMap<String, u64>,
    #[serde(default)]
    violations: Vec<serde_json::Value>,
    load: Option<LoadView>,
}

#[derive(Deserialize)]
struct LoadView {
    model: String,
    shard: Option<String>,
    p99_max_ms: f64,
    error_rate_max: f64,
    peak_rate: f64,
    thresholds: Vec<ThresholdView>,
}

#[derive(Deserialize)]
struct ThresholdView {
    threshold: String,
}

/// One shard's results, read from its folder.
pub struct ShardResult {
    dir: PathBuf,
    summary: SummaryView,
    load: LoadView,
    shard: Shard,
    steps: Vec<StepRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{0}: {1}")]
    Read(PathBuf, String),
    #[error("{0}")]
    Mismatch(String),
}

impl ShardResult {
    /// Reads `dir/summary.json` and `dir/load-steps.json`.
    pub fn read(dir: &Path) -> Result<ShardResult, MergeError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| MergeError::Read(path.clone(), e.to_string())).map(|t| (path, t))
        };
        let (path, text) = read("summary.json")?;
        let summary: SummaryView =
            serde_json::from_str(&text).map_err(|e| MergeError::Read(path.clone(), e.to_string()))?;
        let not_load = || MergeError::Read(path.clone(), "not the summary of a `posim load` run".into());
        let mut summary = summary;
        let load = summary.load.take().ok_or_else(not_load)?;
        let shard = load
            .shard
            .as_deref()
            .ok_or_else(|| MergeError::Read(path.clone(), "not a shard: the run was not given `--shard i/n`".into()))?;
        let shard = shard.parse().map_err(|e: String| MergeError::Read(path.clone(), e))?;
        let (path, text) = read(STEPS_FILE)?;
        let steps = serde_json::from_str(&text).map_err(|e| MergeError::Read(path, e.to_string()))?;
        Ok(ShardResult { dir: dir.to_path_buf(), summary, load, shard, steps })
    }
}

/// The shards' results made one.
#[derive(Serialize)]
pub struct Merged {
    pub schema_version: u32,
    pub kind: &'static str,
    pub scenario: String,
    pub seed: u64,
    pub shards: Vec<String>,
    pub verdict: &'static str,
    pub violation_counts: BTreeMap<String, u64>,
    /// Each shard's violations, its folder in `shard`.
    pub violations: Vec<serde_json::Value>,
    pub load: LoadSection,
}

impl Merged {
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    pub fn markdown(&self) -> String {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let mut out = format!("# posim merge: {} — {verdict}\n\n", self.scenario);
        out.push_str(&format!("- seed {} · {} shards: {}\n", self.seed, self.shards.len(), self.shards.join(", ")));
        match self.violation_counts.is_empty() {
            true => out.push_str("- invariants: D1–D9 hold in every shard\n\n"),
            false => {
                let counts: Vec<String> = self.violation_counts.iter().map(|(c, n)| format!("{c}×{n}")).collect();
                out.push_str(&format!("- invariants broken: {}\n\n", counts.join(" ")));
            }
        }
        out.push_str(&self.load.markdown());
        out
    }
}

/// Merges every shard of one load (all of `0/n` … `n-1/n`, same scenario and seed).
pub fn merge(results: Vec<ShardResult>) -> Result<Merged, MergeError> {
    check(&results)?;
    let first = &results[0];
    let length = results.iter().map(|r| r.steps.len()).max().unwrap_or(0);
    let mut steps = Vec::with_capacity(length);
    for index in 0..length {
        steps.push(merged_step(&results, index)?);
    }
    let caps = Caps { p99_ms: first.load.p99_max_ms, error_rate: first.load.error_rate_max };
    let thresholds = thresholds(&first.load)?;
    let shard = Some(format!("merged {} shards", results.len()));
    let head = Head { model: first.load.model.clone(), caps, peak_rate: first.load.peak_rate, shard };
    let load = summarize(head, steps, &thresholds);
    let mut violation_counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut violations = Vec::new();
    for result in &results {
        for (code, count) in &result.summary.violation_counts {
            *violation_counts.entry(code.clone()).or_default() += count;
        }
        for violation in &result.summary.violations {
            let mut violation = violation.clone();
            if let Some(object) = violation.as_object_mut() {
                object.insert("shard".into(), result.shard.to_string().into());
            }
            violations.push(violation);
        }
    }
    let passed = violation_counts.is_empty() && load.breached().next().is_none();
    Ok(Merged {
        schema_version: crate::report::SCHEMA_VERSION,
        kind: "merged load",
        scenario: first.summary.scenario.clone(),
        seed: first.summary.seed,
        shards: results.iter().map(|r| format!("{} ({})", r.dir.display(), r.shard)).collect(),
        verdict: if passed { "pass" } else { "fail" },
        violation_counts,
        violations,
        load,
    })
}

/// Every shard of one plan, once each.
fn check(results: &[ShardResult]) -> Result<(), MergeError> {
    let first = results.first().ok_or_else(|| MergeError::Mismatch("no shard folder given".into()))?;
    let count = first.shard.count;
    for result in results {
        let same = result.summary.scenario == first.summary.scenario && result.summary.seed == first.summary.seed;
        if !same || result.shard.count != count {
            return Err(MergeError::Mismatch(format!(
                "{} is shard {} of scenario {} seed {}, {} is shard {} of scenario {} seed {}: not one plan",
                first.dir.display(),
                first.shard,
                first.summary.scenario,
                first.summary.seed,
                result.dir.display(),
                result.shard,
                result.summary.scenario,
                result.summary.seed
            )));
        }
    }
    let mut seen = vec![0_u32; count as usize];
    for result in results {
        seen[result.shard.index as usize] += 1;
    }
    let missing: Vec<String> =
        seen.iter().enumerate().filter(|(_, n)| **n == 0).map(|(i, _)| format!("{i}/{count}")).collect();
    let twice: Vec<String> =
        seen.iter().enumerate().filter(|(_, n)| **n > 1).map(|(i, _)| format!("{i}/{count}")).collect();
    if !missing.is_empty() || !twice.is_empty() {
        return Err(MergeError::Mismatch(format!(
            "every shard once: missing [{}], given twice [{}]",
            missing.join(", "),
            twice.join(", ")
        )));
    }
    Ok(())
}

/// Step `index` of every shard that reached it: counts summed, offered
/// load summed (the shards ran together), the longest step's length.
fn merged_step(results: &[ShardResult], index: usize) -> Result<StepReport, MergeError> {
    let mut counts = StepCounts::default();
    let (mut target, mut seconds) = (0.0, 0.0_f64);
    for result in results {
        let Some(record) = result.steps.get(index) else { continue };
        let theirs = record.counts().map_err(|e| MergeError::Read(result.dir.join(STEPS_FILE), e))?;
        counts.add(&theirs).map_err(|e| MergeError::Read(result.dir.join(STEPS_FILE), e))?;
        target += record.target;
        seconds = seconds.max(record.seconds);
    }
    Ok(counts.report(index, target, seconds))
}

fn thresholds(load: &LoadView) -> Result<Vec<Threshold>, MergeError> {
    let parse = |t: &ThresholdView| t.threshold.parse().map_err(MergeError::Mismatch);
    load.thresholds.iter().map(parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::meter::histogram;

    /// Latencies from a fixed generator: purchase `n` took this many µs.
    fn took(n: u64) -> u64 {
        1_000 + (n * 7_919) % 250_000 + if n.is_multiple_of(97) { 900_000 } else { 0 }
    }

    fn counts_of(purchases: impl Iterator<Item = u64>) -> StepCounts {
        let mut counts = StepCounts::default();
        for n in purchases {
            let endpoint = if n % 3 == 0 { "confirm" } else { "authorize" };
            counts.latency.entry(endpoint.into()).or_insert_with(histogram).record(took(n)).expect("in bounds");
            counts.purchase.get_or_insert_with(histogram).record(3 * took(n)).expect("in bounds");
            counts.tallies.started += 1;
            match n % 50 {
                0 => counts.tallies.failed += 1,
                1 => counts.tallies.not_started += 1,
                _ => {
                    counts.tallies.succeeded += 1;
                    counts.tallies.succeeded_during += 1;
                }
            }
            *counts.tallies.errors.entry(format!("kind {}", n % 4)).or_default() += 1;
        }
        counts
    }

    #[test]
    fn two_shards_written_read_and_merged_equal_one_run_over_the_same_purchases() {
        let whole = counts_of(0..10_000).report(0, 100.0, 10.0);
        let mut merged = StepCounts::default();
        for shard in 0..2 {
            let counts = counts_of((0..10_000).filter(|n| n % 2 == shard));
            let report = counts.report(0, 50.0, 10.0);
            let written = serde_json::to_string(&StepRecord::of(&report, &counts)).expect("serializes");
            let read: StepRecord = serde_json::from_str(&written).expect("reads back");
            merged.add(&read.counts().expect("decodes")).expect("same bounds");
        }
        let merged = merged.report(0, 100.0, 10.0);
        assert_eq!(merged.latency, whole.latency, "the same percentiles, per endpoint and in all");
        assert_eq!(merged.purchase, whole.purchase);
        let counts = |r: &StepReport| (r.started, r.succeeded, r.failed, r.not_started, r.errors.clone());
        assert_eq!(counts(&merged), counts(&whole));
        assert_eq!((merged.throughput, merged.error_rate), (whole.throughput, whole.error_rate));
    }

    #[test]
    fn a_damaged_histogram_is_refused_with_its_step() {
        let counts = counts_of(0..10);
        let mut record = StepRecord::of(&counts.report(3, 1.0, 1.0), &counts);
        record.latency.insert("authorize".into(), "bm90IGEgaGlzdG9ncmFt".into());
        let error = record.counts().err().expect("refused");
        assert!(error.contains("step 3 authorize"), "{error}");
    }
}
