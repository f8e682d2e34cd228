//! pgbench runs the purchase flow's three write transactions on the stack's
//! schema: the database's own ceiling, read with its durability settings.
//! Needs PostgreSQL (ignored by a plain `cargo test`).

use std::time::Duration;

#[test]
#[ignore = "needs PostgreSQL"]
fn pgbench_runs_the_flow_on_the_stacks_schema_with_production_durability() {
    let postgres = posim::live::postgres::ThrowawayPostgres::start().expect("a throwaway PostgreSQL");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let ceiling = runtime
        .block_on(posim::load::pgbench::ceiling(&postgres.url(), 4, Duration::from_secs(3)))
        .expect("pgbench runs");
    eprintln!(
        "pgbench: {:.0} flows/s with {} clients for {} s",
        ceiling.flows_per_second, ceiling.clients, ceiling.seconds
    );
    assert!(ceiling.flows_per_second > 10.0, "flows were sustained: {ceiling:?}");
    assert_eq!((ceiling.fsync.as_str(), ceiling.synchronous_commit.as_str()), ("on", "on"), "production durability");
    let counted = runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.expect("connects");
        tokio::spawn(connection);
        let count = |sql: &'static str| {
            let client = &client;
            async move { client.query_one(sql, &[]).await.expect("counted").get::<_, i64>(0) }
        };
        (
            count("SELECT count(*) FROM payments WHERE state = 'executed'").await,
            count("SELECT count(*) FROM payment_cycles").await,
        )
    });
    assert!(counted.0 > 0, "every flow ends executed: {counted:?}");
    assert_eq!(counted.0, counted.1, "one cycle recorded per executed payment");
    let refused = runtime.block_on(posim::load::pgbench::ceiling(&postgres.url(), 0, Duration::from_secs(3)));
    assert!(refused.is_err(), "zero clients is refused");
}
