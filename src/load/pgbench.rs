//! The database's own ceiling for the purchase flow: pgbench (PostgreSQL's
//! client) running the flow's three write transactions — insert the
//! payment, set it confirmed with its provider_ref, record its cycle — on
//! the reference stack's schema, each committed on its own as the stack
//! commits them. A stack's knee is read against it: same database, same
//! durability (which is measured and reported, not assumed), same clients.
//! It writes in a schema of its own ([`SCHEMA`]): the stack's rows are never
//! touched.

use std::path::Path;
use std::time::Duration;

/// Plain data of the report (the report layer holds it).
pub use crate::report::load::Ceiling;

/// One pgbench "transaction" is one purchase flow: three statements, each
/// its own commit. Ids are derived from a random key per flow, so that the
/// three statements find the same payment without a round trip.
pub const FLOW_SCRIPT: &str = r"\set k random(1, 9000000000000000)
INSERT INTO payments (id, condominio_id, machine_id, terminal_id, amount_cents, idempotency_key,
    state, created_at, updated_at)
  VALUES (md5(:client_id || '-' || :k)::uuid, md5('condominium-' || (:k % 200))::uuid, 'machine-' || (:k % 1200),
    'terminal-' || :client_id, 1200, 'idempotency-' || :client_id || '-' || :k, 'authorized', 0, 0);
UPDATE payments SET state = 'confirmed', provider_ref = 'charge-' || :client_id || '-' || :k,
    execute_key = 'execute-' || :client_id || '-' || :k, updated_at = 1
  WHERE id = md5(:client_id || '-' || :k)::uuid AND state = 'authorized';
WITH executed AS (UPDATE payments SET state = 'executed', cycle_id = 'cycle-' || :client_id || '-' || :k,
    updated_at = 2 WHERE id = md5(:client_id || '-' || :k)::uuid AND state = 'confirmed' RETURNING id, cycle_id)
  INSERT INTO payment_cycles (payment_id, cycle_id) SELECT id, cycle_id FROM executed;
";

/// Bounds on what a user may ask of pgbench.
pub const CLIENTS_MAX: u32 = 1000;
pub const DURATION_MAX: Duration = Duration::from_secs(600);
/// How long a load run's pgbench lasts unless told.
pub const DURATION_DEFAULT: Duration = Duration::from_secs(10);

/// Where pgbench's payments go, beside the stack's own tables.
pub const SCHEMA: &str = "posim_pgbench";

/// The reference stack's connections per replica: deadpool-postgres's
/// default pool (`max_size` = logical cores × 2 in deadpool 0.13), which
/// `stack serve` keeps.
pub fn stack_pool_size() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)).saturating_mul(2)
}

/// "The same number of clients" as the stack: its replicas' pools together.
pub fn stack_clients(replicas: u16) -> u32 {
    u32::from(replicas).saturating_mul(stack_pool_size()).clamp(1, CLIENTS_MAX)
}

/// What a load run was asked of pgbench (`--pgbench-clients`, `--pgbench-duration`).
#[derive(Clone, Copy, Debug)]
pub struct Asked {
    /// `None`: as many as the stack's connections ([`stack_clients`]).
    pub clients: Option<u32>,
    pub duration: Duration,
}

impl Asked {
    /// Checks the flags; the message names the flag out of range.
    pub fn new(clients: Option<u32>, duration: Duration) -> Result<Asked, String> {
        if clients.is_some_and(|n| !(1..=CLIENTS_MAX).contains(&n)) {
            return Err(format!("--pgbench-clients must be 1 to {CLIENTS_MAX}"));
        }
        let whole = duration.subsec_nanos() == 0;
        if !whole || duration < Duration::from_secs(1) || duration > DURATION_MAX {
            return Err("--pgbench-duration must be whole seconds, 1 s to 10 min".into());
        }
        Ok(Asked { clients, duration })
    }

    pub fn clients(&self, replicas: u16) -> u32 {
        self.clients.unwrap_or_else(|| stack_clients(replicas))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PgbenchError {
    #[error("pgbench is not installed beside PostgreSQL's server binaries (Debian: apt-get install postgresql)")]
    NotInstalled,
    #[error(
        "pgbench clients must be 1 to {CLIENTS_MAX} and its duration 1 s to 10 min; got {clients} clients for {seconds} s"
    )]
    OutOfRange { clients: u32, seconds: u64 },
    #[error("the database: {0}")]
    Database(String),
    #[error("pgbench: {0}")]
    Run(String),
}

impl From<tokio_postgres::Error> for PgbenchError {
    fn from(error: tokio_postgres::Error) -> Self {
        // The driver's own text of a server's error is only "db error".
        PgbenchError::Database(error.as_db_error().map_or_else(|| error.to_string(), ToString::to_string))
    }
}

/// Runs the flow script with `clients` connections for `duration` against
/// `database_url` (a PostgreSQL URL with its password), in [`SCHEMA`],
/// made anew with the stack's migrations.
pub async fn ceiling(database_url: &str, clients: u32, duration: Duration) -> Result<Ceiling, PgbenchError> {
    let seconds = duration.as_secs();
    if !(1..=CLIENTS_MAX).contains(&clients) || seconds == 0 || duration > DURATION_MAX {
        return Err(PgbenchError::OutOfRange { clients, seconds });
    }
    // PATH may hold symlinks to the server's programs: pgbench is beside where they point.
    let initdb = crate::live::postgres::find_binaries().and_then(|dir| std::fs::canonicalize(dir.join("initdb")).ok());
    let bin = initdb.and_then(|initdb| Some(initdb.parent()?.join("pgbench")));
    let bin = bin.filter(|path| path.is_file()).ok_or(PgbenchError::NotInstalled)?;
    let (fsync, synchronous_commit) = prepare(database_url).await?;
    let folder = tempfile::tempdir().map_err(|e| PgbenchError::Run(format!("a temporary folder: {e}")))?;
    let script = folder.path().join("flow.sql");
    std::fs::write(&script, FLOW_SCRIPT).map_err(|e| PgbenchError::Run(format!("{}: {e}", script.display())))?;
    let output = run(&bin, &script, &in_schema(database_url), clients, seconds).await?;
    let flows_per_second =
        parse_tps(&output).ok_or_else(|| PgbenchError::Run(format!("no `tps = ` line in its output:\n{output}")))?;
    Ok(Ceiling { clients, seconds, flows_per_second, fsync, synchronous_commit })
}

/// Makes [`SCHEMA`] anew with the stack's tables; returns the server's
/// durability settings.
async fn prepare(database_url: &str) -> Result<(String, String), PgbenchError> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let schema =
        format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}; SET search_path TO {SCHEMA};");
    client.batch_execute(&schema).await?;
    client.batch_execute(crate::stack::pg::MIGRATIONS).await?;
    let show = |row: tokio_postgres::Row| row.get::<_, String>(0);
    let fsync = show(client.query_one("SHOW fsync", &[]).await?);
    let synchronous_commit = show(client.query_one("SHOW synchronous_commit", &[]).await?);
    Ok((fsync, synchronous_commit))
}

async fn run(bin: &Path, script: &Path, url: &str, clients: u32, seconds: u64) -> Result<String, PgbenchError> {
    // pgbench's threads: one per core is what it can use here.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32).min(clients);
    let running = tokio::process::Command::new(bin)
        .args(["-n", "-f"])
        .arg(script)
        .args(["-c", &clients.to_string(), "-j", &threads.to_string(), "-T", &seconds.to_string()])
        .arg(url)
        .kill_on_drop(true)
        .output();
    // -T bounds the load; connecting and the summary get a minute more (a late pgbench is killed).
    let bound = Duration::from_secs(seconds.saturating_add(60));
    let output = tokio::time::timeout(bound, running)
        .await
        .map_err(|_| PgbenchError::Run(format!("it did not end within {} s", bound.as_secs())))?
        .map_err(|e| PgbenchError::Run(e.to_string()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        // Its errors may quote the URL: never show the password.
        return Err(PgbenchError::Run(text.replace(url, &crate::contract::canary::redacted(url))));
    }
    Ok(text)
}

/// `url` with [`SCHEMA`] as its search path (libpq's `options`), after
/// whatever query it has: libpq keeps the last of a repeated parameter.
fn in_schema(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{SCHEMA}")
}

/// `tps = 1234.5 (without initial connection time)` → 1234.5.
fn parse_tps(output: &str) -> Option<f64> {
    let line = output.lines().find(|line| line.starts_with("tps = "))?;
    line.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{Asked, in_schema, parse_tps};
    use std::time::Duration;

    #[test]
    fn the_schema_is_added_to_the_url_s_query_whether_or_not_it_has_one() {
        let option = "options=-csearch_path%3Dposim_pgbench";
        assert_eq!(in_schema("postgres://u:p@127.0.0.1:5/db"), format!("postgres://u:p@127.0.0.1:5/db?{option}"));
        assert_eq!(
            in_schema("postgres://u:p@127.0.0.1:5/db?sslmode=disable"),
            format!("postgres://u:p@127.0.0.1:5/db?sslmode=disable&{option}")
        );
    }

    #[test]
    fn flags_out_of_range_are_refused_naming_the_flag() {
        let asked = |clients, seconds: f64| Asked::new(clients, Duration::from_secs_f64(seconds));
        assert!(asked(None, 10.0).is_ok_and(|a| a.clients(3) == 3 * super::stack_pool_size()));
        assert!(asked(Some(7), 1.0).is_ok_and(|a| a.clients(3) == 7));
        for (clients, seconds, flag) in [
            (Some(0), 10.0, "--pgbench-clients"),
            (Some(1001), 10.0, "--pgbench-clients"),
            (None, 0.0, "--pgbench-duration"),
            (None, 1.5, "--pgbench-duration"),
            (None, 601.0, "--pgbench-duration"),
        ] {
            let refused = asked(clients, seconds).expect_err("refused");
            assert!(refused.contains(flag), "{refused}");
        }
    }

    #[test]
    fn the_rate_is_read_off_pgbench_s_summary() {
        let output = "number of failed transactions: 0 (0.000%)\nlatency average = 3.1 ms\n\
                      initial connection time = 12.0 ms\ntps = 1287.448 (without initial connection time)\n";
        assert_eq!(parse_tps(output), Some(1287.448));
        assert_eq!(parse_tps("pgbench: error: connection refused"), None);
    }
}
