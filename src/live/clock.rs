//! Runbook time in a live run: wall time since the start, multiplied by the
//! time scale (`--time-scale 60`: a runbook minute a second). Histories,
//! holds, TTLs and KPI windows are all in runbook milliseconds.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::journal::TraceSink;
use crate::history::{Event, History};
use crate::time::Millis;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
    scale: f64,
}

impl Clock {
    pub fn new(scale: f64) -> Clock {
        assert!(scale > 0.0, "the time scale is positive");
        Clock { start: Instant::now(), scale }
    }

    /// Runbook milliseconds since the start.
    pub fn now(&self) -> Millis {
        (self.start.elapsed().as_secs_f64() * 1000.0 * self.scale) as Millis
    }

    /// A runbook duration as wall time.
    pub fn wall(&self, runbook: Millis) -> Duration {
        Duration::from_secs_f64(runbook as f64 / 1000.0 / self.scale)
    }

    /// A wall duration as runbook time.
    pub fn runbook(&self, wall: Duration) -> Millis {
        (wall.as_secs_f64() * 1000.0 * self.scale) as Millis
    }

    pub async fn sleep(&self, runbook: Millis) {
        tokio::time::sleep(self.wall(runbook)).await;
    }

    pub async fn sleep_until(&self, at: Millis) {
        tokio::time::sleep_until((self.start + self.wall(at)).into()).await;
    }
}

/// The history of a live run, written by many tasks: each record takes its
/// time under the lock, so the history stays in time order. With a trace
/// sink, every record is appended to the trace file as it is made.
pub struct Recorder {
    pub clock: Clock,
    state: Mutex<Recorded>,
}

struct Recorded {
    history: History,
    trace: Option<TraceSink>,
}

impl Recorded {
    fn stream(&mut self) {
        let Some(trace) = self.trace.as_mut() else { return };
        if let Err(error) = trace.catch_up(&self.history) {
            // The run goes on: the final report still holds every record.
            eprintln!("posim live: cannot append to the trace file ({error}); it stops here");
            self.trace = None;
        }
    }
}

impl Recorder {
    pub fn new(clock: Clock, history: History, trace: Option<TraceSink>) -> Recorder {
        Recorder { clock, state: Mutex::new(Recorded { history, trace }) }
    }

    pub fn record(&self, event: Event) {
        let mut state = self.state.lock().expect("history lock");
        let at = self.clock.now().max(state.history.records.last().map_or(0, |last| last.at));
        state.history.push(at, event);
        state.stream();
    }

    /// Runs `f` on the history (the controller reads and writes it).
    pub fn with<T>(&self, f: impl FnOnce(&mut History) -> T) -> T {
        let mut state = self.state.lock().expect("history lock");
        let result = f(&mut state.history);
        state.stream();
        result
    }

    /// Flushes the trace and hands the history over; whether the trace file holds all of it.
    pub fn finish(&self) -> (History, bool) {
        let mut state = self.state.lock().expect("history lock");
        let streamed = match state.trace.take() {
            Some(mut trace) => trace.finish(&state.history).is_ok(),
            None => false,
        };
        (std::mem::take(&mut state.history), streamed)
    }
}
