//! The stack's store on PostgreSQL: the same operations as the in-memory
//! store, each one conditional SQL statement, with the uniqueness a payments
//! system needs enforced by the database itself — the idempotency key, the
//! provider_ref and the execute_key are UNIQUE, and one cycle per payment is
//! a primary key — never by a check-then-insert.

use deadpool_postgres::Pool;
use tokio_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::store::{PaymentRecord, PaymentState, StoreOp, StoreResult};
use crate::contract::names;
use crate::time::Millis;

/// Applied at start-up; each statement is idempotent.
pub const MIGRATIONS: &str = "
CREATE TABLE IF NOT EXISTS payments (
    id uuid PRIMARY KEY,
    condominio_id uuid NOT NULL,
    machine_id text NOT NULL,
    terminal_id text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents BETWEEN 1 AND 100000000),
    idempotency_key text NOT NULL UNIQUE,
    provider_ref text UNIQUE,
    execute_key text UNIQUE,
    cycle_id text,
    state text NOT NULL CHECK (state IN ('authorized', 'confirmed', 'compensating', 'executed', 'compensated', 'expired')),
    execute_attempts integer NOT NULL DEFAULT 0,
    lease_until bigint,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS payment_cycles (
    payment_id uuid PRIMARY KEY REFERENCES payments (id),
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
        StoreError(error.to_string())
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

fn unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// The payments table on PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    pub fn new(pool: Pool) -> Self {
        PgStore { pool }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.batch_execute(MIGRATIONS).await?;
        Ok(())
    }

    /// Empties the tables (the `state-lost-on-redeploy` bug).
    pub async fn forget_everything(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.batch_execute("TRUNCATE payment_cycles, payments").await?;
        Ok(())
    }

    /// Applies one operation; see [`StoreOp`] for what each one means.
    pub async fn apply(&self, op: StoreOp, now: Millis) -> Result<StoreResult, StoreError> {
        let client = self.pool.get().await?;
        let now = now as i64;
        match op {
            StoreOp::Insert(record) => insert(&**client, &record).await,
            StoreOp::Get(id) => current(&**client, id).await,
            StoreOp::FindByIdempotencyKey(key) => find(&**client, "idempotency_key", &key).await,
            StoreOp::FindByProviderRef(reference) => find(&**client, "provider_ref", &reference).await,
            StoreOp::Confirm { id, provider_ref, execute_key, reissue } => {
                confirm(&**client, id, (&provider_ref, &execute_key), reissue, now).await
            }
            StoreOp::ClaimExecution { id, lease_until } => {
                claim_execution(&**client, id, lease_until as i64, now).await
            }
            StoreOp::ReleaseExecution { id } => {
                let row = client
                    .query_opt("UPDATE payments SET lease_until = NULL WHERE id = $1 RETURNING *", &[&id])
                    .await?;
                Ok(done(row).unwrap_or(StoreResult::Missing))
            }
            StoreOp::RecordCycle { id, cycle_id } => {
                let mut client = client;
                record_cycle(&mut client, id, &cycle_id, now).await
            }
            StoreOp::ListOverdue { created_before, limit } => {
                let rows = client
                    .query(
                        "SELECT * FROM payments WHERE state IN ('authorized', 'confirmed', 'compensating')
                         AND created_at <= $1 ORDER BY created_at, id LIMIT $2",
                        &[&(created_before as i64), &(limit as i64)],
                    )
                    .await?;
                Ok(StoreResult::Found(rows.iter().map(record).collect()))
            }
            StoreOp::ClaimCompensation { id, from, seen_attempts, honour_lease, provider_ref } => {
                let row = client
                    .query_opt(
                        "UPDATE payments SET state = 'compensating', provider_ref = COALESCE(provider_ref, $5),
                         updated_at = $6 WHERE id = $1 AND state = $2 AND execute_attempts = $3
                         AND (NOT $4 OR lease_until IS NULL OR lease_until <= $6) RETURNING *",
                        &[
                            &id,
                            &state_name(from),
                            &(seen_attempts as i32),
                            &honour_lease,
                            &provider_ref.as_deref(),
                            &now,
                        ],
                    )
                    .await;
                conditional(&**client, id, row).await
            }
            StoreOp::Finish { id, to } => {
                let from = if to == PaymentState::Expired { "authorized" } else { "compensating" };
                let row = client
                    .query_opt(
                        "UPDATE payments SET state = $2, updated_at = $4 WHERE id = $1 AND state = $3 RETURNING *",
                        &[&id, &state_name(to), &from, &now],
                    )
                    .await;
                conditional(&**client, id, row).await
            }
        }
    }
}

async fn current(client: &impl GenericClient, id: Uuid) -> Result<StoreResult, StoreError> {
    let row = client.query_opt("SELECT * FROM payments WHERE id = $1", &[&id]).await?;
    Ok(done(row).unwrap_or(StoreResult::Missing))
}

/// An UPDATE … WHERE that matched nothing: the row as it is, or missing.
async fn conditional(
    client: &impl GenericClient,
    id: Uuid,
    updated: Result<Option<Row>, tokio_postgres::Error>,
) -> Result<StoreResult, StoreError> {
    match updated {
        Ok(Some(row)) => Ok(StoreResult::Done(Box::new(record(&row)))),
        Ok(None) => Ok(match current(client, id).await? {
            StoreResult::Done(row) => StoreResult::Conflict(row),
            other => other,
        }),
        Err(error) if unique_violation(&error) => Ok(match current(client, id).await? {
            StoreResult::Done(row) => StoreResult::Conflict(row),
            other => other,
        }),
        Err(error) => Err(error.into()),
    }
}

async fn insert(client: &impl GenericClient, r: &PaymentRecord) -> Result<StoreResult, StoreError> {
    let inserted = client
        .query_opt(
            "INSERT INTO payments (id, condominio_id, machine_id, terminal_id, amount_cents, idempotency_key,
             state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'authorized', $7, $7)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
            &[
                &r.id,
                &r.condominio_id,
                &&*r.machine_id,
                &&*r.terminal_id,
                &r.amount_cents,
                &&*r.idempotency_key,
                &(r.created_at as i64),
            ],
        )
        .await?;
    if let Some(row) = inserted {
        return Ok(StoreResult::Done(Box::new(record(&row))));
    }
    let existing =
        client.query_one("SELECT * FROM payments WHERE idempotency_key = $1", &[&&*r.idempotency_key]).await?;
    Ok(StoreResult::Existing(Box::new(record(&existing))))
}

async fn find(client: &impl GenericClient, column: &str, value: &str) -> Result<StoreResult, StoreError> {
    // `column` is one of two fixed names, never input.
    assert!(matches!(column, "idempotency_key" | "provider_ref"));
    let rows = client.query(&format!("SELECT * FROM payments WHERE {column} = $1"), &[&value]).await?;
    Ok(StoreResult::Found(rows.iter().map(record).collect()))
}

async fn confirm(
    client: &impl GenericClient,
    id: Uuid,
    (provider_ref, execute_key): (&str, &str),
    reissue: bool,
    now: i64,
) -> Result<StoreResult, StoreError> {
    let updated = if reissue {
        // The bug: a confirmed or executed row is rewritten with a fresh key.
        client.execute("DELETE FROM payment_cycles WHERE payment_id = $1", &[&id]).await?;
        client
            .query_opt(
                "UPDATE payments SET state = 'confirmed', execute_key = $2, cycle_id = NULL, lease_until = NULL,
                 updated_at = $3 WHERE id = $1 AND state IN ('confirmed', 'executed') RETURNING *",
                &[&id, &execute_key, &now],
            )
            .await
    } else {
        client
            .query_opt(
                "UPDATE payments SET state = 'confirmed', provider_ref = $2, execute_key = $3, updated_at = $4
                 WHERE id = $1 AND state = 'authorized' RETURNING *",
                &[&id, &provider_ref, &execute_key, &now],
            )
            .await
    };
    match updated {
        Err(error) if unique_violation(&error) && error.to_string().contains("provider_ref") => {
            Ok(StoreResult::ProviderRefTaken)
        }
        other => conditional(client, id, other).await,
    }
}

async fn claim_execution(
    client: &impl GenericClient,
    id: Uuid,
    lease_until: i64,
    now: i64,
) -> Result<StoreResult, StoreError> {
    let claimed = client
        .query_opt(
            "UPDATE payments SET execute_attempts = execute_attempts + 1, lease_until = $2, updated_at = $3
             WHERE id = $1 AND state = 'confirmed' AND (lease_until IS NULL OR lease_until <= $3) RETURNING *",
            &[&id, &lease_until, &now],
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

/// Confirmed → executed and the payment's one cycle, in one transaction.
async fn record_cycle(
    client: &mut deadpool_postgres::Object,
    id: Uuid,
    cycle_id: &str,
    now: i64,
) -> Result<StoreResult, StoreError> {
    let transaction = client.transaction().await?;
    let updated = transaction
        .query_opt(
            "UPDATE payments SET state = 'executed', cycle_id = $2, lease_until = NULL, updated_at = $3
             WHERE id = $1 AND state = 'confirmed' RETURNING *",
            &[&id, &cycle_id, &now],
        )
        .await?;
    let Some(row) = updated else {
        drop(transaction);
        return conditional(&***client, id, Ok(None)).await;
    };
    let cycle = transaction
        .execute("INSERT INTO payment_cycles (payment_id, cycle_id) VALUES ($1, $2)", &[&id, &cycle_id])
        .await;
    match cycle {
        Ok(_) => {
            transaction.commit().await?;
            Ok(StoreResult::Done(Box::new(record(&row))))
        }
        Err(error) if unique_violation(&error) => {
            drop(transaction);
            conditional(&***client, id, Ok(None)).await
        }
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_named_as_the_schema_checks_it() {
        for name in names::all::<PaymentState>() {
            assert!(MIGRATIONS.contains(&format!("'{name}'")), "the CHECK lists `{name}`");
            assert_eq!(state_name(parse_state(name)), name);
        }
        assert_eq!(state_name(PaymentState::Compensating), "compensating");
    }
}
