//! Runbook time in a live run: wall time since the start, multiplied by the
//! time scale (`--time-scale 60`: a runbook minute a second). Histories,
//! holds, TTLs and KPI windows are all in runbook milliseconds.

use std::sync::Mutex;
use std::time::{Duration, Instant};

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

    pub async fn sleep(&self, runbook: Millis) {
        tokio::time::sleep(self.wall(runbook)).await;
    }

    pub async fn sleep_until(&self, at: Millis) {
        tokio::time::sleep_until((self.start + self.wall(at)).into()).await;
    }
}

/// The history of a live run, written by many tasks: each record takes its
/// time under the lock, so the history stays in time order.
pub struct Recorder {
    pub clock: Clock,
    history: Mutex<History>,
}

impl Recorder {
    pub fn new(clock: Clock, history: History) -> Recorder {
        Recorder { clock, history: Mutex::new(history) }
    }

    pub fn record(&self, event: Event) {
        let mut history = self.history.lock().expect("history lock");
        let at = self.clock.now().max(history.records.last().map_or(0, |last| last.at));
        history.push(at, event);
    }

    /// Runs `f` on the history (the controller reads and writes it).
    pub fn with<T>(&self, f: impl FnOnce(&mut History) -> T) -> T {
        f(&mut self.history.lock().expect("history lock"))
    }
}
