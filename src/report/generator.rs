//! `posim generator`'s report: posim's generator and wrk side by side on
//! the same endpoint — each one's sustained rate and latency, and the ratio
//! posim ÷ wrk against the aim — as `generator.json`, `generator.md` and
//! console lines. Plain data, filled by `load::generator`.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The aim: posim's generator sustains at least 0.8 of wrk's rate.
pub const RATIO_AIM: f64 = 0.8;

/// One generator's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratorLine {
    pub generator: String,
    /// Threads it ran on (posim: one current-thread runtime each; wrk: `-t`).
    pub threads: u32,
    /// Answers counted: posim counts 200s only; wrk counts every response.
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Non-200 answers and transport errors (posim); non-2xx and socket errors (wrk).
    pub errors: u64,
}

/// Both runs, the ratio, and what they ran against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratorReport {
    pub endpoint: String,
    pub connections: u32,
    /// Asked of each generator.
    pub duration_seconds: u64,
    /// Cores of the machine, shared by both generators and the stack.
    pub cores: usize,
    pub posim: GeneratorLine,
    pub wrk: GeneratorLine,
    /// posim's rate ÷ wrk's.
    pub ratio: f64,
    pub aim: f64,
    pub aim_met: bool,
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("no ratio: wrk sustained {0} requests/s")]
pub struct NoRatio(pub f64);

impl GeneratorReport {
    /// The report, or no ratio when wrk answered nothing to compare with.
    pub fn new(
        (endpoint, connections, duration_seconds): (String, u32, u64),
        cores: usize,
        posim: GeneratorLine,
        wrk: GeneratorLine,
    ) -> Result<GeneratorReport, NoRatio> {
        let ratio =
            ratio(posim.requests_per_second, wrk.requests_per_second).ok_or(NoRatio(wrk.requests_per_second))?;
        let aim_met = ratio >= RATIO_AIM;
        Ok(GeneratorReport {
            endpoint,
            connections,
            duration_seconds,
            cores,
            posim,
            wrk,
            ratio,
            aim: RATIO_AIM,
            aim_met,
        })
    }

    /// The console's lines: one per generator, then the ratio.
    pub fn console(&self) -> String {
        let mut text = String::new();
        for line in [&self.posim, &self.wrk] {
            let _ = writeln!(
                text,
                "{:<8} {:>10.0} requests/s  p50 {:.2} ms  p99 {:.2} ms  ({} answers in {:.2} s, {} errors)",
                line.generator,
                line.requests_per_second,
                line.p50_ms,
                line.p99_ms,
                line.requests,
                line.seconds,
                line.errors
            );
        }
        let _ = writeln!(text, "ratio posim ÷ wrk: {:.3} ({} the aim of {})", self.ratio, self.verb(), self.aim);
        text
    }

    fn verb(&self) -> &'static str {
        if self.aim_met { "meets" } else { "below" }
    }

    /// `generator.md`.
    pub fn markdown(&self) -> String {
        let mut text = String::from("# Generator efficiency: posim vs wrk\n\n");
        let _ = writeln!(
            text,
            "`{}`, {} connections, {} s each, one after the other, on one reference-stack replica; \
             {} cores shared by the stack and the generator. posim: the live engine's HTTP client \
             (`live::http_client`), one current-thread runtime per thread.\n",
            self.endpoint, self.connections, self.duration_seconds, self.cores
        );
        text.push_str("| generator | threads | requests/s | p50 ms | p99 ms | max ms | answers | seconds | errors |\n");
        text.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for line in [&self.posim, &self.wrk] {
            let _ = writeln!(
                text,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {} |",
                line.generator,
                line.threads,
                line.requests_per_second,
                line.p50_ms,
                line.p99_ms,
                line.max_ms,
                line.requests,
                line.seconds,
                line.errors
            );
        }
        let _ = writeln!(text, "\n**Ratio posim ÷ wrk: {:.3}** — {} the aim of {}.", self.ratio, self.verb(), self.aim);
        text
    }

    /// Writes `generator.json` and `generator.md` into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("generator.json"), json + "\n")?;
        std::fs::write(dir.join("generator.md"), self.markdown())
    }
}

/// posim's rate ÷ wrk's; none unless wrk's is a positive number.
pub fn ratio(posim: f64, wrk: f64) -> Option<f64> {
    (wrk.is_finite() && wrk > 0.0 && posim.is_finite()).then(|| posim / wrk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(generator: &str, requests_per_second: f64) -> GeneratorLine {
        GeneratorLine {
            generator: generator.into(),
            threads: 2,
            requests: (requests_per_second * 2.0) as u64,
            seconds: 2.0,
            requests_per_second,
            p50_ms: 0.5,
            p99_ms: 2.5,
            max_ms: 9.0,
            errors: 0,
        }
    }

    fn report(posim: f64, wrk: f64) -> Result<GeneratorReport, NoRatio> {
        GeneratorReport::new(("GET /health".into(), 16, 2), 2, line("posim", posim), line("wrk", wrk))
    }

    #[test]
    fn the_ratio_is_posim_over_wrk_and_judged_against_the_aim() {
        let below = report(30_000.0, 50_000.0).expect("a ratio");
        assert_eq!(below.ratio, 0.6);
        assert!(!below.aim_met);
        let met = report(40_000.0, 50_000.0).expect("a ratio");
        assert_eq!((met.ratio, met.aim_met), (0.8, true));
        assert!(met.console().contains("ratio posim ÷ wrk: 0.800 (meets the aim of 0.8)"), "{}", met.console());
        assert!(below.markdown().contains("**Ratio posim ÷ wrk: 0.600** — below the aim of 0.8."));
    }

    #[test]
    fn no_ratio_without_a_wrk_rate() {
        assert_eq!(report(1.0, 0.0), Err(NoRatio(0.0)));
        assert_eq!(ratio(1.0, f64::NAN), None);
    }

    #[test]
    fn the_report_round_trips_through_generator_json() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let written = report(45_000.0, 50_000.0).expect("a ratio");
        written.write(dir.path()).expect("written");
        let text = std::fs::read_to_string(dir.path().join("generator.json")).expect("generator.json");
        let read: GeneratorReport = serde_json::from_str(&text).expect("parses");
        assert_eq!(read, written);
        let markdown = std::fs::read_to_string(dir.path().join("generator.md")).expect("generator.md");
        assert!(markdown.contains("| posim | 2 | 45000 |") && markdown.contains("| wrk | 2 | 50000 |"), "{markdown}");
    }
}
