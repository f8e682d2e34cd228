//! posim watching itself during a live run: a ticker measures how late the
//! runtime wakes a timer (its scheduling delay, which is what CPU starvation
//! does to posim), the kernel says how long posim's threads waited for a
//! CPU, and each request asks how much posim held it up. What is measured
//! here ends in [`crate::harness::HarnessFigures`] and in the history's
//! `HarnessLag` records, so that a failure posim caused is never the stack's.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::harness::HarnessFigures;

/// How often the ticker samples the runtime's scheduling delay.
const TICK: Duration = Duration::from_millis(5);
/// Stalls shorter than this are noise and not kept for per-request look-ups.
const STALL_KEPT: Duration = Duration::from_millis(1);
/// The stalls kept for look-ups (the newest; the oldest go first).
const STALLS_KEPT: usize = 4096;

/// The test hook: `POSIM_TEST_SEND_DELAY=MS` (or `MS@FROM-TO`, runbook
/// durations such as `60@30m-2h`) holds every terminal request up by MS wall
/// milliseconds in posim's own sending task, as a starved posim would.
pub const TEST_SEND_DELAY_VAR: &str = "POSIM_TEST_SEND_DELAY";

/// A delay posim puts on its own sends (the test hook), in a runbook range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SendDelay {
    pub wall: Duration,
    pub from_ms: u64,
    pub to_ms: u64,
}

impl SendDelay {
    /// Parses the hook's value (see [`TEST_SEND_DELAY_VAR`]).
    pub fn parse(text: &str) -> Result<SendDelay, String> {
        let bad =
            |why: &str| format!("{TEST_SEND_DELAY_VAR}={text:?}: {why} (expected MS or MS@FROM-TO, e.g. 60@30m-2h)");
        let (ms, range) = text.split_once('@').map_or((text, None), |(ms, range)| (ms, Some(range)));
        let ms: u64 = ms.trim().parse().map_err(|_| bad("the delay is not a whole number of milliseconds"))?;
        let (from_ms, to_ms) = match range {
            None => (0, u64::MAX),
            Some(range) => {
                let (from, to) = range.split_once('-').ok_or_else(|| bad("the range has no `-`"))?;
                let parse = |d: &str| humantime::parse_duration(d.trim()).map_err(|e| bad(&e.to_string()));
                let (from, to) = (parse(from)?, parse(to)?);
                let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                (ms(from), ms(to))
            }
        };
        if from_ms > to_ms {
            return Err(bad("the range ends before it starts"));
        }
        Ok(SendDelay { wall: Duration::from_millis(ms), from_ms, to_ms })
    }

    /// The hook from the environment, if set.
    pub fn from_env() -> Result<Option<SendDelay>, String> {
        match std::env::var(TEST_SEND_DELAY_VAR) {
            Ok(text) => SendDelay::parse(&text).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(error) => Err(format!("{TEST_SEND_DELAY_VAR}: {error}")),
        }
    }

    /// The delay at runbook time `now_ms`, if any.
    pub fn at(&self, now_ms: u64) -> Option<Duration> {
        (self.from_ms..=self.to_ms).contains(&now_ms).then_some(self.wall)
    }
}

/// The run's own lag, shared by every task.
pub struct LagWatch {
    started: Instant,
    cpu_wait_at_start: Option<Duration>,
    state: Mutex<Watched>,
}

struct Watched {
    /// Each stall's end and length, newest last.
    stalls: VecDeque<(Instant, Duration)>,
    /// Every sample's scheduling delay, in microseconds.
    delays_us: Histogram<u64>,
    lagged_requests: u64,
    max_request_lag_ms: u64,
}

impl Default for LagWatch {
    fn default() -> Self {
        LagWatch::new()
    }
}

impl LagWatch {
    pub fn new() -> LagWatch {
        let delays_us = Histogram::new(3).expect("3 significant figures is a valid precision");
        let state = Watched { stalls: VecDeque::new(), delays_us, lagged_requests: 0, max_request_lag_ms: 0 };
        LagWatch { started: Instant::now(), cpu_wait_at_start: cpu_wait(), state: Mutex::new(state) }
    }

    /// Samples the runtime's scheduling delay until the task is aborted.
    pub async fn tick(&self) {
        loop {
            let due = Instant::now() + TICK;
            tokio::time::sleep_until(due.into()).await;
            let woke = Instant::now();
            self.note_stall(woke, woke.saturating_duration_since(due));
        }
    }

    fn note_stall(&self, end: Instant, stall: Duration) {
        let mut state = self.state.lock().expect("lag lock");
        state.delays_us.saturating_record(u64::try_from(stall.as_micros()).unwrap_or(u64::MAX));
        if stall >= STALL_KEPT {
            if state.stalls.len() == STALLS_KEPT {
                state.stalls.pop_front();
            }
            state.stalls.push_back((end, stall));
        }
    }

    /// The longest stall of the runtime that overlapped `[from, to]`.
    pub fn worst_stall(&self, from: Instant, to: Instant) -> Duration {
        let state = self.state.lock().expect("lag lock");
        let overlaps =
            |(end, stall): &&(Instant, Duration)| *end >= from && end.checked_sub(*stall).is_none_or(|s| s <= to);
        state
            .stalls
            .iter()
            .rev()
            .take_while(|(end, _)| *end >= from)
            .filter(overlaps)
            .map(|s| s.1)
            .max()
            .unwrap_or_default()
    }

    /// A request posim held up beyond the bound, by `lag_ms` runbook ms.
    pub fn note_lagged(&self, lag_ms: u64) {
        let mut state = self.state.lock().expect("lag lock");
        state.lagged_requests += 1;
        state.max_request_lag_ms = state.max_request_lag_ms.max(lag_ms);
    }

    /// What was measured, for the report.
    pub fn figures(&self, time_scale: f64) -> HarnessFigures {
        let state = self.state.lock().expect("lag lock");
        let ms = |us: u64| us as f64 / 1000.0;
        let waited = match (cpu_wait(), self.cpu_wait_at_start) {
            (Some(now), Some(start)) => now.saturating_sub(start),
            _ => Duration::ZERO,
        };
        HarnessFigures {
            scheduling_delay_p50_ms: ms(state.delays_us.value_at_quantile(0.5)),
            scheduling_delay_p99_ms: ms(state.delays_us.value_at_quantile(0.99)),
            scheduling_delay_max_ms: ms(state.delays_us.max()),
            samples: state.delays_us.len(),
            cpu_wait_s: waited.as_secs_f64(),
            wall_s: self.started.elapsed().as_secs_f64(),
            lagged_requests: state.lagged_requests,
            max_request_lag_ms: state.max_request_lag_ms,
            time_scale,
        }
    }
}

/// How long this process's threads have waited on a run queue, summed
/// (`/proc/self/task/*/schedstat`, second field); None where unreadable.
fn cpu_wait() -> Option<Duration> {
    let mut total_ns: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        let waited = text.split_whitespace().nth(1).and_then(|field| field.parse::<u64>().ok());
        total_ns = total_ns.saturating_add(waited.unwrap_or(0));
    }
    Some(Duration::from_nanos(total_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_parses_a_delay_and_a_range_and_refuses_nonsense() {
        let always = SendDelay::parse("60").expect("a plain delay");
        assert_eq!((always.wall, always.at(5)), (Duration::from_millis(60), Some(Duration::from_millis(60))));
        let ranged = SendDelay::parse("40@30m-1h").expect("a ranged delay");
        assert_eq!((ranged.at(29 * 60_000), ranged.at(30 * 60_000)), (None, Some(Duration::from_millis(40))));
        assert_eq!(ranged.at(3_600_001), None);
        for bad in ["", "x", "5@1h", "5@2h-1h", "5@1h-soon"] {
            assert!(SendDelay::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stall_counts_for_the_requests_it_overlapped_only() {
        let watch = LagWatch::new();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        watch.note_stall(at(100), Duration::from_millis(30)); // stalled 70..100
        assert_eq!(watch.worst_stall(at(0), at(60)), Duration::ZERO);
        assert_eq!(watch.worst_stall(at(90), at(200)), Duration::from_millis(30));
        assert_eq!(watch.worst_stall(at(0), at(80)), Duration::from_millis(30));
        assert_eq!(watch.worst_stall(at(101), at(200)), Duration::ZERO);
        assert_eq!(watch.figures(1.0).samples, 1);
    }
}
