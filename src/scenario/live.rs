//! The scenario's `[live]` section for `posim live`: its own default time
//! scale (`--time-scale` overrides it), and whether a live suite over a
//! folder leaves it out (a capacity benchmark is for `posim load`).

use serde::Deserialize;
use toml::Spanned;

use super::{ScenarioError, Source};

/// The time scales `posim live` accepts (runbook time per wall time).
pub const TIME_SCALES: std::ops::RangeInclusive<f64> = 1.0..=10_000.0;

/// What the scenario asks of a live run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveSpec {
    /// The time scale when `--time-scale` is not given (else 60).
    pub time_scale: Option<f64>,
    /// Why a live suite skips it (`None`: it runs).
    pub skip: Option<String>,
}

/// `[live]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLive {
    time_scale: Option<Spanned<f64>>,
    skip: Option<Spanned<String>>,
}

/// Validates `[live]`, with `file:line:column` for each mistake.
pub(super) fn live_spec(source: &Source, raw: &RawLive) -> Result<LiveSpec, ScenarioError> {
    let mut spec = LiveSpec::default();
    if let Some(scale) = &raw.time_scale {
        if !TIME_SCALES.contains(scale.get_ref()) {
            return Err(source.error(scale.span(), "time_scale must be between 1 and 10000"));
        }
        spec.time_scale = Some(*scale.get_ref());
    }
    if let Some(skip) = &raw.skip {
        if skip.get_ref().trim().is_empty() {
            return Err(source.error(skip.span(), "skip says why a live suite leaves the scenario out; it is empty"));
        }
        spec.skip = Some(skip.get_ref().clone());
    }
    Ok(spec)
}
