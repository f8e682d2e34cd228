//! The store's contract, checked on generated sequences of operations: the
//! in-memory store (the simulator's) and PostgreSQL (`posim stack serve`'s)
//! give the same answer to every operation and end with the same rows; and
//! the memory store keeps the state machine's invariants whatever comes. The
//! pools of ids, idempotency keys, provider_refs and execute_keys are small,
//! so that clashes and lost races are common, and `now` never goes back.

use std::collections::HashSet;

use posim::contract::{PaymentId, Text};
use posim::live::postgres::ThrowawayPostgres;
use posim::stack::pg::PgStore;
use posim::stack::store::{MemoryStore, NewPayment, PaymentRecord, PaymentState, Store, StoreOp, StoreResult};
use posim::time::Millis;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use uuid::Uuid;

/// The ids inserts of a new key mint, in that order (one a key): not in id
/// order, so that listing by (created_at, id) is not listing by insertion.
const IDS: [u128; 4] = [0x30, 0x10, 0x40, 0x20];
/// Operations also name an id no insert mints (then: `Missing`).
const NEVER_MINTED: u128 = 0x70;
const KEYS: [&str; 4] = ["key-a", "key-b", "key-c", "key-d"];
const PROVIDER_REFS: [&str; 3] = ["ch_a", "ch_b", "ch_c"];
const EXECUTE_KEYS: [&str; 3] = ["exk-a", "exk-b", "exk-c"];
const CYCLES: [&str; 2] = ["cycle-a", "cycle-b"];
const STATES: [PaymentState; 6] = [
    PaymentState::Authorized,
    PaymentState::Confirmed,
    PaymentState::Compensating,
    PaymentState::Executed,
    PaymentState::Compensated,
    PaymentState::Expired,
];
/// Times lie in the range `now` covers (up to 2 ms a step, 40 steps), so
/// leases and cut-offs fall both before and after it.
const TIMES: std::ops::Range<Millis> = 0..90;

/// An authorize as the core writes it.
fn fresh(id: PaymentId, idempotency_key: Text, now: Millis) -> Box<PaymentRecord> {
    let new = NewPayment {
        id,
        condominio_id: Uuid::from_u128(0xc0),
        machine_id: "machine-1".into(),
        terminal_id: "terminal-1".into(),
        amount_cents: 1500,
        idempotency_key,
    };
    Box::new(PaymentRecord::authorized(new, now))
}

fn pooled(pool: &'static [&'static str]) -> impl Strategy<Value = Text> + Clone {
    select(pool).prop_map(Text::from)
}

/// Mostly the first ids minted, so that operations meet on a few payments
/// and take them deep into the state machine.
fn any_id() -> impl Strategy<Value = PaymentId> + Clone {
    let id = prop_oneof![6 => select(&IDS[..2]), 3 => select(&IDS[2..]), 1 => Just(NEVER_MINTED)];
    id.prop_map(Uuid::from_u128)
}

/// Mostly the states an operation expects (a sweep claims from authorized
/// or confirmed, finishes to compensated or expired), sometimes any.
fn likely_state(likely: [PaymentState; 2]) -> impl Strategy<Value = PaymentState> {
    prop_oneof![2 => select(likely.to_vec()), 1 => select(&STATES[..])]
}

/// An insert; its id and times are set by [`timed`].
fn insert() -> impl Strategy<Value = StoreOp> {
    pooled(&KEYS).prop_map(|key| StoreOp::Insert(fresh(Uuid::nil(), key, 0)))
}

fn op() -> impl Strategy<Value = StoreOp> {
    let id = any_id;
    prop_oneof![
        3 => insert(),
        1 => id().prop_map(StoreOp::Get),
        1 => pooled(&KEYS).prop_map(StoreOp::FindByIdempotencyKey),
        1 => pooled(&PROVIDER_REFS).prop_map(StoreOp::FindByProviderRef),
        4 => (id(), pooled(&PROVIDER_REFS), pooled(&EXECUTE_KEYS), any::<bool>()).prop_map(
            |(id, provider_ref, execute_key, reissue)| StoreOp::Confirm { id, provider_ref, execute_key, reissue }
        ),
        3 => (id(), TIMES, proptest::option::of(TIMES))
            .prop_map(|(id, lease_for, replica_now)| StoreOp::ClaimExecution { id, lease_for, replica_now }),
        1 => (id(), proptest::option::of(0u32..4)).prop_map(|(id, attempt)| StoreOp::ReleaseExecution { id, attempt }),
        3 => (id(), pooled(&CYCLES)).prop_map(|(id, cycle_id)| StoreOp::RecordCycle { id, cycle_id }),
        2 => (TIMES, 0..4usize).prop_map(|(created_before, limit)| StoreOp::ListOverdue { created_before, limit }),
        1 => (TIMES, 0..4usize).prop_map(|(since, limit)| StoreOp::ListRecentlyExpired { since, limit }),
        4 => (id(), likely_state([PaymentState::Authorized, PaymentState::Confirmed]), prop_oneof![3 => Just(0), 1 => 1..3u32], any::<bool>(), proptest::option::of(pooled(&PROVIDER_REFS)))
            .prop_map(|(id, from, seen_attempts, honour_lease, provider_ref)| StoreOp::ClaimCompensation {
                id,
                from,
                seen_attempts,
                honour_lease,
                provider_ref
            }),
        3 => (id(), likely_state([PaymentState::Compensated, PaymentState::Expired])).prop_map(|(id, to)| StoreOp::Finish { id, to }),
    ]
}

/// Gives each operation its `now` (never going back, often standing still)
/// and each insert a freshly minted id created now, as the core does. The
/// pool's ids go to the inserts that store a row (a new key), so that
/// operations on them find a payment; a replayed key gets an id off the pool.
fn timed(steps: Vec<(Millis, StoreOp)>) -> Vec<(Millis, StoreOp)> {
    let mut now = 0;
    let mut keys = HashSet::new();
    let mut timed = Vec::with_capacity(steps.len());
    for (step, (advance, mut op)) in steps.into_iter().enumerate() {
        now += advance;
        if let StoreOp::Insert(record) = &mut op {
            let key = record.idempotency_key.clone();
            let pooled = if keys.insert(key.clone()) { IDS.get(keys.len() - 1) } else { None };
            let id = pooled.copied().unwrap_or(0x1000 + step as u128);
            *record = fresh(Uuid::from_u128(id), key, now);
        }
        timed.push((now, op));
    }
    timed
}

/// A few inserts, then anything: most operations find their payment.
fn sequences() -> impl Strategy<Value = Vec<(Millis, StoreOp)>> {
    let step = |op| (0..=2 as Millis, op);
    let inserts = proptest::collection::vec(step(insert().boxed()), 2..4);
    let rest = proptest::collection::vec(step(op().boxed()), 0..40);
    (inserts, rest).prop_map(|(inserts, rest)| timed(inserts.into_iter().chain(rest).collect()))
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

fn postgres_store(
    postgres: &ThrowawayPostgres,
    runtime: &tokio::runtime::Runtime,
) -> (PgStore, deadpool_postgres::Pool) {
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(postgres.url());
    let pool = config
        .create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls)
        .expect("a pool for the throwaway PostgreSQL");
    let store = PgStore::on_given_clock(pool.clone());
    runtime.block_on(store.migrate()).expect("the migrations apply");
    (store, pool)
}

/// Empties the tables between cases: DELETE, as TRUNCATE makes new files
/// each time and was most of the suite's time.
async fn reset(pool: &deadpool_postgres::Pool) -> Result<(), TestCaseError> {
    let client = pool.get().await.map_err(|error| TestCaseError::fail(error.to_string()))?;
    let emptied = client.batch_execute("DELETE FROM payment_cycles; DELETE FROM payments").await;
    emptied.map_err(|error| TestCaseError::fail(error.to_string()))
}

#[test]
#[ignore = "needs PostgreSQL"]
fn postgres_answers_every_operation_as_the_memory_store() {
    let postgres = ThrowawayPostgres::start().expect("a throwaway PostgreSQL (install postgresql)");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let (pg, pool) = postgres_store(&postgres, &runtime);
    let outcome = runner(1_000).run(&sequences(), |ops| {
        runtime.block_on(reset(&pool))?;
        let mut memory = MemoryStore::default();
        for (step, (now, op)) in ops.iter().enumerate() {
            let expected = memory.apply(op.clone(), *now);
            let answered = runtime.block_on(pg.apply(op.clone(), *now));
            let answered = answered.map_err(|error| TestCaseError::fail(format!("step {step}: {error}")))?;
            prop_assert_eq!(answered, expected, "step {}: {:?} at {}", step, op, now);
        }
        // The one normalisation: a table has no order, so both stores list
        // their rows by id. Every field is compared as it is.
        let rows = runtime.block_on(pg.payments()).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(rows, memory.payments());
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

#[test]
fn the_memory_store_keeps_the_state_machine() {
    let outcome = runner(2_000).run(&sequences(), |ops| {
        let mut store = MemoryStore::default();
        for (now, op) in ops {
            let before = store.payments();
            let result = store.apply(op.clone(), now);
            let after = store.payments();
            answer_matches_rows(&op, &result, &before, &after)?;
            for row in &after {
                row_is_consistent(row, now)?;
                if let Some(old) = before.iter().find(|old| old.id == row.id) {
                    step_is_allowed(&op, old, row)?;
                }
            }
            unique_columns_are_unique(&after)?;
            indexes_agree_with_rows(&mut store, &after, now)?;
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// `Done` wrote (at most) the named row and shows it as stored; every other
/// answer left the table as it was.
fn answer_matches_rows(
    op: &StoreOp,
    result: &StoreResult,
    before: &[PaymentRecord],
    after: &[PaymentRecord],
) -> Result<(), TestCaseError> {
    match result {
        StoreResult::Done(row) => {
            prop_assert_eq!(after.iter().find(|stored| stored.id == row.id), Some(&**row), "{:?}", op);
            let others = |rows: &[PaymentRecord]| rows.iter().filter(|r| r.id != row.id).cloned().collect::<Vec<_>>();
            prop_assert_eq!(others(before), others(after), "{:?} touched another row", op);
        }
        StoreResult::Existing(row) | StoreResult::Conflict(row) | StoreResult::LeaseHeld(row) => {
            prop_assert_eq!(before.iter().find(|stored| stored.id == row.id), Some(&**row), "{:?}", op);
            prop_assert_eq!(before, after, "{:?} refused yet wrote", op);
        }
        StoreResult::ProviderRefTaken | StoreResult::Missing | StoreResult::Found(_) => {
            prop_assert_eq!(before, after, "{:?} wrote", op);
        }
    }
    Ok(())
}

/// What each state implies of a row's other columns.
fn row_is_consistent(row: &PaymentRecord, now: Millis) -> Result<(), TestCaseError> {
    use PaymentState::*;
    if matches!(row.state, Confirmed | Executed) {
        prop_assert!(row.execute_key.is_some(), "confirmed without an execute_key: {:?}", row);
    }
    prop_assert!(row.execute_key.is_none() || row.provider_ref.is_some(), "an execute_key without a charge: {:?}", row);
    let charged = !matches!(row.state, Authorized | Expired);
    prop_assert_eq!(row.provider_ref.is_some(), charged, "a charge exactly past authorized: {:?}", row);
    prop_assert_eq!(row.cycle_id.is_some(), row.state == Executed, "a cycle exactly when executed: {:?}", row);
    if matches!(row.state, Authorized | Executed | Expired) {
        prop_assert!(row.lease_until.is_none(), "no lease: {:?}", row);
    }
    if row.state == Authorized {
        prop_assert_eq!(row.execute_attempts, 0);
    }
    prop_assert!(row.created_at <= row.updated_at && row.updated_at <= now, "{:?}", row);
    Ok(())
}

/// A row only moves along the state machine (or, by the reissue bug, back
/// to confirmed), keeps its past and never forgets an attempt.
fn step_is_allowed(op: &StoreOp, old: &PaymentRecord, new: &PaymentRecord) -> Result<(), TestCaseError> {
    let reissued = matches!(op, StoreOp::Confirm { reissue: true, .. })
        && matches!(old.state, PaymentState::Confirmed | PaymentState::Executed)
        && new.state == PaymentState::Confirmed;
    let moved = old.state == new.state || old.state.may_become(new.state) || reissued;
    prop_assert!(moved, "{:?} took {:?} to {:?}", op, old.state, new.state);
    prop_assert!(old.provider_ref.is_none() || old.provider_ref == new.provider_ref, "{:?} changed a charge", op);
    prop_assert!(new.execute_attempts >= old.execute_attempts && new.updated_at >= old.updated_at);
    prop_assert_eq!((old.created_at, &old.idempotency_key), (new.created_at, &new.idempotency_key));
    Ok(())
}

fn unique_columns_are_unique(rows: &[PaymentRecord]) -> Result<(), TestCaseError> {
    let columns: [fn(&PaymentRecord) -> Option<Text>; 3] =
        [|r| Some(r.idempotency_key.clone()), |r| r.provider_ref.clone(), |r| r.execute_key.clone()];
    for column in columns {
        let values: Vec<Text> = rows.iter().filter_map(column).collect();
        let distinct: HashSet<&Text> = values.iter().collect();
        prop_assert_eq!(distinct.len(), values.len(), "a UNIQUE column repeats: {:?}", values);
    }
    Ok(())
}

/// The store's lookups (hash maps and an ordered set) find what a scan of
/// the rows finds.
fn indexes_agree_with_rows(store: &mut MemoryStore, rows: &[PaymentRecord], now: Millis) -> Result<(), TestCaseError> {
    for key in KEYS {
        let scanned = rows.iter().filter(|row| &*row.idempotency_key == key).cloned().collect();
        prop_assert_eq!(store.apply(StoreOp::FindByIdempotencyKey(key.into()), now), StoreResult::Found(scanned));
    }
    for provider_ref in PROVIDER_REFS {
        let scanned = rows.iter().filter(|row| row.provider_ref.as_deref() == Some(provider_ref)).cloned().collect();
        let found = store.apply(StoreOp::FindByProviderRef(provider_ref.into()), now);
        prop_assert_eq!(found, StoreResult::Found(scanned), "{}", provider_ref);
    }
    let mut open: Vec<PaymentRecord> = rows.iter().filter(|row| !row.state.is_final()).cloned().collect();
    open.sort_by_key(|row| (row.created_at, row.id));
    let listed = store.apply(StoreOp::ListOverdue { created_before: Millis::MAX, limit: usize::MAX }, now);
    prop_assert_eq!(listed, StoreResult::Found(open));
    Ok(())
}
