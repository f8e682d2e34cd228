//! Rollback timing (§4B), measured on the history from the decision to:
//! (a) every replica running the new config; (b) every affected condominium
//! answered `canary_not_allowed` (and never admitted again); (c) failure
//! rates back under their caps; (d) stable under the caps for `stable_for`.
//! Each is compared with the scenario's targets; a breach names the target.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::contract::{Endpoint, ErrorCode};
use crate::criteria::{Criteria, is_failure, wilson_interval};
use crate::history::{DecisionKind, Event, History};
use crate::judge::HistoryIndex;
use crate::scenario::RollbackTargets;
use crate::time::{self, Millis};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RollbackTiming {
    pub decision: u16,
    pub at_ms: Millis,
    pub kind: DecisionKind,
    pub label: String,
    /// Condominiums the rollback newly denies.
    pub affected: usize,
    pub replicas_on_new_config_ms: Option<Millis>,
    pub affected_denied_ms: Option<Millis>,
    pub rates_under_caps_ms: Option<Millis>,
    pub stable_ms: Option<Millis>,
    pub breaches: Vec<String>,
    /// The scenario's targets for the four times above (milliseconds).
    pub targets_ms: RollbackTargets,
}

/// Measures every rollback (partial, total cut, freeze) and judges the targets.
pub fn rollback_timings(
    history: &History,
    index: &HistoryIndex,
    criteria: &Criteria,
    targets: &RollbackTargets,
    end: Millis,
) -> Vec<RollbackTiming> {
    let deploy_times: Vec<Millis> = history.decisions.iter().filter(|d| d.deploy.is_some()).map(|d| d.at).collect();
    let mut timings = Vec::new();
    for (number, decision) in history.decisions.iter().enumerate() {
        let (Some(deploy), Some(previous)) = (decision.deploy, decision.previous) else { continue };
        if !decision.kind.is_rollback() {
            continue;
        }
        let t0 = decision.at;
        let until = deploy_times.iter().copied().find(|&at| at > t0).unwrap_or(end);
        let affected: Vec<u32> = (0..history.condominiums.len() as u32)
            .filter(|&c| {
                let id = history.condominiums[c as usize];
                history.canary(previous).admits(id) && !history.canary(deploy).admits(id)
            })
            .collect();
        let (under, stable) = recovery(history, index, criteria, t0, until);
        let replicas_on = replicas_on(history, index.replicas, deploy, t0, until);
        let mut timing = RollbackTiming {
            decision: number as u16,
            at_ms: t0,
            kind: decision.kind,
            label: history.deploys[usize::from(deploy)].label.clone(),
            affected: affected.len(),
            replicas_on_new_config_ms: replicas_on,
            affected_denied_ms: replicas_on
                .and_then(|on| denied(history, index, &affected, t0 + on, until).map(|d| on + d)),
            rates_under_caps_ms: under,
            stable_ms: stable,
            breaches: Vec::new(),
            targets_ms: targets.clone(),
        };
        timing.breaches = breaches(&timing, targets);
        timings.push(timing);
    }
    timings
}

/// (a) The last replica up on the new deploy.
fn replicas_on(history: &History, replicas: usize, deploy: u16, t0: Millis, until: Millis) -> Option<Millis> {
    let mut seen = vec![false; replicas];
    for record in records_between(history, t0, until) {
        if let Event::ReplicaUp { replica, config } = record.event
            && config == deploy
        {
            seen[usize::from(replica)] = true;
            if seen.iter().all(|s| *s) {
                return Some(record.at - t0);
            }
        }
    }
    None
}

/// (b) For each affected condominium, the first denial after its last
/// admission, counted from `t0` (when every replica serves the new config,
/// so that a denial means every replica denies).
fn denied(history: &History, index: &HistoryIndex, affected: &[u32], t0: Millis, until: Millis) -> Option<Millis> {
    let mut state: FxHashMap<u32, Option<Millis>> = affected.iter().map(|c| (*c, None)).collect();
    for record in records_between(history, t0, until) {
        let Event::Answered { request, status, error, .. } = record.event else { continue };
        let Some(info) = index.request(request).filter(|info| info.endpoint == Endpoint::Authorize) else {
            continue;
        };
        let Some(condominium) = &info.condominium else { continue };
        let Some(denied_at) = state.get_mut(condominium) else { continue };
        if (200..300).contains(&status) {
            *denied_at = None; // admitted again: not yet denied everywhere
        } else if error == Some(ErrorCode::CanaryNotAllowed) && denied_at.is_none() {
            *denied_at = Some(record.at - t0);
        }
    }
    state.values().try_fold(0, |latest, at| at.map(|at| latest.max(at)))
}

/// (c) and (d): failure rates per analysis interval after the decision.
fn recovery(
    history: &History,
    index: &HistoryIndex,
    criteria: &Criteria,
    t0: Millis,
    until: Millis,
) -> (Option<Millis>, Option<Millis>) {
    let interval = criteria.analysis_interval;
    let buckets = ((until.saturating_sub(t0)) / interval) as usize;
    let mut rates = vec![[(0u64, 0u64); 2]; buckets];
    for record in records_between(history, t0, t0 + buckets as Millis * interval) {
        let Event::Heard { request, status, error } = record.event else { continue };
        let Some(info) = index.request(request).filter(|info| !info.twin) else { continue };
        let endpoint = &info.endpoint;
        let slot = match endpoint {
            Endpoint::Confirm => 0,
            Endpoint::ExecuteCycle => 1,
            _ => continue,
        };
        let bucket = ((record.at - t0) / interval) as usize;
        rates[bucket][slot].0 += 1;
        rates[bucket][slot].1 += u64::from(is_failure(*endpoint, status, error));
    }
    let caps = [criteria.confirm_failure_rate_max, criteria.execute_failure_rate_max];
    // As in the criteria: over a cap only when the 95% interval says so.
    let under = |bucket: &[(u64, u64); 2]| bucket.iter().zip(caps).all(|(&(n, f), cap)| wilson_interval(f, n).0 <= cap);
    // (c): the end of the first interval not proven above the caps.
    let end_of = |k: usize| (k as Millis + 1) * interval;
    let Some(first) = rates.iter().position(under) else { return (None, None) };
    // (d): the end of the first `stable_for` after (c) whose pooled rates are
    // not proven above the caps (pooled, so one failure among three requests
    // in a quiet interval does not restart the clock).
    let span = criteria.stable_for.div_ceil(interval).max(1) as usize;
    let stable = (first + 1..rates.len().saturating_sub(span - 1)).find_map(|start| {
        let pooled = rates[start..start + span].iter().fold([(0, 0); 2], |mut sum, bucket| {
            for (total, part) in sum.iter_mut().zip(bucket) {
                total.0 += part.0;
                total.1 += part.1;
            }
            sum
        });
        under(&pooled).then(|| end_of(start + span - 1))
    });
    (Some(end_of(first)), stable)
}

fn records_between(history: &History, from: Millis, until: Millis) -> impl Iterator<Item = &crate::history::Record> {
    let start = history.records.partition_point(|record| record.at < from);
    history.records[start..].iter().take_while(move |record| record.at < until)
}

fn breaches(timing: &RollbackTiming, targets: &RollbackTargets) -> Vec<String> {
    let checks = [
        ("replicas_on_new_config", targets.replicas_on_new_config, timing.replicas_on_new_config_ms),
        ("affected_denied", targets.affected_denied, timing.affected_denied_ms),
        ("rates_under_caps", targets.rates_under_caps, timing.rates_under_caps_ms),
        ("stable", targets.stable, timing.stable_ms),
    ];
    checks
        .into_iter()
        .filter_map(|(name, target, took)| {
            let target = target?;
            match took {
                Some(took) if took <= target => None,
                Some(took) => Some(format!(
                    "rollback target `{name}` ({}) breached: took {}",
                    time::human(target),
                    time::human(took)
                )),
                None => Some(format!(
                    "rollback target `{name}` ({}) breached: not reached before the run ended",
                    time::human(target)
                )),
            }
        })
        .collect()
}
