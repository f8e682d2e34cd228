//! A game day's sealed script (`[[inject]]`): the incidents the facilitator
//! sets off, and when, unseen by the operators. Incidents A and C and any
//! fault of the vocabulary become time-boxed faults of the plan (appended
//! after the scenario's own, so no earlier roll moves); incident B — a bad
//! build shipped on the serving config — and C's customer complaint are
//! carried out by the controller at their time, in both engines.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{ScenarioError, Source};
use crate::contract::Endpoint;
use crate::faults::{FaultKind, FaultSpec};
use crate::time::{self, Millis};

/// Incident B's default: the share of confirm and execute-cycle requests the bad build fails.
pub const BAD_BUILD_ERROR_RATE: f64 = 0.3;
/// How long an injected A, C or fault lasts unless `lasts` says.
pub const DEFAULT_LASTS: Millis = 20 * time::MINUTE;

/// What the facilitator sets off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "incident")]
pub enum Incident {
    /// §4A: the gateway loses start commands: customers pay and no machine starts.
    PaidNoWash { until: Millis },
    /// §4B: a bad build ships on the serving config.
    BadDeploy { error_rate: f64 },
    /// §4C: confirms arrive twice; a customer complains of a double charge at `until`.
    SuspectedDuplicate { until: Millis },
    /// C's trigger: a customer reports a double charge.
    Complaint,
    /// Any fault of the scenario's vocabulary, for a while.
    Fault { kind: FaultKind, probability: f64, until: Millis },
}

impl Incident {
    /// The runbook's letter (or the fault's name): what the scorecard groups by.
    pub fn label(&self) -> String {
        match self {
            Incident::PaidNoWash { .. } => "A".into(),
            Incident::BadDeploy { .. } => "B".into(),
            Incident::SuspectedDuplicate { .. } | Incident::Complaint => "C".into(),
            Incident::Fault { kind, .. } => kind.to_string(),
        }
    }

    /// One line for the facilitator's log (never shown to the operators).
    pub fn describe(&self) -> String {
        match self {
            Incident::PaidNoWash { until } => {
                format!("incident A: the gateway loses half the start commands until {}", time::clock(*until))
            }
            Incident::BadDeploy { error_rate } => {
                format!("incident B: a bad build failing {:.0}% of confirm and execute-cycle ships", error_rate * 100.0)
            }
            Incident::SuspectedDuplicate { until } => {
                format!("incident C: confirms arrive twice until {}, then a customer complains", time::clock(*until))
            }
            Incident::Complaint => "incident C: a customer reports a double charge".into(),
            Incident::Fault { kind, probability, until } => {
                format!("fault `{kind}` at probability {probability} until {}", time::clock(*until))
            }
        }
    }

    /// The faults this incident adds to the plan, active in `[at, until)`.
    pub fn faults(&self, at: Millis, duration: Millis) -> Vec<FaultSpec> {
        let boxed = |kind, probability, until, endpoints: Vec<Endpoint>| FaultSpec {
            from: at,
            until,
            endpoints,
            ..FaultSpec::everywhere(kind, probability, duration)
        };
        match *self {
            Incident::PaidNoWash { until } => vec![boxed(FaultKind::IotCommandLost, 0.5, until, vec![])],
            Incident::SuspectedDuplicate { until } => {
                vec![boxed(FaultKind::DuplicateRequest, 0.2, until, vec![Endpoint::Confirm])]
            }
            Incident::Fault { kind, probability, until } => vec![boxed(kind, probability, until, vec![])],
            Incident::BadDeploy { .. } | Incident::Complaint => Vec::new(),
        }
    }
}

/// One incident and when it is set off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Injection {
    pub at: Millis,
    #[serde(flatten)]
    pub incident: Incident,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInject {
    at: Spanned<String>,
    incident: Option<Spanned<String>>,
    fault: Option<FaultKind>,
    probability: Option<Spanned<f64>>,
    error_rate: Option<Spanned<f64>>,
    lasts: Option<Spanned<String>>,
    duration: Option<Spanned<String>>,
}

/// The sealed script, in time order, and the faults it adds to the plan.
pub(super) fn injections(
    source: &Source,
    raw: &[RawInject],
    end: Millis,
) -> Result<(Vec<Injection>, Vec<FaultSpec>), ScenarioError> {
    let mut injections = Vec::new();
    let mut faults = Vec::new();
    for raw in raw {
        let at = source.duration(&raw.at)?;
        if at >= end {
            return Err(source
                .error(raw.at.span(), format!("an injection must come before the run ends ({})", time::human(end))));
        }
        let lasts = raw.lasts.as_ref().map_or(Ok(DEFAULT_LASTS), |lasts| source.duration(lasts))?;
        let until = at.saturating_add(lasts);
        let duration = raw.duration.as_ref().map_or(Ok(30 * time::SECOND), |d| source.duration(d))?;
        let incident = incident(source, raw, until)?;
        faults.extend(incident.faults(at, duration));
        if let Incident::SuspectedDuplicate { .. } = incident {
            injections.push(Injection { at: until.min(end - 1), incident: Incident::Complaint });
        }
        injections.push(Injection { at, incident });
    }
    injections.sort_by_key(|injection| injection.at);
    Ok((injections, faults))
}

fn incident(source: &Source, raw: &RawInject, until: Millis) -> Result<Incident, ScenarioError> {
    let share =
        |value: &Option<Spanned<f64>>, name, default| value.as_ref().map_or(Ok(default), |v| source.share(v, name));
    match (&raw.incident, raw.fault) {
        (Some(_), Some(_)) | (None, None) => {
            Err(source.error(raw.at.span(), "an injection names either `incident` (A, B or C) or `fault`"))
        }
        (None, Some(kind)) => {
            let Some(probability) = &raw.probability else {
                return Err(source.error(raw.at.span(), "an injected fault needs `probability`"));
            };
            Ok(Incident::Fault { kind, probability: source.share(probability, "probability")?, until })
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
