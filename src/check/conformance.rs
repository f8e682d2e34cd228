//! D9, contract breach: the promises of CONTRACT.md that the recorded history
//! can judge — one payment per idempotency key, one `execute_key` per
//! payment, a replayed execute-cycle naming the cycle that ran (the machine's
//! log is ground truth), and each answer's HTTP status as the contract's
//! table pairs it. Answers are recorded whether or not they arrived, so a lost
//! response hides nothing; what stays ambiguous (which of two concurrent
//! authorizes was first) is not judged.

use rustc_hash::FxHashMap;
use uuid::Uuid;

use super::{Facts, Few, Invariant, Violation, violation};
use crate::contract::{Endpoint, ErrorCode, Text};
use crate::history::{Event, History, NO_PURCHASE};

const CODE: Invariant = Invariant::D9;

/// What the stack promised, gathered in record order: each identifier it
/// named, with the answers that named it. Nearly every key names one
/// identifier once, so the lists live inline ([`Few`]) and are sorted only
/// for the few that break a promise.
#[derive(Default)]
struct Promises {
    /// Per purchase (one idempotency key each): each payment its successful
    /// authorize answers named, with the first such answer.
    payments_by_purchase: FxHashMap<u32, Few<(Uuid, usize)>>,
    /// Per payment: the authorize answers that said 201 (a new payment).
    created: FxHashMap<Uuid, Few<usize>>,
    /// Per payment: each execute_key its confirm answers named, with the first such answer.
    execute_keys: FxHashMap<Uuid, Few<(Text, usize)>>,
}

/// D9: every contract promise the history can judge (see the module's doc).
pub(super) fn contract_breaches(history: &History, facts: &Facts, out: &mut Vec<Violation>) {
    let mut promises = Promises::default();
    for (index, record) in history.records.iter().enumerate() {
        match &record.event {
            Event::Answered { request, status, error, payment, execute_key, cycle } => {
                let sent = facts.requests.get(*request as usize).copied().flatten();
                if let Some(summary) = status_breach(sent.map(|(_, endpoint, _)| endpoint), *status, *error) {
                    let purchase = sent.map(|(purchase, ..)| purchase).filter(|p| *p != NO_PURCHASE);
                    out.push(violation(CODE, format!("request {request}: {summary}"), None, purchase, vec![index]));
                }
                let Some(payment) = *payment else { continue };
                match (sent, execute_key, cycle) {
                    (Some((purchase, Endpoint::Authorize, _)), ..) => {
                        promises.note_authorized(purchase, payment, *status, index);
                    }
                    (_, Some(execute_key), _) => promises.note_confirmed(payment, execute_key, index),
                    (_, _, Some(cycle)) => cycle_not_run(history, facts, payment, cycle, index, out),
                    _ => {}
                }
            }
            Event::AnswerBroken { request, status, error } => {
                let sent = facts.requests.get(*request as usize).copied().flatten();
                let purchase = sent.map(|(purchase, ..)| purchase).filter(|p| *p != NO_PURCHASE);
                let summary =
                    format!("request {request}: answered {status} with a body that breaks the contract: {error}");
                out.push(violation(CODE, summary, None, purchase, vec![index]));
            }
            Event::AuditedKey { idempotency_key, payments } if payments.len() > 1 => {
                let summary =
                    format!("the audit of idempotency key {idempotency_key} names {} payments", payments.len());
                out.push(violation(CODE, summary, None, None, vec![index]));
            }
            _ => {}
        }
    }
    promises.judge(out);
}

/// The contract's table: an error code has one status; a success is 200,
/// or 201 for authorize.
fn status_breach(endpoint: Option<Endpoint>, status: u16, error: Option<ErrorCode>) -> Option<String> {
    match error {
        Some(code) if code.http_status() != status => Some(format!(
            "answered {status} with `{}`, which the contract pairs with {}",
            <&'static str>::from(code),
            code.http_status()
        )),
        Some(_) => None,
        None if status == 201 && endpoint.is_some_and(|endpoint| endpoint != Endpoint::Authorize) => {
            Some("answered 201, which only a new payment (authorize) may be".to_string())
        }
        None if status != 200 && status != 201 => Some(format!("answered {status} without an error code")),
        None => None,
    }
}

/// A 200 of execute-cycle must name a cycle the payment's machine logged.
fn cycle_not_run(
    history: &History,
    facts: &Facts,
    payment: Uuid,
    cycle: &Text,
    index: usize,
    out: &mut Vec<Violation>,
) {
    let logged = facts.cycles.get(&payment).map_or(&[][..], |cycles| cycles.as_slice());
    let ran = |at: usize| matches!(&history.records[at].event, Event::CycleStarted { cycle: c, .. } if c == cycle);
    if logged.iter().any(|&at| ran(at)) {
        return;
    }
    let summary = if logged.is_empty() {
        format!("execute-cycle for payment {payment} answered cycle {cycle}, and no machine started a cycle for it")
    } else {
        format!("execute-cycle for payment {payment} answered cycle {cycle}, not the cycle its machine ran")
    };
    let mut witness = vec![index];
    witness.extend_from_slice(logged);
    out.push(violation(CODE, summary, Some(payment), None, witness));
}

impl Promises {
    fn note_authorized(&mut self, purchase: u32, payment: Uuid, status: u16, index: usize) {
        // posim's own probes use a fresh key each: only terminals replay.
        if purchase != NO_PURCHASE {
            note_first(self.payments_by_purchase.entry(purchase).or_default(), payment, index);
        }
        if status == 201 {
            self.created.entry(payment).or_default().push(index);
        }
    }

    fn note_confirmed(&mut self, payment: Uuid, execute_key: &Text, index: usize) {
        let keys = self.execute_keys.entry(payment).or_default();
        if !keys.iter().any(|(key, _)| key == execute_key) {
            keys.push((execute_key.clone(), index));
        }
    }

    fn judge(&self, out: &mut Vec<Violation>) {
        for (purchase, mut payments) in more_than_one(&self.payments_by_purchase) {
            payments.sort_unstable();
            let ids: Vec<String> = payments.iter().map(|(payment, _)| payment.to_string()).collect();
            let summary = format!(
                "purchase {purchase}'s idempotency key was answered with {} payments: {}",
                payments.len(),
                ids.join(", ")
            );
            out.push(violation(CODE, summary, None, Some(purchase), firsts(&payments)));
        }
        for (payment, answers) in more_than_one(&self.created) {
            let summary = format!("payment {payment} was answered 201 (new) {} times; a replay is 200", answers.len());
            out.push(violation(CODE, summary, Some(payment), None, answers));
        }
        for (payment, mut keys) in more_than_one(&self.execute_keys) {
            keys.sort_unstable();
            let names: Vec<&str> = keys.iter().map(|(key, _)| &**key).collect();
            let summary =
                format!("confirm of payment {payment} answered {} execute_keys: {}", keys.len(), names.join(", "));
            out.push(violation(CODE, summary, Some(payment), None, firsts(&keys)));
        }
    }
}

/// Adds `id` with its first answer, unless it is already listed.
fn note_first<T: PartialEq>(ids: &mut Few<(T, usize)>, id: T, index: usize) {
    if !ids.iter().any(|(known, _)| *known == id) {
        ids.push((id, index));
    }
}

/// The entries holding more than one item, in key order (a hash map has none).
fn more_than_one<K: Ord + Copy, T: Clone>(map: &FxHashMap<K, Few<T>>) -> Vec<(K, Vec<T>)> {
    let mut found: Vec<(K, Vec<T>)> =
        map.iter().filter(|(_, items)| items.len() > 1).map(|(key, items)| (*key, items.to_vec())).collect();
    found.sort_unstable_by_key(|(key, _)| *key);
    found
}

/// The first answer that named each identifier, in history order.
fn firsts<T>(named: &[(T, usize)]) -> Vec<usize> {
    let mut firsts: Vec<usize> = named.iter().map(|(_, index)| *index).collect();
    firsts.sort_unstable();
    firsts
}

#[cfg(test)]
mod tests {
    //! Hand-made histories: each promise fires with its witness when broken
    //! and stays quiet on the healthy story next to it.

    use super::super::check;
    use super::*;
    use crate::time::Millis;

    fn payment(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// A history of one purchase (it arrives first), one record a millisecond.
    fn history(events: Vec<Event>) -> History {
        let arrived = Event::Arrived { purchase: 0, condominium: 0, machine: 0 };
        let timed = std::iter::once(arrived).chain(events).enumerate().map(|(at, event)| (at as Millis, event));
        super::super::tests::history(timed.collect())
    }

    fn sent(request: u32, endpoint: Endpoint) -> Event {
        Event::Sent { request, purchase: 0, endpoint, attempt: 1, twin: false }
    }

    fn answered(request: u32, status: u16, error: Option<ErrorCode>) -> Event {
        Event::Answered { request, status, error, payment: None, execute_key: None, cycle: None }
    }

    fn authorized(request: u32, status: u16, n: u128) -> Event {
        Event::Answered { request, status, error: None, payment: Some(payment(n)), execute_key: None, cycle: None }
    }

    fn confirmed(request: u32, key: &str) -> Event {
        let execute_key = Some(key.into());
        Event::Answered { request, status: 200, error: None, payment: Some(payment(1)), execute_key, cycle: None }
    }

    fn executed(request: u32, cycle: &str) -> Event {
        let cycle = Some(cycle.into());
        Event::Answered { request, status: 200, error: None, payment: Some(payment(1)), execute_key: None, cycle }
    }

    fn cycle_started(cycle: &str) -> Event {
        Event::CycleStarted { machine: 0, payment: payment(1), execute_key: "k".into(), cycle: cycle.into() }
    }

    /// The D9 violations of a history and their witnesses.
    fn breaches(history: &History) -> Vec<(String, Vec<usize>)> {
        check(history).into_iter().filter(|v| v.code == CODE).map(|v| (v.summary, v.witness)).collect()
    }

    /// A purchase that authorizes (and replays), confirms (and replays) and
    /// executes (and replays); the replays answer with the given payment,
    /// status, execute_key and cycle (healthy: 1, 200, exk-1, c-1).
    fn flow(second_payment: u128, second_status: u16, second_key: &str, replay_cycle: &str) -> History {
        history(vec![
            sent(0, Endpoint::Authorize),
            authorized(0, 201, 1),
            sent(1, Endpoint::Authorize),
            authorized(1, second_status, second_payment),
            sent(2, Endpoint::Confirm),
            confirmed(2, "exk-1"),
            sent(3, Endpoint::Confirm),
            confirmed(3, second_key),
            sent(4, Endpoint::ExecuteCycle),
            cycle_started("c-1"),
            executed(4, "c-1"),
            sent(5, Endpoint::ExecuteCycle),
            executed(5, replay_cycle),
        ])
    }

    #[test]
    fn a_healthy_flow_with_replays_keeps_the_contract() {
        assert_eq!(breaches(&flow(1, 200, "exk-1", "c-1")), []);
    }

    #[test]
    fn each_broken_replay_is_d9_with_its_witness() {
        let cases: [(History, &str, &[usize]); 4] = [
            (flow(2, 200, "exk-1", "c-1"), "answered with 2 payments", &[2, 4]),
            (flow(1, 201, "exk-1", "c-1"), "201 (new) 2 times", &[2, 4]),
            (flow(1, 200, "exk-2", "c-1"), "2 execute_keys: exk-1, exk-2", &[6, 8]),
            // The answer, then the machine's log.
            (flow(1, 200, "exk-1", "c-9"), "not the cycle its machine ran", &[13, 10]),
        ];
        for (history, says, witness) in cases {
            let found = breaches(&history);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].0.contains(says), "expected `{says}`: {found:?}");
            assert_eq!(found[0].1, witness, "{says}");
        }
        let never = history(vec![sent(0, Endpoint::ExecuteCycle), executed(0, "c-1")]);
        let found = breaches(&never);
        assert!(found.len() == 1 && found[0].0.contains("no machine started"), "{found:?}");
    }

    #[test]
    fn statuses_follow_the_contracts_table() {
        let h = history(vec![
            sent(0, Endpoint::Confirm),
            answered(0, 402, Some(ErrorCode::PaymentNotCaptured)),
            sent(1, Endpoint::ExecuteCycle),
            answered(1, 503, Some(ErrorCode::IotFailed)),
            sent(2, Endpoint::Confirm),
            answered(2, 201, None),
            sent(3, Endpoint::Authorize),
            answered(3, 204, None),
        ]);
        let found = breaches(&h);
        let witnesses: Vec<&[usize]> = found.iter().map(|(_, w)| w.as_slice()).collect();
        assert_eq!(witnesses, [[4], [6], [8]], "{found:?}");
        assert!(found[0].0.contains("503 with `iot_failed`, which the contract pairs with 502"), "{found:?}");
        assert!(found[1].0.contains("only a new payment"), "{found:?}");
        assert!(found[2].0.contains("204 without an error code"), "{found:?}");
    }

    #[test]
    fn a_broken_body_is_d9_quoting_its_parse_error() {
        let error = "missing field `payment_id` at line 1 column 2".to_string();
        let h = history(vec![sent(0, Endpoint::Authorize), Event::AnswerBroken { request: 0, status: 201, error }]);
        let found = breaches(&h);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].0.contains("201 with a body that breaks the contract: missing field `payment_id`"),
            "{found:?}"
        );
        assert_eq!(found[0].1, [2]);
    }

    #[test]
    fn an_audit_naming_two_payments_for_one_key_is_d9() {
        let audit = |payments| Event::AuditedKey { idempotency_key: "pos-1:1".into(), payments };
        assert_eq!(breaches(&history(vec![audit(vec![payment(1)])])), []);
        let found = breaches(&history(vec![audit(vec![payment(1), payment(2)])]));
        assert_eq!(found, [("the audit of idempotency key pos-1:1 names 2 payments".to_string(), vec![1])]);
    }
}
