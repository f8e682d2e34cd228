//! The scenario's `[load]` section for `posim load`: the caps a knee search
//! stops at and the thresholds a load run is gated on (`p99<300ms`,
//! `error_rate<1%`, `knee>3x`), parsed once for the file and the command line.

use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{ScenarioError, Source};
use crate::time::{self, Millis};

/// The longest p99 a cap or threshold may name (a minute is beyond any SLO).
pub const LATENCY_CAP_MAX: Millis = 60_000;

/// What the scenario asks of a load run.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSpec {
    /// A step whose p99 is above this is past the knee.
    pub p99_max: Millis,
    /// A step whose share of failed purchases is above this is past the knee.
    pub error_rate_max: f64,
    /// Gates the run must meet (exit 1 naming each breached one).
    pub thresholds: Vec<Threshold>,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec { p99_max: 500, error_rate_max: 0.01, thresholds: Vec::new() }
    }
}

/// One gate on a load run's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "metric", rename_all = "snake_case")]
pub enum Threshold {
    /// The p99 of stack requests at the knee (or the last step) is below this.
    P99Below { ms: Millis },
    /// The share of failed (or never started) purchases at the knee, or
    /// over the run without one, is below this.
    ErrorRateBelow { rate: f64 },
    /// The knee is above this multiple of the fleet's busiest-hour purchase rate.
    KneeAbove { times_peak: f64 },
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::P99Below { ms } => write!(f, "p99<{ms}ms"),
            Threshold::ErrorRateBelow { rate } => write!(f, "error_rate<{}%", rate * 100.0),
            Threshold::KneeAbove { times_peak } => write!(f, "knee>{times_peak}x"),
        }
    }
}

impl std::str::FromStr for Threshold {
    type Err = String;

    /// `p99<300ms`, `error_rate<1%` (or `<0.01`), `knee>3x`; spaces are ignored.
    fn from_str(text: &str) -> Result<Self, String> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let expected = "expected `p99<300ms`, `error_rate<1%` or `knee>3x`";
        if let Some(value) = compact.strip_prefix("p99<") {
            let ms = time::parse_duration(value)?;
            if ms == 0 || ms > LATENCY_CAP_MAX {
                return Err(format!("`{text}`: the p99 must be above zero and at most 60s"));
            }
            return Ok(Threshold::P99Below { ms });
        }
        if let Some(value) = compact.strip_prefix("error_rate<") {
            let rate = match value.strip_suffix('%') {
                Some(percent) => number(percent, text)? / 100.0,
                None => number(value, text)?,
            };
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(format!("`{text}`: the error rate must be above 0 and at most 100%"));
            }
            return Ok(Threshold::ErrorRateBelow { rate });
        }
        if let Some(value) = compact.strip_prefix("knee>") {
            let value = value.strip_suffix("peak").unwrap_or(value);
            let times_peak = number(value.strip_suffix('x').unwrap_or(value), text)?;
            if !(times_peak > 0.0 && times_peak <= 1e6) {
                return Err(format!("`{text}`: the multiple must be above 0 and at most 1000000"));
            }
            return Ok(Threshold::KneeAbove { times_peak });
        }
        Err(format!("`{text}` is not a threshold: {expected}"))
    }
}

fn number(value: &str, text: &str) -> Result<f64, String> {
    value.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| format!("`{text}`: `{value}` is not a number"))
}

/// `[load]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoad {
    p99_max: Option<Spanned<String>>,
    error_rate_max: Option<Spanned<f64>>,
    #[serde(default)]
    thresholds: Vec<Spanned<String>>,
}

/// Validates `[load]`, with `file:line:column` for each mistake.
pub(super) fn load_spec(source: &Source, raw: &RawLoad) -> Result<LoadSpec, ScenarioError> {
    let mut spec = LoadSpec::default();
    if let Some(p99) = &raw.p99_max {
        spec.p99_max = source.duration(p99)?;
        if spec.p99_max == 0 || spec.p99_max > LATENCY_CAP_MAX {
            return Err(source.error(p99.span(), "p99_max must be above zero and at most 60s"));
        }
    }
    if let Some(rate) = &raw.error_rate_max {
        spec.error_rate_max = source.share(rate, "error_rate_max")?;
    }
    if raw.thresholds.len() > 20 {
        return Err(source.error(raw.thresholds[20].span(), "at most 20 thresholds"));
    }
    for written in &raw.thresholds {
        let threshold = written.get_ref().parse().map_err(|message: String| source.error(written.span(), message))?;
        spec.thresholds.push(threshold);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_in_the_k6_style() {
        assert_eq!("p99<300ms".parse(), Ok(Threshold::P99Below { ms: 300 }));
        assert_eq!("p99 < 1s".parse(), Ok(Threshold::P99Below { ms: 1000 }));
        assert_eq!("error_rate<1%".parse(), Ok(Threshold::ErrorRateBelow { rate: 0.01 }));
        assert_eq!("error_rate<0.05".parse(), Ok(Threshold::ErrorRateBelow { rate: 0.05 }));
        assert_eq!("knee>3x".parse(), Ok(Threshold::KneeAbove { times_peak: 3.0 }));
        assert_eq!("knee > 2.5x peak".parse(), Ok(Threshold::KneeAbove { times_peak: 2.5 }));
        assert_eq!(Threshold::P99Below { ms: 300 }.to_string(), "p99<300ms");
    }

    #[test]
    fn bad_thresholds_are_refused_with_the_reason() {
        for bad in
            ["p99>300ms", "p99<0ms", "p99<2m", "error_rate<0%", "error_rate<150%", "knee>-1x", "knee>x", "p50<1s"]
        {
            assert!(bad.parse::<Threshold>().is_err(), "{bad} was accepted");
        }
        let error = "latency<3s".parse::<Threshold>().expect_err("unknown metric");
        assert!(error.contains("expected `p99<300ms`"), "{error}");
    }
}
