//! The database's own ceiling for the purchase flow: pgbench (PostgreSQL's
//! client) running the flow's three write transactions — insert the
//! payment, set it confirmed with its provider_ref, record its cycle — on
//! the reference stack's schema, each committed on its own as the stack
//! commits them. A stack's knee is read against it: same database, same
//! durability (which is measured and reported, not assumed), same clients.

use std::path::Path;
use std::time::Duration;

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
pub const DURATION_MAX: Duration = Duration::from_secs(3600);

/// What pgbench sustained, and under which durability settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Ceiling {
    pub clients: u32,
    pub seconds: u64,
    pub flows_per_second: f64,
    /// As the server reported them (`SHOW fsync`, `SHOW synchronous_commit`).
    pub fsync: String,
    pub synchronous_commit: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PgbenchError {
    #[error("pgbench is not installed beside PostgreSQL's server binaries (Debian: apt-get install postgresql)")]
    NotInstalled,
    #[error(
        "pgbench clients must be 1 to {CLIENTS_MAX} and its duration 1 s to 1 h; got {clients} clients for {seconds} s"
    )]
    OutOfRange { clients: u32, seconds: u64 },
    #[error("the database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("pgbench: {0}")]
    Run(String),
}

/// Runs the flow script with `clients` connections for `duration` against
/// `database_url` (a PostgreSQL URL with its password), after applying the
/// stack's schema (idempotent).
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
    let output = run(&bin, &script, database_url, clients, seconds).await?;
    let flows_per_second =
        parse_tps(&output).ok_or_else(|| PgbenchError::Run(format!("no `tps = ` line in its output:\n{output}")))?;
    Ok(Ceiling { clients, seconds, flows_per_second, fsync, synchronous_commit })
}

/// Applies the schema; returns the server's durability settings.
async fn prepare(database_url: &str) -> Result<(String, String), PgbenchError> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(crate::stack::pg::MIGRATIONS).await?;
    let show = |row: tokio_postgres::Row| row.get::<_, String>(0);
    let fsync = show(client.query_one("SHOW fsync", &[]).await?);
    let synchronous_commit = show(client.query_one("SHOW synchronous_commit", &[]).await?);
    Ok((fsync, synchronous_commit))
}

async fn run(bin: &Path, script: &Path, url: &str, clients: u32, seconds: u64) -> Result<String, PgbenchError> {
    // pgbench's threads: one per core is what it can use here.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32).min(clients);
    let output = tokio::process::Command::new(bin)
        .args(["-n", "-f"])
        .arg(script)
        .args(["-c", &clients.to_string(), "-j", &threads.to_string(), "-T", &seconds.to_string()])
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| PgbenchError::Run(e.to_string()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        // Its errors may quote the URL: never show the password.
        return Err(PgbenchError::Run(text.replace(url, &crate::contract::canary::redacted(url))));
    }
    Ok(text)
}

/// `tps = 1234.5 (without initial connection time)` → 1234.5.
fn parse_tps(output: &str) -> Option<f64> {
    let line = output.lines().find(|line| line.starts_with("tps = "))?;
    line.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_tps;

    #[test]
    fn the_rate_is_read_off_pgbench_s_summary() {
        let output = "number of failed transactions: 0 (0.000%)\nlatency average = 3.1 ms\n\
                      initial connection time = 12.0 ms\ntps = 1287.448 (without initial connection time)\n";
        assert_eq!(parse_tps(output), Some(1287.448));
        assert_eq!(parse_tps("pgbench: error: connection refused"), None);
    }
}
