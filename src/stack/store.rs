//! The stack's store: the payments table and the operations the core asks of
//! it. Each operation is one atomic, conditional statement (a compare-and-set,
//! never a check-then-insert), so the uniqueness of the idempotency key, the
//! provider_ref, the execute_key and one cycle per payment holds whatever the
//! interleaving. [`MemoryStore`] serves the simulator; a PostgreSQL store
//! implements the same operations with constraints.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap as HashMap;

use uuid::Uuid;

use crate::contract::{CondominioId, PaymentId, PaymentStatus, PaymentView, Text};
use crate::time::Millis;

/// A payment's state inside the stack: the contract's statuses plus
/// `Compensating`, a refund claimed but not yet confirmed by the PSP.
/// Named in snake case in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum PaymentState {
    Authorized,
    Confirmed,
    Compensating,
    Executed,
    Compensated,
    Expired,
}

impl PaymentState {
    /// The state machine: both stores refuse any other step (only the
    /// `nonidempotent-confirm` bug rewrites a payment outside it).
    pub fn may_become(self, next: PaymentState) -> bool {
        use PaymentState::*;
        match self {
            Authorized => matches!(next, Confirmed | Compensating | Expired),
            Confirmed => matches!(next, Executed | Compensating),
            Compensating => next == Compensated,
            // A card captured after the sweep expired its payment (a terminal
            // offline past the TTL) still has to be refunded.
            Expired => next == Compensating,
            Executed | Compensated => false,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, PaymentState::Executed | PaymentState::Compensated | PaymentState::Expired)
    }

    /// The one state a [`StoreOp::Finish`] to `self` starts from; `None`
    /// when `self` is no finish (the sweep only compensates or expires).
    pub fn finished_from(self) -> Option<PaymentState> {
        let from = match self {
            PaymentState::Compensated => PaymentState::Compensating,
            PaymentState::Expired => PaymentState::Authorized,
            _ => return None,
        };
        assert!(from.may_become(self));
        Some(from)
    }
}

/// One row of the payments table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRecord {
    pub id: PaymentId,
    pub condominio_id: CondominioId,
    pub machine_id: Text,
    pub terminal_id: Text,
    pub amount_cents: i64,
    pub idempotency_key: Text,
    pub provider_ref: Option<Text>,
    pub execute_key: Option<Text>,
    pub cycle_id: Option<Text>,
    pub state: PaymentState,
    /// How many times an execution was claimed (a command may have been sent).
    pub execute_attempts: u32,
    /// While set and in the future, one execute-cycle owns the machine command.
    pub lease_until: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What a new payment is made of (the authorize request, validated).
#[derive(Clone, Debug)]
pub struct NewPayment {
    pub id: PaymentId,
    pub condominio_id: CondominioId,
    pub machine_id: Text,
    pub terminal_id: Text,
    pub amount_cents: i64,
    pub idempotency_key: Text,
}

impl PaymentRecord {
    /// A freshly authorized payment.
    pub fn authorized(new: NewPayment, now: Millis) -> Self {
        PaymentRecord {
            id: new.id,
            condominio_id: new.condominio_id,
            machine_id: new.machine_id,
            terminal_id: new.terminal_id,
            amount_cents: new.amount_cents,
            idempotency_key: new.idempotency_key,
            provider_ref: None,
            execute_key: None,
            cycle_id: None,
            state: PaymentState::Authorized,
            execute_attempts: 0,
            lease_until: None,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn status(&self) -> PaymentStatus {
        match self.state {
            PaymentState::Authorized => PaymentStatus::Authorized,
            PaymentState::Confirmed => PaymentStatus::Confirmed,
            // A refund in progress is not final yet: show where it came from.
            PaymentState::Compensating if self.execute_key.is_some() => PaymentStatus::Confirmed,
            PaymentState::Compensating => PaymentStatus::Authorized,
            PaymentState::Executed => PaymentStatus::Executed,
            PaymentState::Compensated => PaymentStatus::Compensated,
            PaymentState::Expired => PaymentStatus::Expired,
        }
    }

    pub fn lease_live(&self, now: Millis) -> bool {
        self.lease_until.is_some_and(|until| until > now)
    }

    pub fn view(&self) -> PaymentView {
        PaymentView {
            payment_id: self.id,
            condominio_id: self.condominio_id,
            machine_id: self.machine_id.clone(),
            terminal_id: self.terminal_id.clone(),
            amount_cents: self.amount_cents,
            idempotency_key: self.idempotency_key.clone(),
            provider_ref: self.provider_ref.clone(),
            execute_key: self.execute_key.clone(),
            cycle_id: self.cycle_id.clone(),
            status: self.status(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// What the core asks of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Insert unless the idempotency key exists (then: `Existing`).
    Insert(Box<PaymentRecord>),
    /// Insert although the idempotency key exists: the
    /// `authorize-replay-new-payment` bug's second payment.
    InsertReplayCopy(Box<PaymentRecord>),
    Get(PaymentId),
    FindByIdempotencyKey(Text),
    FindByProviderRef(Text),
    /// Authorized → confirmed, unless the provider_ref (then:
    /// `ProviderRefTaken`) or the execute_key (then: `Conflict`) is another
    /// payment's. `reissue` is the `nonidempotent-confirm` bug: it rewrites a
    /// confirmed or executed payment with a fresh execute_key (keeping its
    /// provider_ref).
    Confirm {
        id: PaymentId,
        provider_ref: Text,
        execute_key: Text,
        reissue: bool,
    },
    /// Take the execution lease of a confirmed payment for `lease_for` and
    /// count an attempt. The lease ends `lease_for` after the store's own
    /// clock, or after `replica_now` (the `lease-on-replica-clock` bug).
    ClaimExecution {
        id: PaymentId,
        lease_for: Millis,
        replica_now: Option<Millis>,
    },
    /// Give the lease back — only the holder of `attempt`'s lease may (a
    /// fenced release); `None` releases whoever holds it (`unfenced-start`).
    ReleaseExecution {
        id: PaymentId,
        attempt: Option<u32>,
    },
    /// Confirmed → executed, once.
    RecordCycle {
        id: PaymentId,
        cycle_id: Text,
    },
    /// Non-final payments created at or before `created_before`, oldest first.
    ListOverdue {
        created_before: Millis,
        limit: usize,
    },
    /// Payments that expired at or after `since`, in the order they expired
    /// (the sweep looks for a card captured after all).
    ListRecentlyExpired {
        since: Millis,
        limit: usize,
    },
    /// `from` → compensating, if the payment is still as the sweep saw it and
    /// has a charge to refund: its own provider_ref, or else `provider_ref`
    /// (`ProviderRefTaken` when that is another payment's).
    ClaimCompensation {
        id: PaymentId,
        from: PaymentState,
        seen_attempts: u32,
        honour_lease: bool,
        provider_ref: Option<Text>,
    },
    /// Compensating → compensated, or authorized → expired.
    Finish {
        id: PaymentId,
        to: PaymentState,
    },
}

/// The store's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreResult {
    /// The operation applied; the row as it is now.
    Done(Box<PaymentRecord>),
    /// An insert found the idempotency key taken by this row.
    Existing(Box<PaymentRecord>),
    /// A condition did not hold; the row as it is.
    Conflict(Box<PaymentRecord>),
    /// Another execution holds the lease.
    LeaseHeld(Box<PaymentRecord>),
    /// The provider_ref belongs to another payment.
    ProviderRefTaken,
    Missing,
    Found(Vec<PaymentRecord>),
}

/// A payments table with atomic, conditional operations.
pub trait Store {
    fn apply(&mut self, op: StoreOp, now: Millis) -> StoreResult;
}

/// The in-memory store of the simulator. Lookups go through hash maps; the
/// only iteration (overdue payments) walks an ordered set, so the order is
/// deterministic — and, ordered by (created_at, id), the order PostgreSQL's.
#[derive(Default)]
pub struct MemoryStore {
    rows: Vec<PaymentRecord>,
    by_id: HashMap<Uuid, usize>,
    /// The UNIQUE columns, as the database's constraints.
    by_idempotency_key: HashMap<Text, usize>,
    /// The bug's further payments under a key, after the first.
    replay_copies: HashMap<Text, Vec<usize>>,
    by_provider_ref: HashMap<Text, usize>,
    by_execute_key: HashMap<Text, usize>,
    open_by_age: BTreeSet<TimeKey>,
    /// Expired payments by when they expired (a late capture's recheck).
    expired_by_time: BTreeSet<TimeKey>,
}

/// A time and a payment id, ordered by time, then id. The id is held as a
/// `u128`: it sorts as the UUID's bytes do, and compares in one step where
/// the bytes take a `memcmp` (the ordered sets see every payment's changes).
type TimeKey = (Millis, u128);

fn time_key(at: Millis, id: PaymentId) -> TimeKey {
    (at, id.as_u128())
}

/// Whether `value` is already another row's (a UNIQUE constraint's check).
fn taken(unique: &HashMap<Text, usize>, value: &Text, index: usize) -> bool {
    unique.get(value).is_some_and(|&owner| owner != index)
}

impl MemoryStore {
    /// Forgets everything (the `state-lost-on-redeploy` bug).
    pub fn clear(&mut self) {
        *self = MemoryStore::default();
    }

    /// Every payment, ordered by id (a table has no order of its own).
    pub fn payments(&self) -> Vec<PaymentRecord> {
        let mut rows = self.rows.clone();
        rows.sort_by_key(|row| row.id);
        rows
    }

    fn row(&self, id: PaymentId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    fn found(&self, index: Option<usize>) -> StoreResult {
        StoreResult::Found(index.map(|i| self.rows[i].clone()).into_iter().collect())
    }

    fn insert(&mut self, record: PaymentRecord) -> StoreResult {
        if let Some(&index) = self.by_idempotency_key.get(&record.idempotency_key) {
            return StoreResult::Existing(Box::new(self.rows[index].clone()));
        }
        let index = self.push(record);
        self.by_idempotency_key.insert(self.rows[index].idempotency_key.clone(), index);
        self.done(index)
    }

    fn insert_replay_copy(&mut self, record: PaymentRecord) -> StoreResult {
        assert!(self.by_idempotency_key.contains_key(&record.idempotency_key), "a copy replays a taken key");
        let index = self.push(record);
        self.replay_copies.entry(self.rows[index].idempotency_key.clone()).or_default().push(index);
        self.done(index)
    }

    /// Adds a freshly authorized row; returns its index.
    fn push(&mut self, record: PaymentRecord) -> usize {
        assert!(!self.by_id.contains_key(&record.id), "payment id {} minted twice", record.id);
        // PostgreSQL's INSERT takes only what an authorize knows.
        assert_eq!(record.state, PaymentState::Authorized);
        assert!(record.provider_ref.is_none() && record.execute_key.is_none() && record.cycle_id.is_none());
        assert!(record.execute_attempts == 0 && record.lease_until.is_none() && record.updated_at == record.created_at);
        let index = self.rows.len();
        self.by_id.insert(record.id, index);
        self.open_by_age.insert(time_key(record.created_at, record.id));
        self.rows.push(record);
        index
    }

    fn find_by_idempotency_key(&self, key: &Text) -> StoreResult {
        let first = self.by_idempotency_key.get(key).copied();
        let copies = self.replay_copies.get(key).map(Vec::as_slice).unwrap_or(&[]);
        StoreResult::Found(first.iter().chain(copies).map(|&index| self.rows[index].clone()).collect())
    }

    /// Moves a row to `next`, asserting the state machine, and keeps the
    /// open-payments index in step.
    fn transition(&mut self, index: usize, next: PaymentState, now: Millis) {
        let row = &mut self.rows[index];
        assert!(row.state.may_become(next), "payment {} may not go from {:?} to {:?}", row.id, row.state, next);
        let reopened = row.state.is_final() && !next.is_final();
        if row.state == PaymentState::Expired {
            self.expired_by_time.remove(&time_key(row.updated_at, row.id));
        }
        if next == PaymentState::Expired {
            self.expired_by_time.insert(time_key(now, row.id));
        }
        row.state = next;
        row.updated_at = now;
        if next.is_final() {
            self.open_by_age.remove(&time_key(row.created_at, row.id));
        } else if reopened {
            self.open_by_age.insert(time_key(row.created_at, row.id));
        }
    }

    fn done(&self, index: usize) -> StoreResult {
        StoreResult::Done(Box::new(self.rows[index].clone()))
    }

    fn conflict(&self, index: usize) -> StoreResult {
        StoreResult::Conflict(Box::new(self.rows[index].clone()))
    }

    fn confirm(
        &mut self,
        id: PaymentId,
        provider_ref: Text,
        execute_key: Text,
        reissue: bool,
        now: Millis,
    ) -> StoreResult {
        let Some(index) = self.row(id) else { return StoreResult::Missing };
        let state = self.rows[index].state;
        if reissue && matches!(state, PaymentState::Confirmed | PaymentState::Executed) {
            return self.reissue(index, execute_key, now);
        }
        // As PostgreSQL's UPDATE: its WHERE first, then the constraints, a
        // clash of provider_ref before one of execute_key.
        if state != PaymentState::Authorized {
            return self.conflict(index);
        }
        if taken(&self.by_provider_ref, &provider_ref, index) {
            return StoreResult::ProviderRefTaken;
        }
        if taken(&self.by_execute_key, &execute_key, index) {
            return self.conflict(index);
        }
        self.by_provider_ref.insert(provider_ref.clone(), index);
        self.by_execute_key.insert(execute_key.clone(), index);
        let row = &mut self.rows[index];
        row.provider_ref = Some(provider_ref);
        row.execute_key = Some(execute_key);
        self.transition(index, PaymentState::Confirmed, now);
        self.done(index)
    }

    /// The `nonidempotent-confirm` bug: the row is rewritten as if confirmed
    /// for the first time, with a fresh execute_key.
    fn reissue(&mut self, index: usize, execute_key: Text, now: Millis) -> StoreResult {
        if taken(&self.by_execute_key, &execute_key, index) {
            return self.conflict(index);
        }
        let row = &mut self.rows[index];
        if let Some(old) = row.execute_key.replace(execute_key.clone()) {
            self.by_execute_key.remove(&old);
        }
        self.by_execute_key.insert(execute_key, index);
        if row.state == PaymentState::Executed {
            self.open_by_age.insert(time_key(row.created_at, row.id));
        }
        row.state = PaymentState::Confirmed;
        row.cycle_id = None;
        row.lease_until = None;
        row.updated_at = now;
        self.done(index)
    }

    fn claim_execution(
        &mut self,
        id: PaymentId,
        (lease_for, replica_now): (Millis, Option<Millis>),
        now: Millis,
    ) -> StoreResult {
        let Some(index) = self.row(id) else { return StoreResult::Missing };
        let row = &mut self.rows[index];
        if row.state != PaymentState::Confirmed {
            return self.conflict(index);
        }
        if row.lease_live(now) {
            return StoreResult::LeaseHeld(Box::new(row.clone()));
        }
        row.execute_attempts += 1;
        row.lease_until = Some(replica_now.unwrap_or(now).saturating_add(lease_for));
        row.updated_at = now;
        self.done(index)
    }

    fn record_cycle(&mut self, id: PaymentId, cycle_id: Text, now: Millis) -> StoreResult {
        let Some(index) = self.row(id) else { return StoreResult::Missing };
        if self.rows[index].state != PaymentState::Confirmed {
            return self.conflict(index);
        }
        assert!(self.rows[index].cycle_id.is_none(), "payment {id} already has a cycle");
        self.rows[index].cycle_id = Some(cycle_id);
        self.rows[index].lease_until = None;
        self.transition(index, PaymentState::Executed, now);
        self.done(index)
    }

    fn claim_compensation(&mut self, op: ClaimCompensation, now: Millis) -> StoreResult {
        let Some(index) = self.row(op.id) else { return StoreResult::Missing };
        let row = &self.rows[index];
        let unchanged = row.state == op.from && row.execute_attempts == op.seen_attempts;
        let refundable =
            op.from.may_become(PaymentState::Compensating) && (row.provider_ref.is_some() || op.provider_ref.is_some());
        if !unchanged || !refundable || (op.honour_lease && row.lease_live(now)) {
            return self.conflict(index);
        }
        if let Some(provider_ref) = op.provider_ref
            && self.rows[index].provider_ref.is_none()
        {
            if taken(&self.by_provider_ref, &provider_ref, index) {
                return StoreResult::ProviderRefTaken;
            }
            self.by_provider_ref.insert(provider_ref.clone(), index);
            self.rows[index].provider_ref = Some(provider_ref);
        }
        self.transition(index, PaymentState::Compensating, now);
        self.done(index)
    }

    fn finish(&mut self, id: PaymentId, to: PaymentState, now: Millis) -> StoreResult {
        let Some(index) = self.row(id) else { return StoreResult::Missing };
        if to.finished_from() != Some(self.rows[index].state) {
            return self.conflict(index);
        }
        self.transition(index, to, now);
        self.done(index)
    }

    fn list_overdue(&self, created_before: Millis, limit: usize) -> StoreResult {
        let rows = self
            .open_by_age
            .iter()
            .take_while(|(created_at, _)| *created_at <= created_before)
            .take(limit)
            .map(|&(_, id)| self.rows[self.by_id[&Uuid::from_u128(id)]].clone())
            .collect();
        StoreResult::Found(rows)
    }
}

/// The arguments of [`StoreOp::ClaimCompensation`], unpacked.
struct ClaimCompensation {
    id: PaymentId,
    from: PaymentState,
    seen_attempts: u32,
    honour_lease: bool,
    provider_ref: Option<Text>,
}

impl Store for MemoryStore {
    fn apply(&mut self, op: StoreOp, now: Millis) -> StoreResult {
        match op {
            StoreOp::Insert(record) => self.insert(*record),
            StoreOp::InsertReplayCopy(record) => self.insert_replay_copy(*record),
            StoreOp::Get(id) => match self.row(id) {
                Some(index) => self.done(index),
                None => StoreResult::Missing,
            },
            StoreOp::FindByIdempotencyKey(key) => self.find_by_idempotency_key(&key),
            StoreOp::FindByProviderRef(provider_ref) => self.found(self.by_provider_ref.get(&provider_ref).copied()),
            StoreOp::Confirm { id, provider_ref, execute_key, reissue } => {
                self.confirm(id, provider_ref, execute_key, reissue, now)
            }
            StoreOp::ClaimExecution { id, lease_for, replica_now } => {
                self.claim_execution(id, (lease_for, replica_now), now)
            }
            StoreOp::ReleaseExecution { id, attempt } => match self.row(id) {
                Some(index) if attempt.is_none_or(|attempt| self.rows[index].execute_attempts == attempt) => {
                    self.rows[index].lease_until = None;
                    self.done(index)
                }
                Some(index) => self.conflict(index),
                None => StoreResult::Missing,
            },
            StoreOp::RecordCycle { id, cycle_id } => self.record_cycle(id, cycle_id, now),
            StoreOp::ListOverdue { created_before, limit } => self.list_overdue(created_before, limit),
            StoreOp::ListRecentlyExpired { since, limit } => {
                let ids = self.expired_by_time.range((since, 0)..).take(limit);
                StoreResult::Found(ids.map(|&(_, id)| self.rows[self.by_id[&Uuid::from_u128(id)]].clone()).collect())
            }
            StoreOp::ClaimCompensation { id, from, seen_attempts, honour_lease, provider_ref } => {
                self.claim_compensation(ClaimCompensation { id, from, seen_attempts, honour_lease, provider_ref }, now)
            }
            StoreOp::Finish { id, to } => self.finish(id, to, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u128, key: &str) -> Box<PaymentRecord> {
        let new = NewPayment {
            id: Uuid::from_u128(n),
            condominio_id: Uuid::from_u128(99),
            machine_id: "m1".into(),
            terminal_id: "t1".into(),
            amount_cents: 1500,
            idempotency_key: key.into(),
        };
        Box::new(PaymentRecord::authorized(new, 0))
    }

    fn confirm(id: u128, provider_ref: &str) -> StoreOp {
        StoreOp::Confirm {
            id: Uuid::from_u128(id),
            provider_ref: provider_ref.into(),
            execute_key: "x".into(),
            reissue: false,
        }
    }

    #[test]
    fn keys_and_provider_refs_are_unique() {
        let mut store = MemoryStore::default();
        assert!(matches!(store.apply(StoreOp::Insert(record(1, "k1")), 0), StoreResult::Done(_)));
        assert!(
            matches!(store.apply(StoreOp::Insert(record(2, "k1")), 0), StoreResult::Existing(p) if p.id == Uuid::from_u128(1))
        );
        store.apply(StoreOp::Insert(record(2, "k2")), 0);
        assert!(matches!(store.apply(confirm(1, "ch1"), 1), StoreResult::Done(_)));
        assert_eq!(store.apply(confirm(2, "ch1"), 1), StoreResult::ProviderRefTaken);
        assert!(
            matches!(store.apply(confirm(1, "ch1"), 2), StoreResult::Conflict(_)),
            "a second confirm does not rewrite"
        );
    }

    #[test]
    fn one_execution_lease_and_one_cycle() {
        let mut store = MemoryStore::default();
        let id = Uuid::from_u128(1);
        store.apply(StoreOp::Insert(record(1, "k1")), 0);
        store.apply(confirm(1, "ch1"), 0);
        assert!(
            matches!(store.apply(StoreOp::ClaimExecution { id, lease_for: 90, replica_now: None }, 10), StoreResult::Done(p) if p.execute_attempts == 1)
        );
        assert!(matches!(
            store.apply(StoreOp::ClaimExecution { id, lease_for: 90, replica_now: None }, 20),
            StoreResult::LeaseHeld(_)
        ));
        let claim = StoreOp::ClaimCompensation {
            id,
            from: PaymentState::Confirmed,
            seen_attempts: 1,
            honour_lease: true,
            provider_ref: None,
        };
        assert!(matches!(store.apply(claim, 30), StoreResult::Conflict(_)), "the sweep honours the lease");
        assert!(matches!(store.apply(StoreOp::RecordCycle { id, cycle_id: "c1".into() }, 40), StoreResult::Done(_)));
        assert!(matches!(
            store.apply(StoreOp::RecordCycle { id, cycle_id: "c2".into() }, 50),
            StoreResult::Conflict(_)
        ));
        assert_eq!(
            store.apply(StoreOp::ListOverdue { created_before: 1_000, limit: 10 }, 60),
            StoreResult::Found(vec![])
        );
    }

    #[test]
    #[should_panic(expected = "may not go from")]
    fn the_state_machine_is_asserted() {
        let mut store = MemoryStore::default();
        store.apply(StoreOp::Insert(record(1, "k1")), 0);
        store.transition(0, PaymentState::Executed, 1);
    }
}
