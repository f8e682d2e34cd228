//! What people send a running game day — from the console, `posim op` or
//! the facilitator's page — as the contract's JSON (serde), and how an
//! action becomes the controller's [`OperatorStep`]: who and evidence are
//! required, so that every action lands in the operation log (§5) whole.

use serde::{Deserialize, Serialize};

use crate::incident::{Armed, BAD_BUILD_ERROR_RATE, Incident};
use crate::scenario::{OperatorAction, OperatorStep};
use crate::time::Millis;

/// The runbook's actions, as the console and `posim op` name them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Deploy this env (raw text, validated as the stack does at start-up).
    Deploy {
        mode: String,
        #[serde(default)]
        allowlist: String,
        #[serde(default)]
        blocklist: String,
    },
    /// §2: partial rollback to the stable condominiums, or a total cut of the affected ones.
    Rollback {
        #[serde(default)]
        total: bool,
    },
    /// Advance to the next phase of the plan.
    Advance,
    /// §4C step 1: freeze on the smallest allowlist (and audit the suspects).
    Freeze,
    /// §4A: reprocess the executions of customers who paid and got no wash.
    Reprocess,
    /// §4C step 2: audit the suspects by provider_ref and idempotency_key.
    Audit,
}

/// An operator's action: who, what, and the evidence they acted on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionRequest {
    pub who: String,
    pub evidence: String,
    #[serde(flatten)]
    pub action: Action,
}

/// What the facilitator sets off at the moment they choose: incident A
/// (`a`), B (`b`: a bad build), C's complaint (`c`), or a fault the
/// scenario put on the menu (`[[inject]]` without `at`), by its name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InjectRequest {
    pub incident: String,
    /// Incident B: the share of confirm and execute-cycle it fails (default 0.3).
    #[serde(default)]
    pub error_rate: Option<f64>,
}

/// An injection, resolved against the game day's menu.
#[derive(Debug, PartialEq)]
pub enum SetOff<'a> {
    /// Carried out by the controller now (B, C's complaint).
    Now(Incident),
    /// An offer whose dormant faults are armed now.
    Arm(&'a Armed),
}

/// Why an action or an injection is refused before it reaches the controller.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("who acts? `who` is required (runbook §5: who carried it out)")]
    NoWho,
    #[error("on what evidence? `evidence` is required (runbook §5: logs, prints, queries)")]
    NoEvidence,
    #[error("`{0}` is {1}: a share is between 0 and 1")]
    Share(&'static str, f64),
    #[error("`{0}` is not on this game day's menu ({1}); put it there with an [[inject]] without `at`")]
    NotOnTheMenu(String, String),
}

impl ActionRequest {
    /// The controller's step for this action, at `now` (runbook time).
    pub fn step(&self, now: Millis) -> Result<OperatorStep, Refusal> {
        let who = self.who.trim();
        if who.is_empty() {
            return Err(Refusal::NoWho);
        }
        let evidence = self.evidence.trim();
        if evidence.is_empty() {
            return Err(Refusal::NoEvidence);
        }
        let action = match &self.action {
            Action::Deploy { mode, allowlist, blocklist } => OperatorAction::Deploy {
                mode: mode.clone(),
                allowlist: allowlist.clone(),
                blocklist: blocklist.clone(),
                rollback: false,
            },
            Action::Rollback { total } => OperatorAction::Rollback { total: *total },
            Action::Advance => OperatorAction::Advance,
            Action::Freeze => OperatorAction::Freeze,
            Action::Reprocess => OperatorAction::Reprocess,
            Action::Audit => OperatorAction::Audit,
        };
        Ok(OperatorStep { at: now, every: None, who: who.to_string(), action, evidence: Some(evidence.to_string()) })
    }
}

impl InjectRequest {
    /// What to set off: B and C at once, or an offer of `menu` to arm.
    pub fn resolve<'a>(&self, menu: &'a [Armed]) -> Result<SetOff<'a>, Refusal> {
        let name = self.incident.trim();
        match name.to_ascii_lowercase().as_str() {
            "b" => {
                let error_rate = self.error_rate.unwrap_or(BAD_BUILD_ERROR_RATE);
                if !(0.0..=1.0).contains(&error_rate) {
                    return Err(Refusal::Share("error_rate", error_rate));
                }
                Ok(SetOff::Now(Incident::BadDeploy { error_rate }))
            }
            "c" => Ok(SetOff::Now(Incident::Complaint)),
            _ => match menu.iter().find(|armed| armed.name().eq_ignore_ascii_case(name)) {
                Some(armed) => Ok(SetOff::Arm(armed)),
                None => Err(Refusal::NotOnTheMenu(name.to_string(), menu_names(menu).join(", "))),
            },
        }
    }
}

/// Everything a facilitator may set off on this game day.
pub fn menu_names(menu: &[Armed]) -> Vec<String> {
    ["B".to_string(), "C".to_string()].into_iter().chain(menu.iter().map(Armed::name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(who: &str, evidence: &str) -> ActionRequest {
        ActionRequest { who: who.into(), evidence: evidence.into(), action: Action::Rollback { total: false } }
    }

    #[test]
    fn who_and_evidence_are_required() {
        assert_eq!(request(" ", "confirm at 30%").step(0), Err(Refusal::NoWho));
        assert_eq!(request("ana", "").step(0), Err(Refusal::NoEvidence));
        let step = request("ana", "confirm at 30%").step(42).expect("a whole action");
        assert_eq!((step.at, step.who.as_str(), step.evidence.as_deref()), (42, "ana", Some("confirm at 30%")));
        assert_eq!(step.action, OperatorAction::Rollback { total: false });
    }

    #[test]
    fn actions_read_as_the_console_sends_them() {
        let json = r#"{"who":"ana","evidence":"typo check","action":"deploy","mode":"allowlist","allowlist":"x"}"#;
        let parsed: ActionRequest = serde_json::from_str(json).expect("the console's JSON");
        assert_eq!(
            parsed.action,
            Action::Deploy { mode: "allowlist".into(), allowlist: "x".into(), blocklist: String::new() }
        );
        let inject: InjectRequest = serde_json::from_str(r#"{"incident":"b","error_rate":1.5}"#).expect("JSON");
        assert_eq!(inject.resolve(&[]), Err(Refusal::Share("error_rate", 1.5)));
    }

    #[test]
    fn the_facilitator_sets_off_what_is_on_the_menu() {
        let mut faults = Vec::new();
        let mut menu = Vec::new();
        crate::incident::offer(crate::incident::Offer::PaidNoWash, 60_000, &mut faults, &mut menu);
        let ask = |name: &str| InjectRequest { incident: name.into(), error_rate: None };
        assert_eq!(ask("c").resolve(&menu), Ok(SetOff::Now(Incident::Complaint)));
        assert_eq!(ask("a").resolve(&menu), Ok(SetOff::Arm(&menu[0])));
        let refused = ask("psp_error").resolve(&menu);
        assert_eq!(refused, Err(Refusal::NotOnTheMenu("psp_error".into(), "B, C, A".into())));
        assert_eq!((faults.len(), faults[0].from), (1, u64::MAX), "A's fault waits dormant");
    }
}
