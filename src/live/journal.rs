//! What a live run leaves on disk as it goes: every history record appended
//! to `trace.jsonl` as it is recorded (flushed at least every second), and a
//! partial `summary.json` rewritten as the run moves, so that a run killed
//! midway (SIGKILL, OOM, a lost CI runner) still leaves a trace and a
//! summary that parse. The full report replaces the partial summary at the
//! end.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::history::History;
use crate::time::Millis;

/// How often buffered trace lines reach the file at the latest.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The trace file, appended record by record.
pub struct TraceSink {
    out: BufWriter<std::fs::File>,
    /// How many of the history's records are in the file.
    written: usize,
    flushed: Instant,
}

impl TraceSink {
    pub fn create(path: &Path) -> std::io::Result<TraceSink> {
        let file = std::fs::File::create(path)?;
        Ok(TraceSink { out: BufWriter::new(file), written: 0, flushed: Instant::now() })
    }

    /// Appends the records `history` gained since the last call.
    pub fn catch_up(&mut self, history: &History) -> std::io::Result<()> {
        assert!(self.written <= history.records.len(), "a history only grows while it is traced");
        for record in &history.records[self.written..] {
            // A whole line per write: a kill between writes leaves whole lines.
            let mut line = serde_json::to_vec(record)?;
            line.push(b'\n');
            self.out.write_all(&line)?;
        }
        self.written = history.records.len();
        if self.flushed.elapsed() >= FLUSH_EVERY {
            self.out.flush()?;
            self.flushed = Instant::now();
        }
        Ok(())
    }

    pub fn finish(&mut self, history: &History) -> std::io::Result<()> {
        self.catch_up(history)?;
        self.out.flush()
    }
}

/// The summary of a run still under way (or killed while it was).
#[derive(Debug, Serialize)]
pub struct PartialSummary<'a> {
    /// Always false here: the full report sets its own verdict.
    pub complete: bool,
    pub verdict: &'static str,
    pub scenario: &'a str,
    pub seed: u64,
    /// Runbook time reached, of the run's horizon plus drain.
    pub reached_ms: Millis,
    pub end_ms: Millis,
    pub phase: usize,
    pub deploys: usize,
    pub decisions: usize,
    pub records: usize,
    /// Where the records so far are.
    pub trace: Option<PathBuf>,
}

/// Writes `summary.json` whole or not at all (a temporary file renamed into place).
pub fn write_partial(dir: &Path, summary: &PartialSummary) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(summary).map_err(std::io::Error::other)?;
    let (path, partial) = (dir.join("summary.json"), dir.join("summary.json.partial"));
    std::fs::write(&partial, json + "\n")?;
    std::fs::rename(&partial, &path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Event;

    #[test]
    fn records_reach_the_file_once_each_and_in_order() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("trace.jsonl");
        let mut sink = TraceSink::create(&path).expect("the trace file");
        let mut history = History::default();
        history.push(1, Event::Swept { expired: 1, compensated: 0, backlog: 2 });
        sink.catch_up(&history).expect("written");
        history.push(5, Event::Swept { expired: 0, compensated: 1, backlog: 1 });
        sink.finish(&history).expect("written");
        let text = std::fs::read_to_string(&path).expect("readable");
        let mut whole = Vec::new();
        history.write_jsonl(&mut whole).expect("serialised");
        assert_eq!(text, String::from_utf8(whole).expect("UTF-8"), "the streamed trace is the trace");
    }
}
