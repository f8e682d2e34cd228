//! The stack's store on PostgreSQL: the same operations as the in-memory
//! store, each one conditional SQL statement, with the uniqueness a payments
//! system needs enforced by the database itself — the idempotency key, the
//! provider_ref and the execute_key are UNIQUE, and one cycle per payment is
//! a primary key — never by a check-then-insert. `tests/store_conformance.rs`
//! checks that both stores answer every operation alike.

use deadpool_postgres::Pool;
use tokio_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::store::{PaymentRecord, PaymentState, StoreOp, StoreResult};
use crate::contract::names;
use crate::time::Millis;

/// Applied at start-up; each statement is idempotent. A violation is told
/// apart by its constraint's name; the names are those PostgreSQL gives
/// unnamed constraints, so a table an older migration made has them too.
/// The advisory lock key the migrations are applied under ("posim" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_6f73_696d;

pub const MIGRATIONS: &str = "
CREATE TABLE IF NOT EXISTS payments (
    id uuid CONSTRAINT payments_pkey PRIMARY KEY,
    condominio_id uuid NOT NULL,
    machine_id text NOT NULL,
    terminal_id text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents BETWEEN 1 AND 100000000),
    idempotency_key text NOT NULL,
    provider_ref text CONSTRAINT payments_provider_ref_key UNIQUE,
    execute_key text CONSTRAINT payments_execute_key_key UNIQUE,
    cycle_id text,
    state text NOT NULL CHECK (state IN ('authorized', 'confirmed', 'compensating', 'executed', 'compensated', 'expired')),
    execute_attempts integer NOT NULL DEFAULT 0,
    lease_until bigint,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    -- A second payment under a taken key: only the authorize-replay-new-payment bug writes one.
    replay_copy boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX IF NOT EXISTS payments_idempotency_key ON payments (idempotency_key) WHERE NOT replay_copy;
CREATE TABLE IF NOT EXISTS payment_cycles (
    payment_id uuid CONSTRAINT payment_cycles_pkey PRIMARY KEY REFERENCES payments (id),
    cycle_id text NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_open_by_age ON payments (created_at, id)
    WHERE state IN ('authorized', 'confirmed', 'compensating');
";

/// A store operation that could not be carried out (the database is down, say).
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(String);

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        // The driver's own text of a server's error is only "db error".
        match error.as_db_error() {
            Some(server) => StoreError(server.to_string()),
            None => StoreError(error.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        StoreError(error.to_string())
    }
}

fn state_name(state: PaymentState) -> &'static str {
    state.into()
}

fn parse_state(name: &str) -> PaymentState {
    names::parse("payment state", name).unwrap_or_else(|error| panic!("the database's CHECK admits it: {error}"))
}

fn record(row: &Row) -> PaymentRecord {
    let text = |column: &str| row.get::<_, String>(column).into();
    let optional = |column: &str| row.get::<_, Option<String>>(column).map(Into::into);
    let millis = |column: &str| row.get::<_, i64>(column) as Millis;
    PaymentRecord {
        id: row.get("id"),
        condominio_id: row.get("condominio_id"),
        machine_id: text("machine_id"),
        terminal_id: text("terminal_id"),
        amount_cents: row.get("amount_cents"),
        idempotency_key: text("idempotency_key"),
        provider_ref: optional("provider_ref"),
        execute_key: optional("execute_key"),
        cycle_id: optional("cycle_id"),
        state: parse_state(row.get("state")),
        execute_attempts: row.get::<_, i32>("execute_attempts") as u32,
        lease_until: row.get::<_, Option<i64>>("lease_until").map(|at| at as Millis),
        created_at: millis("created_at"),
        updated_at: millis("updated_at"),
    }
}

fn done(row: Option<Row>) -> Option<StoreResult> {
    row.map(|row| StoreResult::Done(Box::new(record(&row))))
}

/// The constraints [`MIGRATIONS`] names and the store tells apart.
const PROVIDER_REF_UNIQUE: &str = "payments_provider_ref_key";
const EXECUTE_KEY_UNIQUE: &str = "payments_execute_key_key";
const ONE_CYCLE: &str = "payment_cycles_pkey";

/// The name of the UNIQUE constraint a statement violated, if that is why it failed.
fn violated(error: &tokio_postgres::Error) -> Option<&str> {
    let error = error.as_db_error().filter(|error| *error.code() == SqlState::UNIQUE_VIOLATION)?;
    error.constraint()
}

/// The payments table on PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Judge leases on the `now` each call passes instead of the database's
    /// clock (the conformance tests compare this store with the memory one
    /// on made-up times).
    given_clock: bool,
}

impl PgStore {
    /// A store that judges leases on the database's clock.
    pub fn new(pool: Pool) -> Self {
        PgStore { pool, given_clock: false }
    }

    /// A store that judges leases on the `now` of each call (tests).
    pub fn on_given_clock(pool: Pool) -> Self {
        PgStore { pool, given_clock: true }
    }

    /// Applies the migrations in one transaction under an advisory lock:
    /// replicas starting together on an empty database (shards, a rolling
    /// deploy) would otherwise race on `CREATE TABLE IF NOT EXISTS`.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let locked = format!("BEGIN; SELECT pg_advisory_xact_lock({MIGRATION_LOCK}); {MIGRATIONS} COMMIT;");
        client.batch_execute(&locked).await?;
        Ok(())
    }

    /// Empties the tables (the `state-lost-on-redeploy` bug).
    pub async fn forget_everything(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.batch_execute("TRUNCATE payment_cycles, payments").await?;
        Ok(())
    }

    /// Every payment, ordered by id.
    pub async fn payments(&self) -> Result<Vec<PaymentRecord>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client.query("SELECT * FROM payments ORDER BY id", &[]).await?;
        Ok(rows.iter().map(record).collect())
    }

    /// Applies one operation; see [`StoreOp`] for what each one means.
    pub async fn apply(&self, op: StoreOp, now: Millis) -> Result<StoreResult, StoreError> {
        let client = self.pool.get().await?;
        let client = &**client;
        let now = now as i64;
        // `$store_now` in the SQL below: NULL means the database's clock.
        let store_now = self.given_clock.then_some(now);
        match op {
            StoreOp::Insert(record) => insert(client, &record).await,
            StoreOp::InsertReplayCopy(record) => insert_replay_copy(client, &record).await,
            StoreOp::Get(id) => current(client, id).await,
            StoreOp::FindByIdempotencyKey(key) => find(client, "idempotency_key", &key).await,
            StoreOp::FindByProviderRef(reference) => find(client, "provider_ref", &reference).await,
            StoreOp::Confirm { id, provider_ref, execute_key, reissue } => {
                confirm(client, id, (&provider_ref, &execute_key), reissue, now).await
            }
            StoreOp::ClaimExecution { id, lease_for, replica_now } => {
                let lease = (lease_for as i64, replica_now.map(|at| at as i64));
                claim_execution(client, id, lease, (now, store_now)).await
            }
            StoreOp::ReleaseExecution { id, attempt } => {
                let attempt = attempt.map(|attempt| attempt as i32);
                let row = client
                    .query_opt(
                        "UPDATE payments SET lease_until = NULL
                         WHERE id = $1 AND ($2::int IS NULL OR execute_attempts = $2) RETURNING *",
                        &[&id, &attempt],
                    )
                    .await;
                conditional(client, id, row).await
            }
            StoreOp::RecordCycle { id, cycle_id } => record_cycle(client, id, &cycle_id, now).await,
            StoreOp::ListOverdue { created_before, limit } => {
                let rows = client
                    .query(
                        "SELECT * FROM payments WHERE state IN ('authorized', 'confirmed', 'compensating')
                         AND created_at <= $1 ORDER BY created_at, id LIMIT $2",
                        &[&(created_before as i64), &i64::try_from(limit).unwrap_or(i64::MAX)],
                    )
                    .await?;
                Ok(StoreResult::Found(rows.iter().map(record).collect()))
            }
            StoreOp::ListRecentlyExpired { since, limit } => {
                let rows = client
                    .query(
                        "SELECT * FROM payments WHERE state = 'expired' AND updated_at >= $1
                         ORDER BY updated_at, id LIMIT $2",
                        &[&(since as i64), &i64::try_from(limit).unwrap_or(i64::MAX)],
                    )
                    .await?;
                Ok(StoreResult::Found(rows.iter().map(record).collect()))
            }
            StoreOp::ClaimCompensation { id, from, seen_attempts, honour_lease, provider_ref } => {
                if !from.may_become(PaymentState::Compensating) {
                    return unchanged(client, id).await;
                }
                let row = client
                    .query_opt(
                        &format!(
                            "UPDATE payments SET state = 'compensating', provider_ref = COALESCE(provider_ref, $5),
                         updated_at = $6 WHERE id = $1 AND state = $2 AND execute_attempts = $3
                         AND (NOT $4 OR lease_until IS NULL OR lease_until <= COALESCE($7, {DB_NOW}))
                         AND COALESCE(provider_ref, $5) IS NOT NULL RETURNING *"
                        ),
                        &[
                            &id,
                            &state_name(from),
                            &(seen_attempts as i32),
                            &honour_lease,
                            &provider_ref.as_deref(),
                            &now,
                            &store_now,
                        ],
                    )
                    .await;
                conditional(client, id, row).await
            }
            StoreOp::Finish { id, to } => {
                let Some(from) = to.finished_from() else { return unchanged(client, id).await };
                let row = client
                    .query_opt(
                        "UPDATE payments SET state = $2, updated_at = $4 WHERE id = $1 AND state = $3 RETURNING *",
                        &[&id, &state_name(to), &state_name(from), &now],
                    )
                    .await;
                conditional(client, id, row).await
            }
        }
    }
}

async fn current(client: &impl GenericClient, id: Uuid) -> Result<StoreResult, StoreError> {
    let row = client.query_opt("SELECT * FROM payments WHERE id = $1", &[&id]).await?;
    Ok(done(row).unwrap_or(StoreResult::Missing))
}

/// The row as it is, as a conflict (or missing).
async fn unchanged(client: &impl GenericClient, id: Uuid) -> Result<StoreResult, StoreError> {
    Ok(match current(client, id).await? {
        StoreResult::Done(row) => StoreResult::Conflict(row),
        other => other,
    })
}

/// A conditional UPDATE's answer: the row it wrote; or, when its WHERE matched
/// nothing or it would break a UNIQUE constraint, the row as it is.
async fn conditional(
    client: &impl GenericClient,
    id: Uuid,
    updated: Result<Option<Row>, tokio_postgres::Error>,
) -> Result<StoreResult, StoreError> {
    match updated {
        Ok(Some(row)) => Ok(StoreResult::Done(Box::new(record(&row)))),
        Ok(None) => unchanged(client, id).await,
        Err(error) => match violated(&error) {
            Some(PROVIDER_REF_UNIQUE) => Ok(StoreResult::ProviderRefTaken),
            Some(EXECUTE_KEY_UNIQUE | ONE_CYCLE) => unchanged(client, id).await,
            _ => Err(error.into()),
        },
    }
}

async fn insert(client: &impl GenericClient, r: &PaymentRecord) -> Result<StoreResult, StoreError> {
    let tail = "ON CONFLICT (idempotency_key) WHERE NOT replay_copy DO NOTHING RETURNING *";
    if let Some(row) = insert_row(client, r, false, tail).await? {
        return Ok(StoreResult::Done(Box::new(record(&row))));
    }
    let existing = client
        .query_one("SELECT * FROM payments WHERE idempotency_key = $1 AND NOT replay_copy", &[&&*r.idempotency_key])
        .await?;
    Ok(StoreResult::Existing(Box::new(record(&existing))))
}

/// The bug's second payment under a key that is taken.
async fn insert_replay_copy(client: &impl GenericClient, r: &PaymentRecord) -> Result<StoreResult, StoreError> {
    let row = insert_row(client, r, true, "RETURNING *").await?;
    done(row).ok_or_else(|| StoreError("an unconditional INSERT returned no row".into()))
}

async fn insert_row(
    client: &impl GenericClient,
    r: &PaymentRecord,
    replay_copy: bool,
    tail: &str,
) -> Result<Option<Row>, tokio_postgres::Error> {
    let statement = format!(
        "INSERT INTO payments (id, condominio_id, machine_id, terminal_id, amount_cents, idempotency_key,
         replay_copy, state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'authorized', $8, $8) {tail}"
    );
    let created_at = r.created_at as i64;
    client
        .query_opt(
            &statement,
            &[
                &r.id,
                &r.condominio_id,
                &&*r.machine_id,
                &&*r.terminal_id,
                &r.amount_cents,
                &&*r.idempotency_key,
                &replay_copy,
                &created_at,
            ],
        )
        .await
}

async fn find(client: &impl GenericClient, column: &str, value: &str) -> Result<StoreResult, StoreError> {
    // `column` is one of two fixed names, never input.
    assert!(matches!(column, "idempotency_key" | "provider_ref"));
    let rows = client.query(&format!("SELECT * FROM payments WHERE {column} = $1"), &[&value]).await?;
    Ok(StoreResult::Found(rows.iter().map(record).collect()))
}

/// One statement: authorized → confirmed; with `reissue` (the bug) also a
/// confirmed or executed payment, keeping its provider_ref and losing its
/// cycle. A payment past `authorized` always has a provider_ref, so
/// COALESCE sets it exactly on a first confirm.
async fn confirm(
    client: &impl GenericClient,
    id: Uuid,
    (provider_ref, execute_key): (&str, &str),
    reissue: bool,
    now: i64,
) -> Result<StoreResult, StoreError> {
    let updated = client
        .query_opt(
            "WITH confirmed AS (
                 UPDATE payments SET state = 'confirmed', provider_ref = COALESCE(provider_ref, $2),
                 execute_key = $3, cycle_id = NULL, lease_until = NULL, updated_at = $4
                 WHERE id = $1 AND (state = 'authorized' OR ($5 AND state IN ('confirmed', 'executed')))
                 RETURNING *),
             forgotten AS (DELETE FROM payment_cycles WHERE payment_id IN (SELECT id FROM confirmed))
             SELECT * FROM confirmed",
            &[&id, &provider_ref, &execute_key, &now, &reissue],
        )
        .await;
    // PostgreSQL names one violated constraint; the provider_ref's comes
    // first, as in the memory store. A provider_ref is never changed once
    // set, so asking after the failed statement reads what it met.
    if let Err(error) = &updated
        && violated(error) == Some(EXECUTE_KEY_UNIQUE)
        && provider_ref_taken(client, id, provider_ref).await?
    {
        return Ok(StoreResult::ProviderRefTaken);
    }
    conditional(client, id, updated).await
}

/// Would a first confirm of payment `id` with `provider_ref` break its UNIQUE?
async fn provider_ref_taken(client: &impl GenericClient, id: Uuid, provider_ref: &str) -> Result<bool, StoreError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM payments WHERE id = $1 AND provider_ref IS NULL)
             AND EXISTS (SELECT 1 FROM payments WHERE provider_ref = $2 AND id <> $1)",
            &[&id, &provider_ref],
        )
        .await?;
    Ok(row.get(0))
}

/// The database's own clock in epoch milliseconds: leases are judged on it,
/// so that a replica's skewed clock cannot shorten one.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

async fn claim_execution(
    client: &impl GenericClient,
    id: Uuid,
    (lease_for, replica_now): (i64, Option<i64>),
    (now, store_now): (i64, Option<i64>),
) -> Result<StoreResult, StoreError> {
    let claimed = client
        .query_opt(
            &format!(
                "UPDATE payments SET execute_attempts = execute_attempts + 1,
                 lease_until = COALESCE($4, $5, {DB_NOW}) + $2, updated_at = $3
                 WHERE id = $1 AND state = 'confirmed'
                 AND (lease_until IS NULL OR lease_until <= COALESCE($5, {DB_NOW}))
                 RETURNING *"
            ),
            &[&id, &lease_for, &now, &replica_now, &store_now],
        )
        .await?;
    if let Some(row) = claimed {
        return Ok(StoreResult::Done(Box::new(record(&row))));
    }
    Ok(match current(client, id).await? {
        StoreResult::Done(row) if row.state == PaymentState::Confirmed => StoreResult::LeaseHeld(row),
        StoreResult::Done(row) => StoreResult::Conflict(row),
        other => other,
    })
}

/// One statement: confirmed → executed, and the payment's one cycle.
async fn record_cycle(
    client: &impl GenericClient,
    id: Uuid,
    cycle_id: &str,
    now: i64,
) -> Result<StoreResult, StoreError> {
    let updated = client
        .query_opt(
            "WITH executed AS (
                 UPDATE payments SET state = 'executed', cycle_id = $2, lease_until = NULL, updated_at = $3
                 WHERE id = $1 AND state = 'confirmed' RETURNING *),
             cycle AS (INSERT INTO payment_cycles (payment_id, cycle_id) SELECT id, cycle_id FROM executed)
             SELECT * FROM executed",
            &[&id, &cycle_id, &now],
        )
        .await;
    conditional(client, id, updated).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrations_name_the_constraints_the_store_tells_apart() {
        for name in [PROVIDER_REF_UNIQUE, EXECUTE_KEY_UNIQUE, ONE_CYCLE] {
            assert!(MIGRATIONS.contains(&format!("CONSTRAINT {name} ")), "{name} is not named in the migrations");
        }
    }

    #[test]
    fn every_state_is_named_as_the_schema_checks_it() {
        for name in names::all::<PaymentState>() {
            assert!(MIGRATIONS.contains(&format!("'{name}'")), "the CHECK lists `{name}`");
            assert_eq!(state_name(parse_state(name)), name);
        }
        assert_eq!(state_name(PaymentState::Compensating), "compensating");
    }
}
