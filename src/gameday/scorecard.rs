//! The game day's scorecard, from the history alone: for each incident the
//! facilitator set off, the time to detect (its start → the first action
//! of whoever decides that responds to an incident: a rollback, a cut, a
//! freeze, a deploy that applied, a reprocess or an audit — not a refused
//! deploy, an advance or a hold) and to mitigate (→ the affected condominiums denied
//! and the rates under their caps, or the §4A/§4C step done); the rollback
//! times against their targets; runbook adherence; and customer impact.
//! The same card, made from posim-auto's run on the same seed, is the
//! reference line.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::invariant::Invariant;
use crate::check::rollback::RollbackTiming;
use crate::history::{Decision, DecisionKind, Event, History};
use crate::incident::Injection;
use crate::rollout::controller::{AUTO, EVIDENCE_PREFIX, is_person};
use crate::time::Millis;

/// Whose decisions a card scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decider {
    /// The people on call (anyone but posim and the facilitator).
    People,
    /// posim's automatic controller (the reference line).
    PosimAuto,
}

impl Decider {
    fn decides(self, who: &str) -> bool {
        match self {
            Decider::People => is_person(who),
            Decider::PosimAuto => who == AUTO,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentScore {
    /// `A`, `B`, `C` or a fault's name.
    pub incident: String,
    pub description: String,
    pub at_ms: Millis,
    /// Incident start → the decider's first action; `None`: never detected.
    pub detect_ms: Option<Millis>,
    pub first_action: Option<String>,
    /// Incident start → mitigated; `None`: never mitigated.
    pub mitigate_ms: Option<Millis>,
    pub mitigated_by: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub kept: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Impact {
    /// Customers who paid and got no wash, and were not refunded (D3).
    pub paid_no_wash: usize,
    /// Payments a rollback stranded in flight (D8).
    pub stranded: usize,
    /// Duplicate charges and duplicate cycles (D1, D2).
    pub duplicated: usize,
    /// Charges the PSP refunded (compensations and reversals).
    pub refunded: usize,
    /// Every invariant broken, by code.
    pub violations: BTreeMap<String, usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    pub decider: Decider,
    pub incidents: Vec<IncidentScore>,
    /// The rollbacks the decider took, with the four times against their targets.
    pub rollbacks: Vec<RollbackTiming>,
    /// Runbook adherence (people only; posim-auto follows the runbook by construction).
    pub adherence: Vec<Finding>,
    pub impact: Impact,
    /// How the rollout ended.
    pub outcome: String,
    /// The same incidents handled by posim-auto on the same seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Box<Scorecard>>,
}

/// What a card is made from: one judged run.
pub struct Judged<'a> {
    pub history: &'a History,
    pub rollbacks: &'a [RollbackTiming],
    pub violation_counts: &'a BTreeMap<Invariant, usize>,
    pub outcome: String,
}

/// The card of `decider` on a judged run.
pub fn score(run: &Judged<'_>, decider: Decider) -> Scorecard {
    let decisions = &run.history.decisions;
    let incidents =
        run.history.injected.iter().map(|injection| incident(injection, decisions, run.rollbacks, decider)).collect();
    let rollbacks = run
        .rollbacks
        .iter()
        .filter(|r| decisions.get(usize::from(r.decision)).is_some_and(|d| decider.decides(&d.who)))
        .cloned()
        .collect();
    let adherence = match decider {
        Decider::People => adherence(decisions),
        Decider::PosimAuto => Vec::new(),
    };
    Scorecard {
        decider,
        incidents,
        rollbacks,
        adherence,
        impact: impact(run),
        outcome: run.outcome.clone(),
        reference: None,
    }
}

fn incident(
    injection: &Injection,
    decisions: &[Decision],
    rollbacks: &[RollbackTiming],
    decider: Decider,
) -> IncidentScore {
    let (incident, at) = (injection.incident.label(), injection.at);
    let after = || decisions.iter().enumerate().filter(|(_, d)| d.at >= at && decider.decides(&d.who));
    let acted = after().find(|(_, d)| d.kind.responds());
    let mitigation = after().find_map(|(index, decision)| mitigated(&incident, index, decision, rollbacks));
    IncidentScore {
        description: injection.incident.describe(),
        at_ms: at,
        detect_ms: acted.map(|(_, d)| d.at - at),
        first_action: acted.map(|(_, d)| format!("{} by {}", d.kind, d.who)),
        mitigate_ms: mitigation.as_ref().map(|(done, _)| done.saturating_sub(at)),
        mitigated_by: mitigation.map(|(_, by)| by),
        incident,
    }
}

/// When `decision` mitigates the incident, and how: a rollback once the
/// affected are denied and the rates are under the caps; §4A's reprocess;
/// §4C's freeze or audit.
fn mitigated(
    incident: &str,
    index: usize,
    decision: &Decision,
    rollbacks: &[RollbackTiming],
) -> Option<(Millis, String)> {
    let by = format!("{} by {} at {}", decision.kind, decision.who, crate::time::clock(decision.at));
    match (incident, decision.kind) {
        ("A", DecisionKind::Reprocess) => Some((decision.at, by)),
        ("C", DecisionKind::Freeze | DecisionKind::Audit) => Some((decision.at, by)),
        ("A" | "C", _) => None,
        (_, kind) if kind.is_rollback() => {
            let timing = rollbacks.iter().find(|r| usize::from(r.decision) == index)?;
            let settled = timing.affected_denied_ms.unwrap_or(0).max(timing.rates_under_caps_ms?);
            Some((decision.at + settled, by))
        }
        _ => None,
    }
}

/// Every action logged with who and evidence; partial before total (§2
/// recommends the partial rollback); no advance while an alert is open.
fn adherence(decisions: &[Decision]) -> Vec<Finding> {
    let actions: Vec<&Decision> = decisions.iter().filter(|d| is_person(&d.who)).collect();
    let bare: Vec<String> = actions
        .iter()
        .filter(|d| !d.evidence.first().is_some_and(|line| line.starts_with(EVIDENCE_PREFIX)))
        .map(|d| format!("{} at {}", d.kind, crate::time::clock(d.at)))
        .collect();
    let logged = Finding {
        rule: "every action logged with who and evidence (§5)".into(),
        kept: bare.is_empty(),
        detail: match bare.is_empty() {
            true => format!("{} action(s), each with who and evidence", actions.len()),
            false => format!("without evidence: {}", bare.join(", ")),
        },
    };
    let first = |kind| actions.iter().position(|d| d.kind == kind);
    let partial_first = match (first(DecisionKind::PartialRollback), first(DecisionKind::TotalCut)) {
        (_, None) => true,
        (Some(partial), Some(total)) => partial < total,
        (None, Some(_)) => false,
    };
    let partial = Finding {
        rule: "partial rollback before a total cut (§2)".into(),
        kept: partial_first,
        detail: match partial_first {
            true => "kept".into(),
            false => "a total cut came before any partial rollback".into(),
        },
    };
    let early: Vec<String> = advances_under_alert(decisions);
    let no_advance = Finding {
        rule: "no advance while an alert is open (§1, §3)".into(),
        kept: early.is_empty(),
        detail: match early.is_empty() {
            true => "kept".into(),
            false => format!("advanced under an open alert at {}", early.join(", ")),
        },
    };
    vec![logged, partial, no_advance]
}

/// A person's advance with an alert raised and not yet answered.
fn advances_under_alert(decisions: &[Decision]) -> Vec<String> {
    let mut open = false;
    let mut early = Vec::new();
    for decision in decisions {
        match decision.kind {
            DecisionKind::Alert => open = true,
            DecisionKind::Advance if is_person(&decision.who) && open => early.push(crate::time::clock(decision.at)),
            DecisionKind::Refused | DecisionKind::Advance | DecisionKind::Hold | DecisionKind::Inject => {}
            _ if is_person(&decision.who) => open = false,
            _ => {}
        }
    }
    early
}

fn impact(run: &Judged<'_>) -> Impact {
    let count = |code: Invariant| run.violation_counts.get(&code).copied().unwrap_or(0);
    let refunded = run.history.records.iter().filter(|r| matches!(r.event, Event::Refunded { .. })).count();
    Impact {
        paid_no_wash: count(Invariant::D3),
        stranded: count(Invariant::D8),
        duplicated: count(Invariant::D1) + count(Invariant::D2),
        refunded,
        violations: run.violation_counts.iter().map(|(code, n)| (code.code().to_string(), *n)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(at: Millis, who: &str, kind: DecisionKind, evidence: &str) -> Decision {
        Decision {
            at,
            who: who.into(),
            kind,
            deploy: None,
            previous: None,
            window_from: 0,
            evidence: vec![evidence.into()],
            criteria: Vec::new(),
        }
    }

    fn kept(decisions: &[Decision]) -> Vec<bool> {
        adherence(decisions).iter().map(|finding| finding.kept).collect()
    }

    #[test]
    fn adherence_keeps_to_the_runbook() {
        let alert = decision(10, AUTO, DecisionKind::Alert, "confirm above the cap");
        let partial = decision(20, "ana", DecisionKind::PartialRollback, "evidence: confirm at 30%");
        let total = decision(30, "ana", DecisionKind::TotalCut, "evidence: still failing");
        assert_eq!(kept(&[alert.clone(), partial.clone(), total.clone()]), [true, true, true]);
        assert_eq!(kept(&[alert.clone(), total.clone()]), [true, false, true], "a total cut before any partial");
        let advance = decision(15, "ana", DecisionKind::Advance, "evidence: looks fine");
        assert_eq!(kept(&[alert.clone(), advance.clone()]), [true, true, false], "an advance under the alert");
        assert_eq!(kept(&[alert, partial, advance]), [true, true, true], "the alert was answered first");
        let bare = decision(40, "bruno", DecisionKind::Freeze, "freeze: operator's call");
        assert_eq!(kept(&[bare]), [false, true, true], "an action without evidence");
    }

    #[test]
    fn detection_waits_for_a_response_and_mitigation_for_the_rates() {
        let injected = Injection { at: 100, incident: crate::incident::Incident::BadDeploy { error_rate: 0.3 } };
        let logged = decision(100, "facilitator", DecisionKind::Inject, "incident B: a bad build ships");
        let refused = decision(150, "ana", DecisionKind::Refused, "evidence: typo");
        let rollback = decision(400, "ana", DecisionKind::PartialRollback, "evidence: confirm at 30%");
        let decisions = [logged, refused, rollback];
        let timing = RollbackTiming {
            decision: 2,
            at_ms: 400,
            kind: DecisionKind::PartialRollback,
            label: "rollback: partial".into(),
            affected: 3,
            replicas_on_new_config_ms: Some(20),
            affected_denied_ms: Some(30),
            rates_under_caps_ms: Some(200),
            stable_ms: None,
            breaches: Vec::new(),
            targets_ms: Default::default(),
        };
        let score = incident(&injected, &decisions, &[timing], Decider::People);
        assert_eq!(score.incident, "B");
        assert_eq!((score.detect_ms, score.mitigate_ms), (Some(300), Some(500)), "a refused deploy detects nothing");
        let nobody = incident(&injected, &decisions[..1], &[], Decider::People);
        assert_eq!((nobody.detect_ms, nobody.mitigate_ms), (None, None));
    }
}
