//! Progress of a long run (a simulation, a live run, a suite, a swarm) on
//! stderr, never stdout: a bar with an ETA when stderr is a terminal, plain
//! lines at most every ten seconds otherwise (CI logs), e.g.
//! `live rollout.toml: 02:15:00 of 06:30:00 runbook time (35%), ETA 1m 20s`.
//! A run may have parts (a suite's members, in parallel): the progress is
//! their sum, each part set from its own thread.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain line is printed at the most.
pub const LINE_EVERY: Duration = Duration::from_secs(10);

/// What is counted: milliseconds of runbook (or simulated) time, or things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Milliseconds, shown as `HH:MM:SS of HH:MM:SS <name>` (`runbook time`).
    Time(&'static str),
    /// Things, shown as `12 of 100 <name>` (`seeds`).
    Count(&'static str),
}

impl Measure {
    fn amount(self, done: u64, total: u64) -> String {
        match self {
            Measure::Time(name) => format!("{} of {} {name}", clock(done), clock(total)),
            Measure::Count(name) => format!("{done} of {total} {name}"),
        }
    }
}

/// `HH:MM:SS` of a millisecond count.
fn clock(ms: u64) -> String {
    let seconds = ms / 1000;
    format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// A wall duration as people say it: `45s`, `1m 20s`, `2h 5m`.
pub fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        _ => format!("{}h {}m", seconds / 3600, seconds / 60 % 60),
    }
}

/// The plain-line reporter, fed the wall time since the start (so that it
/// can be tested without a clock).
#[derive(Debug)]
pub struct Lines {
    label: String,
    measure: Measure,
    total: u64,
    every: Duration,
    last: Duration,
}

impl Lines {
    pub fn new(label: &str, measure: Measure, total: u64, every: Duration) -> Lines {
        Lines { label: label.to_string(), measure, total, every, last: Duration::ZERO }
    }

    /// The line due when `done` is reached `elapsed` after the start: one
    /// once `every` has passed since the last line (or the start), else none.
    pub fn line(&mut self, done: u64, elapsed: Duration, note: &str) -> Option<String> {
        if elapsed < self.last + self.every {
            return None;
        }
        self.last = elapsed;
        let done = done.min(self.total);
        let percent = done.saturating_mul(100).checked_div(self.total).unwrap_or(100);
        let eta = match done {
            0 => "unknown".to_string(),
            _ => human(elapsed.mul_f64((self.total - done) as f64 / done as f64)),
        };
        let note = if note.is_empty() { String::new() } else { format!(", {note}") };
        Some(format!("{}: {} ({percent}%), ETA {eta}{note}", self.label, self.measure.amount(done, self.total)))
    }
}

enum Output {
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
}

/// A run's progress on stderr, shared by the threads of its parts.
pub struct Progress {
    output: Output,
    started: Instant,
    /// Each part's total and how far it is.
    parts: Vec<(u64, AtomicU64)>,
    note: Mutex<String>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("parts", &self.parts).finish_non_exhaustive()
    }
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise; `totals`: each part's.
    pub fn new(label: &str, measure: Measure, totals: &[u64]) -> Progress {
        let total = totals.iter().fold(0u64, |sum, part| sum.saturating_add(*part));
        let output = if std::io::stderr().is_terminal() {
            Output::Bar(bar(label, total))
        } else {
            Output::Lines(Mutex::new(Lines::new(label, measure, total, LINE_EVERY)))
        };
        let parts = totals.iter().map(|total| (*total, AtomicU64::new(0))).collect();
        Progress { output, started: Instant::now(), parts, note: Mutex::new(String::new()) }
    }

    /// Part `part` has reached `done` (of its own total).
    pub fn set(&self, part: usize, done: u64) {
        if let Some((total, at)) = self.parts.get(part) {
            at.store(done.min(*total), Ordering::Relaxed);
        }
        let sum = self.parts.iter().fold(0u64, |sum, (_, at)| sum.saturating_add(at.load(Ordering::Relaxed)));
        match &self.output {
            Output::Bar(bar) => bar.set_position(sum),
            Output::Lines(lines) => {
                let note = self.note.lock().map(|note| note.clone()).unwrap_or_default();
                let line = lines.lock().ok().and_then(|mut lines| lines.line(sum, self.started.elapsed(), &note));
                if let Some(line) = line {
                    eprintln!("{line}");
                }
            }
        }
    }

    /// Part `part` is over, however far it got.
    pub fn complete(&self, part: usize) {
        let total = self.parts.get(part).map_or(0, |(total, _)| *total);
        self.set(part, total);
    }

    /// What the lines and the bar say after the amount (`3 failed`).
    pub fn note(&self, note: String) {
        if let Output::Bar(bar) = &self.output {
            bar.set_message(note.clone());
        }
        if let Ok(mut kept) = self.note.lock() {
            *kept = note;
        }
    }

    /// A line for stdout that stays (printed above the bar on a terminal).
    pub fn println(&self, line: &str) {
        match &self.output {
            Output::Bar(bar) => bar.suspend(|| println!("{line}")),
            Output::Lines(_) => println!("{line}"),
        }
    }

    /// Clears the bar (plain lines leave nothing to clear).
    pub fn finish(&self) {
        if let Output::Bar(bar) = &self.output {
            bar.finish_and_clear();
        }
    }
}

fn bar(label: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template = format!("{label} {{bar:40}} {{percent}}% · ETA {{eta}} · {{msg}} ({{elapsed}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_line_every_ten_seconds_with_the_runbook_time_and_an_eta() {
        let hours = 3_600_000;
        let mut lines =
            Lines::new("live rollout.toml", Measure::Time("runbook time"), 6 * hours + hours / 2, LINE_EVERY);
        assert_eq!(lines.line(hours / 2, SECOND * 4, ""), None, "not before ten seconds");
        let first = lines.line(2 * hours + hours / 4, SECOND * 45, "");
        assert_eq!(first.as_deref(), Some("live rollout.toml: 02:15:00 of 06:30:00 runbook time (34%), ETA 1m 25s"));
        assert_eq!(lines.line(3 * hours, SECOND * 54, ""), None, "ten seconds after the last line");
        let second = lines.line(3 * hours, SECOND * 55, "");
        assert_eq!(second.as_deref(), Some("live rollout.toml: 03:00:00 of 06:30:00 runbook time (46%), ETA 1m 4s"));
    }

    #[test]
    fn counts_notes_and_the_ends_of_the_range() {
        let mut lines = Lines::new("swarm", Measure::Count("seeds"), 1000, LINE_EVERY);
        assert_eq!(lines.line(0, SECOND * 10, "").as_deref(), Some("swarm: 0 of 1000 seeds (0%), ETA unknown"));
        let later = lines.line(250, SECOND * 7200, "3 failed");
        assert_eq!(later.as_deref(), Some("swarm: 250 of 1000 seeds (25%), ETA 6h 0m, 3 failed"));
        let past = lines.line(2000, SECOND * 7300, "");
        assert_eq!(past.as_deref(), Some("swarm: 1000 of 1000 seeds (100%), ETA 0s"), "never past the total");
        let mut empty = Lines::new("suite", Measure::Count("scenarios"), 0, LINE_EVERY);
        assert_eq!(empty.line(0, SECOND * 10, "").as_deref(), Some("suite: 0 of 0 scenarios (100%), ETA unknown"));
    }

    #[test]
    fn parts_add_up_and_never_pass_their_own_totals() {
        let progress = Progress::new("suite", Measure::Count("things"), &[10, 20]);
        progress.set(0, 50);
        progress.set(1, 5);
        progress.set(7, 5); // no such part: nothing moves
        let sum: u64 = progress.parts.iter().map(|(_, at)| at.load(Ordering::Relaxed)).sum();
        assert_eq!(sum, 15);
        progress.complete(1);
        let sum: u64 = progress.parts.iter().map(|(_, at)| at.load(Ordering::Relaxed)).sum();
        assert_eq!(sum, 30);
        progress.finish();
    }
}
