//! The incidents a game day's facilitator sets off (runbook §4): A, the
//! gateway loses start commands (paid, no wash); B, a bad build ships on
//! the serving config; C, confirms arrive twice and a customer complains;
//! or any fault of the vocabulary for a while. A, C and faults become
//! time-boxed faults of the plan; B and C's complaint are carried out by
//! the controller at their time, in both engines. The history keeps each
//! one set off, so posim-auto's reference run can meet the same incidents.

use serde::{Deserialize, Serialize};

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
    /// Any fault of the scenario's vocabulary, for a while (`duration`: how
    /// long a machine stays offline, a replica paused…).
    Fault { kind: FaultKind, probability: f64, until: Millis, duration: Millis },
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
            Incident::Fault { kind, probability, until, .. } => {
                format!("fault `{kind}` at probability {probability} until {}", time::clock(*until))
            }
        }
    }

    /// The faults this incident adds to the plan, active in `[at, until)`.
    pub fn faults(&self, at: Millis) -> Vec<FaultSpec> {
        let boxed = |kind, probability, until, endpoints: Vec<Endpoint>, duration| FaultSpec {
            from: at,
            until,
            endpoints,
            ..FaultSpec::everywhere(kind, probability, duration)
        };
        let short = 30 * time::SECOND;
        match *self {
            Incident::PaidNoWash { until } => vec![boxed(FaultKind::IotCommandLost, 0.5, until, vec![], short)],
            Incident::SuspectedDuplicate { until } => {
                vec![boxed(FaultKind::DuplicateRequest, 0.2, until, vec![Endpoint::Confirm], short)]
            }
            Incident::Fault { kind, probability, until, duration } => {
                vec![boxed(kind, probability, until, vec![], duration)]
            }
            Incident::BadDeploy { .. } | Incident::Complaint => Vec::new(),
        }
    }
}

/// What a facilitator may set off at a moment they choose, on a live game
/// day: its faults wait dormant at the end of the plan until armed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "offer")]
pub enum Offer {
    /// Incident A, for `lasts`.
    PaidNoWash,
    /// A fault of the vocabulary, for `lasts`.
    Fault { kind: FaultKind, probability: f64, duration: Millis },
}

/// An offer on the facilitator's menu, and where its faults sit in the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Armed {
    pub offer: Offer,
    pub lasts: Millis,
    /// The plan index of its first dormant fault.
    pub first_fault: usize,
}

impl Armed {
    /// The offer as an incident set off at `at`.
    pub fn incident(&self, at: Millis) -> Incident {
        let until = at.saturating_add(self.lasts);
        match self.offer {
            Offer::PaidNoWash => Incident::PaidNoWash { until },
            Offer::Fault { kind, probability, duration } => Incident::Fault { kind, probability, until, duration },
        }
    }

    /// `A`, or the fault's name: how the facilitator names it.
    pub fn name(&self) -> String {
        self.incident(0).label()
    }

    /// Its faults, dormant (never in their window) until the plan arms them.
    pub fn dormant(&self) -> Vec<FaultSpec> {
        let mut faults = self.incident(0).faults(0);
        for fault in &mut faults {
            (fault.from, fault.until) = (Millis::MAX, Millis::MAX);
        }
        faults
    }
}

/// Puts `offer` on the menu: its dormant faults go at the end of `faults`
/// (so no earlier roll moves), and it is listed in `armed`.
pub fn offer(offer: Offer, lasts: Millis, faults: &mut Vec<FaultSpec>, armed: &mut Vec<Armed>) {
    let entry = Armed { offer, lasts, first_fault: faults.len() };
    faults.extend(entry.dormant());
    armed.push(entry);
}

/// One incident and when it is set off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Injection {
    pub at: Millis,
    #[serde(flatten)]
    pub incident: Incident,
}
