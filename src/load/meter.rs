//! The load's numbers as they come: per step, stack request latency per
//! endpoint in hdrhistograms (microseconds), whole purchases, outcomes and
//! errors by kind. The open model's lateness is added to a purchase's first
//! request (coordinated-omission correction: measured from the planned start).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::contract::{Request, Text};
use crate::live::shared::Observe;
use crate::report::load::{Percentiles, StepReport};

/// Up to an hour, three significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// A step's counts: what its report is made of, what a shard writes for
/// `posim merge` beside its histograms, and what merges by summing.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tallies {
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Succeeded while this step was the current one (throughput).
    pub succeeded_during: u64,
    pub late_starts: u64,
    pub not_started: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Tallies {
    /// Adds `other`'s counts (another shard's same step).
    pub fn add(&mut self, other: &Tallies) {
        let sums = [
            (&mut self.started, other.started),
            (&mut self.succeeded, other.succeeded),
            (&mut self.failed, other.failed),
            (&mut self.succeeded_during, other.succeeded_during),
            (&mut self.late_starts, other.late_starts),
            (&mut self.not_started, other.not_started),
        ];
        for (ours, theirs) in sums {
            *ours = ours.saturating_add(theirs);
        }
        for (kind, count) in &other.errors {
            let ours = self.errors.entry(kind.clone()).or_default();
            *ours = ours.saturating_add(*count);
        }
    }
}

/// A step's raw numbers: its histograms (which add exactly) and its tallies.
#[derive(Clone, Default)]
pub struct StepCounts {
    pub latency: BTreeMap<String, Histogram<u64>>,
    pub purchase: Option<Histogram<u64>>,
    pub tallies: Tallies,
}

impl StepCounts {
    fn record(&mut self, name: &str, micros: u64) {
        let histogram = self.latency.entry(name.to_string()).or_insert_with(histogram);
        let _ = histogram.record(micros.max(1)); // saturates above an hour: never in a bounded run
    }

    /// Adds `other`'s numbers (another shard's same step).
    pub fn add(&mut self, other: &StepCounts) -> Result<(), String> {
        let refused = |e: hdrhistogram::AdditionError| format!("histograms of other bounds: {e:?}");
        for (name, theirs) in &other.latency {
            self.latency.entry(name.clone()).or_insert_with(histogram).add(theirs).map_err(refused)?;
        }
        if let Some(theirs) = &other.purchase {
            self.purchase.get_or_insert_with(histogram).add(theirs).map_err(refused)?;
        }
        self.tallies.add(&other.tallies);
        Ok(())
    }

    /// The step's report; `seconds`: how long it offered load.
    pub fn report(&self, step: usize, target: f64, seconds: f64) -> StepReport {
        let mut all = histogram();
        for histogram in self.latency.values() {
            let _ = all.add(histogram);
        }
        let mut latency: BTreeMap<String, Percentiles> =
            self.latency.iter().map(|(name, h)| (name.clone(), percentiles(h))).collect();
        latency.insert("all".into(), percentiles(&all));
        // A purchase offered but never started (no free machine, the
        // in-flight cap) failed its customer as much as one that broke.
        let t = &self.tallies;
        let offered = t.succeeded + t.failed + t.not_started;
        let failures = t.failed + t.not_started;
        StepReport {
            step,
            target,
            seconds,
            started: t.started,
            succeeded: t.succeeded,
            failed: t.failed,
            late_starts: t.late_starts,
            not_started: t.not_started,
            throughput: if seconds > 0.0 { t.succeeded_during as f64 / seconds } else { 0.0 },
            error_rate: if offered > 0 { failures as f64 / offered as f64 } else { 0.0 },
            latency,
            purchase: self.purchase.as_ref().map(percentiles).unwrap_or_default(),
            errors: t.errors.clone(),
            limited_by: crate::load::limit::Limit::WithinCaps, // set once the steps around it are known
            cpu: None,                                         // measured by the load's shell
        }
    }
}

/// What a purchase's end was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Succeeded,
    Failed,
}

/// Counts of every step of a run, shared by every task.
#[derive(Default)]
pub struct Meter {
    current: AtomicUsize,
    /// Between steps: purchases still ending do not count as throughput.
    draining: std::sync::atomic::AtomicBool,
    /// After the last step: the settle's sweeps and the audit are not load.
    closed: std::sync::atomic::AtomicBool,
    steps: Mutex<Vec<StepCounts>>,
    /// Per purchase, by its idempotency key: the step it started in and how late.
    pending: Mutex<HashMap<Text, (usize, Duration)>>,
}

impl Meter {
    /// Step `index` begins (steps are begun in order).
    pub fn begin_step(&self, index: usize) {
        let mut steps = self.steps.lock().expect("meter lock");
        while steps.len() <= index {
            steps.push(StepCounts::default());
        }
        self.current.store(index, Ordering::SeqCst);
        self.draining.store(false, Ordering::SeqCst);
    }

    /// The current step stops offering load; its stragglers end.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// The load is over: nothing more is counted.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub fn current(&self) -> usize {
        self.current.load(Ordering::SeqCst)
    }

    fn with<T>(&self, step: usize, f: impl FnOnce(&mut StepCounts) -> T) -> T {
        let mut steps = self.steps.lock().expect("meter lock");
        while steps.len() <= step {
            steps.push(StepCounts::default());
        }
        f(&mut steps[step])
    }

    /// A purchase of `step` starts, `late` after its planned time.
    pub fn started(&self, step: usize, key: &Text, late: Duration) {
        self.pending.lock().expect("meter lock").insert(key.clone(), (step, late));
        self.with(step, |s| {
            s.tallies.started += 1;
            if late > Duration::from_millis(5) {
                s.tallies.late_starts += 1;
            }
        });
    }

    /// A purchase of `step` could not start (`why`: no free machine, in-flight cap).
    pub fn not_started(&self, step: usize, why: &str) {
        self.with(step, |s| {
            s.tallies.not_started += 1;
            *s.tallies.errors.entry(format!("not started: {why}")).or_default() += 1;
        });
    }

    /// A purchase of `step` ended after `took` (from its planned start).
    pub fn ended(&self, step: usize, key: &Text, took: Duration, ended: Ended, outcome: &str) {
        self.pending.lock().expect("meter lock").remove(key);
        let during = self.current() == step && !self.draining.load(Ordering::SeqCst);
        self.with(step, |s| {
            s.purchase.get_or_insert_with(histogram).record(micros(took).max(1)).ok();
            match ended {
                Ended::Succeeded => {
                    s.tallies.succeeded += 1;
                    s.tallies.succeeded_during += u64::from(during);
                }
                Ended::Failed => {
                    s.tallies.failed += 1;
                    *s.tallies.errors.entry(format!("purchase {outcome}")).or_default() += 1;
                }
            }
        });
    }

    /// The step's numbers; `seconds`: how long it offered load.
    pub fn report(&self, step: usize, target: f64, seconds: f64) -> StepReport {
        self.with(step, |s| s.report(step, target, seconds))
    }

    /// The step's raw numbers (written for `posim merge`).
    pub fn counts(&self, step: usize) -> StepCounts {
        self.with(step, |s| s.clone())
    }
}

impl Observe for Meter {
    fn answered(&self, request: &Request, elapsed: Duration, error: Option<String>) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        // The first authorize of a purchase carries its lateness (once).
        let (step, late) = match request {
            Request::Authorize(body) => {
                let mut pending = self.pending.lock().expect("meter lock");
                match pending.get_mut(&body.idempotency_key) {
                    Some((step, late)) => (*step, std::mem::take(late)),
                    None => (self.current(), Duration::ZERO),
                }
            }
            _ => (self.current(), Duration::ZERO),
        };
        let endpoint = request.endpoint().to_string();
        self.with(step, |s| {
            s.record(&endpoint, micros(elapsed + late));
            if let Some(error) = error {
                *s.tallies.errors.entry(format!("{endpoint}: {error}")).or_default() += 1;
            }
        });
    }
}

pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

pub(crate) fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    let ms = |micros: u64| micros as f64 / 1000.0;
    Percentiles {
        count: histogram.len(),
        p50_ms: ms(histogram.value_at_quantile(0.5)),
        p90_ms: ms(histogram.value_at_quantile(0.9)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        p999_ms: ms(histogram.value_at_quantile(0.999)),
        max_ms: ms(histogram.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_is_added_to_the_first_authorize_only_and_steps_are_apart() {
        let meter = Meter::default();
        meter.begin_step(0);
        let key: Text = "k-1".into();
        meter.started(0, &key, Duration::from_millis(40));
        let authorize = Request::Authorize(crate::contract::AuthorizeRequest {
            condominio_id: "c".into(),
            machine_id: "m".into(),
            terminal_id: "t".into(),
            amount_cents: 100,
            idempotency_key: key.clone(),
        });
        meter.begin_step(1);
        meter.answered(&authorize, Duration::from_millis(10), None);
        meter.answered(&authorize, Duration::from_millis(10), Some("conflict".into()));
        meter.ended(0, &key, Duration::from_millis(80), Ended::Succeeded, "washed");
        let first = meter.report(0, 5.0, 1.0);
        let p = &first.latency["authorize"];
        assert_eq!(p.count, 2);
        assert!((49.0..51.0).contains(&p.max_ms), "{p:?}");
        assert!((9.0..11.0).contains(&p.p50_ms), "{p:?}");
        assert_eq!(first.errors.get("authorize: conflict"), Some(&1));
        assert_eq!((first.succeeded, first.throughput), (1, 0.0), "ended during step 1");
        assert_eq!(meter.report(1, 10.0, 1.0).latency["all"].count, 0);
    }
}
