//! A game day's sealed script (`[[inject]]`): the incidents the facilitator
//! sets off, and when, unseen by the operators (what each incident is:
//! [`crate::incident`]). Their faults are appended after the scenario's
//! own, so no earlier roll moves.

use serde::Deserialize;
use toml::Spanned;

use super::{ScenarioError, Source};
use crate::faults::{FaultKind, FaultSpec};
use crate::incident::{self, Armed, Offer};
pub use crate::incident::{BAD_BUILD_ERROR_RATE, DEFAULT_LASTS, Incident, Injection};
use crate::time::{self, Millis};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInject {
    /// When the sealed script sets it off; without it, the facilitator
    /// may set it off on a live game day at a moment they choose.
    at: Option<Spanned<String>>,
    incident: Option<Spanned<String>>,
    fault: Option<Spanned<FaultKind>>,
    probability: Option<Spanned<f64>>,
    error_rate: Option<Spanned<f64>>,
    lasts: Option<Spanned<String>>,
    duration: Option<Spanned<String>>,
}

/// A game day's script and menu: the sealed injections, in time order (their
/// faults appended to `faults`), and the offers the facilitator may set off
/// (their faults appended dormant).
pub(super) fn injections(
    source: &Source,
    raw: &[RawInject],
    end: Millis,
    faults: &mut Vec<FaultSpec>,
) -> Result<(Vec<Injection>, Vec<Armed>), ScenarioError> {
    let mut injections = Vec::new();
    let mut armed = Vec::new();
    for raw in raw {
        let lasts = raw.lasts.as_ref().map_or(Ok(DEFAULT_LASTS), |lasts| source.duration(lasts))?;
        let Some(at) = &raw.at else {
            incident::offer(offer(source, raw)?, lasts, faults, &mut armed);
            continue;
        };
        let at = source.duration(at)?;
        if at >= end {
            let message = format!("an injection must come before the run ends ({})", time::human(end));
            return Err(source.error(place(raw), message));
        }
        let until = at.saturating_add(lasts);
        let incident = incident(source, raw, until)?;
        faults.extend(incident.faults(at));
        if let Incident::SuspectedDuplicate { .. } = incident {
            injections.push(Injection { at: until.min(end - 1), incident: Incident::Complaint });
        }
        injections.push(Injection { at, incident });
    }
    injections.sort_by_key(|injection| injection.at);
    Ok((injections, armed))
}

/// Where an injection's mistake is shown: its `at`, else what it names.
fn place(raw: &RawInject) -> std::ops::Range<usize> {
    let named = raw.incident.as_ref().map(Spanned::span).or_else(|| raw.fault.as_ref().map(Spanned::span));
    raw.at.as_ref().map(Spanned::span).or(named).unwrap_or(0..0)
}

fn fault_duration(source: &Source, raw: &RawInject) -> Result<Millis, ScenarioError> {
    raw.duration.as_ref().map_or(Ok(30 * time::SECOND), |d| source.duration(d))
}

/// An injection without `at`: on the facilitator's menu.
fn offer(source: &Source, raw: &RawInject) -> Result<Offer, ScenarioError> {
    match incident(source, raw, 0)? {
        Incident::PaidNoWash { .. } => Ok(Offer::PaidNoWash),
        Incident::Fault { kind, probability, duration, .. } => Ok(Offer::Fault { kind, probability, duration }),
        _ => Err(source.error(
            place(raw),
            "incidents B and C are on every game day's menu; give `at` to script them in the sealed script",
        )),
    }
}

fn incident(source: &Source, raw: &RawInject, until: Millis) -> Result<Incident, ScenarioError> {
    let share =
        |value: &Option<Spanned<f64>>, name, default| value.as_ref().map_or(Ok(default), |v| source.share(v, name));
    match (&raw.incident, &raw.fault) {
        (Some(_), Some(_)) | (None, None) => {
            Err(source.error(place(raw), "an injection names either `incident` (A, B or C) or `fault`"))
        }
        (None, Some(kind)) => {
            let Some(probability) = &raw.probability else {
                return Err(source.error(place(raw), "an injected fault needs `probability`"));
            };
            let (kind, probability) = (*kind.get_ref(), source.share(probability, "probability")?);
            Ok(Incident::Fault { kind, probability, until, duration: fault_duration(source, raw)? })
        }
        (Some(letter), None) => match letter.get_ref().as_str() {
            "A" | "a" => Ok(Incident::PaidNoWash { until }),
            "B" | "b" => {
                Ok(Incident::BadDeploy { error_rate: share(&raw.error_rate, "error_rate", BAD_BUILD_ERROR_RATE)? })
            }
            "C" | "c" => Ok(Incident::SuspectedDuplicate { until }),
            other => Err(source.error(letter.span(), format!("expected incident `A`, `B` or `C`, got `{other}`"))),
        },
    }
}
