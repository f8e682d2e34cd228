//! What a run proves about the rollout itself: it completed, it rolled
//! back, it froze, or it was left holding — read off the decisions — and
//! whether that is what the scenario said to expect. A CI gate asks "would
//! this rollout go through?": an unexpected rollback fails the run even when
//! the rollback went by the book.

use serde::{Deserialize, Serialize};

use crate::history::{DecisionKind, History};
use crate::time::{self, Millis};

/// The outcome a scenario states it expects (`expect = "…"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum Expectation {
    /// Every phase reached, no rollback, criteria and invariants held.
    #[default]
    Complete,
    /// An incident rehearsal: the rollback must happen, within its targets.
    Rollback,
    /// Incident C: the rollout must freeze.
    Freeze,
}

/// How the rollout ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Completed {
        at_ms: Millis,
    },
    /// Rolled back (partially or by a total cut) at `at_ms` to `to`.
    RolledBack {
        at_ms: Millis,
        to: String,
    },
    Frozen {
        at_ms: Millis,
        to: String,
    },
    /// Neither completed nor rolled back: still in `phase` when the run ended.
    Held {
        phase: String,
    },
}

impl Outcome {
    /// Reads the outcome off the decisions: the first rollback or freeze
    /// decides it; otherwise the rollout completed or was left holding.
    pub fn of(history: &History) -> Outcome {
        let serving = |deploy: Option<u16>| deploy.map_or("nothing".to_string(), |d| history.canary(d).summary());
        for decision in &history.decisions {
            match decision.kind {
                DecisionKind::Freeze => return Outcome::Frozen { at_ms: decision.at, to: serving(decision.deploy) },
                DecisionKind::PartialRollback | DecisionKind::TotalCut => {
                    return Outcome::RolledBack { at_ms: decision.at, to: serving(decision.deploy) };
                }
                _ => {}
            }
        }
        let completed = history.decisions.iter().rev().find(|d| d.kind == DecisionKind::Advance && d.deploy.is_none());
        match completed {
            Some(decision) => Outcome::Completed { at_ms: decision.at },
            None => Outcome::Held { phase: history.deploys.last().map_or("none".to_string(), |d| d.label.clone()) },
        }
    }

    pub fn meets(&self, expected: Expectation) -> bool {
        matches!(
            (self, expected),
            (Outcome::Completed { .. }, Expectation::Complete)
                | (Outcome::RolledBack { .. }, Expectation::Rollback)
                | (Outcome::Frozen { .. }, Expectation::Freeze)
        )
    }

    /// In a few words, for the first line of a report.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Completed { at_ms } => format!("completed at {}", time::clock(*at_ms)),
            Outcome::RolledBack { at_ms, to } => format!("rolled back at {} to {to}", time::clock(*at_ms)),
            Outcome::Frozen { at_ms, to } => format!("frozen at {} on {to}", time::clock(*at_ms)),
            Outcome::Held { phase } => format!("held in phase `{phase}` (neither completed nor rolled back)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_are_named_as_scenarios_write_them() {
        crate::contract::names::assert_round_trip::<Expectation>();
        assert_eq!(Expectation::Rollback.to_string(), "rollback");
    }
}
