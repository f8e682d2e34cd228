//! A swarm's progress: on a terminal, a bar with seeds/s and the failures so
//! far; elsewhere (CI logs) a plain line every few seconds or every tenth of
//! the seeds, whichever comes first.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain line is printed at the most, when no tenth is reached.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub enum Progress {
    Bar(ProgressBar),
    Lines { total: u64, started: Instant, last: Instant, next_tenth: u64 },
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new(total: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            let now = Instant::now();
            return Progress::Lines { total, started: now, last: now, next_tenth: 1 };
        }
        let bar = ProgressBar::new(total);
        let template = "{bar:40} {pos}/{len} seeds · {per_sec} · {msg} ({elapsed})";
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_message("0 failed");
        Progress::Bar(bar)
    }

    /// `done` seeds have run, `failed` of them failed.
    pub fn update(&mut self, done: u64, failed: usize) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(done);
                bar.set_message(format!("{failed} failed"));
            }
            Progress::Lines { total, started, last, next_tenth } => {
                let tenth_reached = done * 10 >= *next_tenth * *total;
                if !(tenth_reached || last.elapsed() >= LINE_EVERY) || done == *total {
                    return;
                }
                while done * 10 >= *next_tenth * *total {
                    *next_tenth += 1;
                }
                *last = Instant::now();
                let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
                let percent = done * 100 / (*total).max(1);
                eprintln!("swarm: {done}/{total} seeds ({percent}%), {rate:.2} seeds/s, {failed} failed");
            }
        }
    }

    /// A line that stays (above the bar, on a terminal).
    pub fn println(&self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.println(line),
            Progress::Lines { .. } => println!("{line}"),
        }
    }

    pub fn finish(self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
