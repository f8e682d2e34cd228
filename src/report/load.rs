//! The `load` section of a report (`posim load`): per step the offered
//! load, throughput and latency percentiles, the knee, the headroom over the
//! fleet's busiest hour, the thresholds and the database's own ceiling
//! beside the knee (pgbench) — plain data, filled by the load
//! shell, shown in summary.json, summary.md and on the console.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::load::limit::{Limit, StepFigures};

/// Latency percentiles in milliseconds (from an hdrhistogram).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// One step of the load.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepReport {
    pub step: usize,
    /// Purchases per second offered (open model) or users (closed model).
    pub target: f64,
    pub seconds: f64,
    pub started: u64,
    /// Purchases that ended as the scenario meant (washed, declined, not in canary).
    pub succeeded: u64,
    pub failed: u64,
    /// Open model: purchases started more than 5 ms after their planned time.
    pub late_starts: u64,
    /// Purchases not started: no free machine, or the in-flight cap.
    pub not_started: u64,
    /// Purchases that ended as meant during the step, per second.
    pub throughput: f64,
    /// (failed + not started) ÷ offered.
    pub error_rate: f64,
    /// Stack requests of every endpoint (`all`) and per endpoint.
    pub latency: BTreeMap<String, Percentiles>,
    /// Whole purchases, from their planned start (open model) or their start.
    pub purchase: Percentiles,
    pub errors: BTreeMap<String, u64>,
    /// What limited the step (see `load::limit` for the rule).
    #[serde(default)]
    pub limited_by: Limit,
    /// Where the step's CPU went: posim against the rest of the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<crate::load::cpu::StepCpu>,
}

impl StepReport {
    /// What the limit rule reads of the step.
    pub fn figures(&self) -> StepFigures {
        StepFigures {
            started: self.started,
            succeeded: self.succeeded,
            failed: self.failed,
            not_started: self.not_started,
            late_starts: self.late_starts,
            error_rate: self.error_rate,
            p99_ms: self.latency.get("all").map_or(0.0, |p| p.p99_ms),
            cpu: self.cpu,
        }
    }
}

/// The knee: the highest step within the caps, and the step after it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KneeReport {
    pub step: usize,
    pub throughput: f64,
    pub p99_ms: f64,
    /// The step after the knee, and why it is past it.
    pub next_step: Option<usize>,
    pub reason: String,
    /// What limited the step after it: the stack's latency or errors, or its database.
    #[serde(default)]
    pub limited_by: Limit,
}

/// A load that posim itself, not the stack, stopped: no knee is the stack's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoppedBy {
    pub step: usize,
    pub limit: Limit,
    pub reason: String,
    pub suggestion: String,
}

/// One threshold, judged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub threshold: String,
    pub met: bool,
    pub actual: String,
}

/// What pgbench sustained on the run's database, and under which durability settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Ceiling {
    pub clients: u32,
    pub seconds: u64,
    pub flows_per_second: f64,
    /// As the server reported them (`SHOW fsync`, `SHOW synchronous_commit`).
    pub fsync: String,
    pub synchronous_commit: String,
}

impl Ceiling {
    /// Whether commits reach the disk before they are acknowledged, as a production database's do.
    pub fn production_durability(&self) -> bool {
        self.fsync == "on" && self.synchronous_commit == "on"
    }

    /// `database ceiling (pgbench, 16 clients, fsync on, synchronous_commit on): 208.0 flows/s`.
    fn line(&self) -> String {
        let durability = match self.production_durability() {
            true => "production durability".to_string(),
            false => "durability NOT production-like: commits may be acknowledged before they reach the disk".into(),
        };
        format!(
            "database ceiling (pgbench, {} clients, {} s, fsync {}, synchronous_commit {}): {:.1} flows/s ({durability})",
            self.clients, self.seconds, self.fsync, self.synchronous_commit, self.flows_per_second
        )
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadSection {
    /// `open` (posim's scheduler) or `closed (goose)`.
    pub model: String,
    /// `i/n` for a shard (`--shard`), `merged n shards` after `posim merge`.
    pub shard: Option<String>,
    pub caps: String,
    /// The caps in numbers: a step above either is past the knee.
    pub p99_max_ms: f64,
    pub error_rate_max: f64,
    pub steps: Vec<StepReport>,
    pub knee: Option<KneeReport>,
    /// Purchases per second the fleet brings at 100% in its busiest hour.
    pub peak_rate: f64,
    /// Knee ÷ peak rate.
    pub headroom: Option<f64>,
    /// Purchases that started and ended.
    pub purchases: u64,
    pub failed: u64,
    /// Purchases offered but never started (no free machine, the in-flight cap).
    pub not_started: u64,
    /// (failed + not started) ÷ offered.
    pub error_rate: f64,
    pub thresholds: Vec<ThresholdResult>,
    /// pgbench running the flow's three write transactions on the run's own database.
    pub database_ceiling: Option<Ceiling>,
    /// Knee throughput ÷ pgbench flows per second.
    pub knee_over_ceiling: Option<f64>,
    /// Why there is no ceiling (skipped, or pgbench failed).
    pub database_ceiling_note: Option<String>,
    /// The load ended on a limit of posim's (its generator, its fleet) or
    /// one it cannot name: no stack knee is reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<StoppedBy>,
}

impl LoadSection {
    /// Sets the ceiling and the knee's ratio to it, or why there is none.
    pub fn set_ceiling(&mut self, ceiling: Result<Ceiling, String>) {
        let ceiling = match ceiling {
            Ok(ceiling) => ceiling,
            Err(note) => return self.database_ceiling_note = Some(note),
        };
        let flows = ceiling.flows_per_second;
        self.knee_over_ceiling = self.knee.as_ref().filter(|_| flows > 0.0).map(|knee| knee.throughput / flows);
        if let Some(knee) = self.knee.as_mut() {
            knee.limited_by = crate::load::limit::on_the_database(knee.limited_by, knee.throughput, flows);
        }
        self.database_ceiling = Some(ceiling);
    }

    /// A load run's verdict: a broken invariant fails; a knee that was
    /// sought (`--find-knee`, a `knee>` threshold) but that posim's own
    /// limit (its generator, its fleet) stopped is harness-limited: posim
    /// measured itself, not the stack; otherwise the thresholds decide.
    pub fn verdict(&self, invariants_held: bool, knee_sought: bool) -> super::Verdict {
        if !invariants_held {
            super::Verdict::Fail
        } else if knee_sought && self.stopped_by.is_some() {
            super::Verdict::HarnessLimited
        } else {
            super::Verdict::of(self.breached().next().is_none())
        }
    }

    pub fn breached(&self) -> impl Iterator<Item = &ThresholdResult> {
        self.thresholds.iter().filter(|t| !t.met)
    }

    /// The progress line of one step (stderr, as the run goes).
    pub fn step_line(step: &StepReport) -> String {
        let p99 = step.latency.get("all").map_or(0.0, |p| p.p99_ms);
        format!(
            "load step {} · target {:.0} · {:.1} purchases/s · p99 {p99:.1} ms · failures {:.2}% · late {} · not started {}",
            step.step,
            step.target,
            step.throughput,
            100.0 * step.error_rate,
            step.late_starts,
            step.not_started
        )
    }

    /// The section in Markdown (also the console's).
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let shard = self.shard.as_ref().map_or(String::new(), |shard| format!("; shard {shard}"));
        let _ = writeln!(out, "## Load ({} model; caps {}{shard})\n", self.model, self.caps);
        let _ = writeln!(
            out,
            "| step | target | purchases/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | failures | late | not started | CPU s posim/rest | limited by |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for step in &self.steps {
            let all = step.latency.get("all").cloned().unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}% | {} | {} | {} | {} |",
                step.step,
                step.target,
                step.throughput,
                all.p50_ms,
                all.p90_ms,
                all.p99_ms,
                all.p999_ms,
                all.max_ms,
                100.0 * step.error_rate,
                step.late_starts,
                step.not_started,
                step.cpu.map_or("n/a".to_string(), |cpu| format!("{:.1}/{:.1}", cpu.posim_s, cpu.others_s)),
                step.limited_by
            );
        }
        match &self.knee {
            Some(knee) => {
                let _ = writeln!(
                    out,
                    "\nknee: step {} at {:.1} purchases/s, p99 {:.1} ms; {} (limited by: {})",
                    knee.step, knee.throughput, knee.p99_ms, knee.reason, knee.limited_by
                );
            }
            None => match &self.stopped_by {
                Some(stopped) => {
                    let _ = writeln!(
                        out,
                        "\nknee: none of the stack's: step {} was limited by the {} ({}); {}",
                        stopped.step, stopped.limit, stopped.reason, stopped.suggestion
                    );
                }
                None => out.push_str("\nknee: none (no step within the caps)\n"),
            },
        }
        let headroom = self.headroom.map_or("n/a".to_string(), |h| format!("{h:.1}×"));
        let _ = writeln!(out, "peak at 100% (busiest hour): {:.2} purchases/s; headroom {headroom}", self.peak_rate);
        let _ = writeln!(
            out,
            "purchases: {} · failed {} · not started {} · failure rate {:.2}% of those offered",
            self.purchases,
            self.failed,
            self.not_started,
            100.0 * self.error_rate
        );
        if let Some(ceiling) = &self.database_ceiling {
            let ratio = self.knee_over_ceiling.map_or("n/a".to_string(), |r| format!("{r:.2}"));
            let _ = writeln!(out, "{} · knee ÷ ceiling {ratio}", ceiling.line());
        }
        if let Some(note) = &self.database_ceiling_note {
            let _ = writeln!(out, "database ceiling: none ({note})");
        }
        for threshold in &self.thresholds {
            let state = if threshold.met { "met" } else { "BREACHED" };
            let _ = writeln!(out, "threshold {}: {state} (actual {})", threshold.threshold, threshold.actual);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{Ceiling, KneeReport, LoadSection};

    fn ceiling(fsync: &str) -> Ceiling {
        Ceiling {
            clients: 16,
            seconds: 10,
            flows_per_second: 200.0,
            fsync: fsync.into(),
            synchronous_commit: "on".into(),
        }
    }

    fn with_knee() -> LoadSection {
        let knee = KneeReport {
            step: 2,
            throughput: 124.0,
            p99_ms: 20.0,
            next_step: Some(3),
            reason: String::new(),
            limited_by: Default::default(),
        };
        LoadSection { knee: Some(knee), ..LoadSection::default() }
    }

    #[test]
    fn the_ceiling_is_shown_with_its_durability_and_the_knee_over_it() {
        let mut section = with_knee();
        section.set_ceiling(Ok(ceiling("on")));
        assert_eq!(section.knee_over_ceiling, Some(0.62));
        let line = "database ceiling (pgbench, 16 clients, 10 s, fsync on, synchronous_commit on): 200.0 flows/s \
                    (production durability) · knee ÷ ceiling 0.62";
        assert!(section.markdown().contains(line), "{}", section.markdown());
    }

    #[test]
    fn durability_that_is_not_production_like_is_said_plainly() {
        let mut section = with_knee();
        section.set_ceiling(Ok(ceiling("off")));
        assert!(section.markdown().contains("fsync off"));
        assert!(section.markdown().contains("durability NOT production-like"));
    }

    #[test]
    fn a_skipped_ceiling_keeps_its_reason_and_no_knee_gives_no_ratio() {
        let mut section = with_knee();
        section.set_ceiling(Err("skipped: the stack was given by URL".into()));
        assert!(section.database_ceiling.is_none() && section.knee_over_ceiling.is_none());
        assert!(section.markdown().contains("database ceiling: none (skipped: the stack was given by URL)"));
        let mut kneeless = LoadSection::default();
        kneeless.set_ceiling(Ok(ceiling("on")));
        assert!(kneeless.database_ceiling.is_some() && kneeless.knee_over_ceiling.is_none());
    }
}
