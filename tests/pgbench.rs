//! pgbench runs the purchase flow's three write transactions on the stack's
//! tables, in a schema of its own beside the stack's: the database's own
//! ceiling, read with its durability settings.
//! Needs PostgreSQL (ignored by a plain `cargo test`).

use std::time::Duration;

#[test]
#[ignore = "needs PostgreSQL"]
fn pgbench_runs_the_flow_on_the_stacks_schema_with_production_durability() {
    let postgres = posim::live::postgres::ThrowawayPostgres::start().expect("a throwaway PostgreSQL");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let client = runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.expect("connects");
        tokio::spawn(connection);
        // The stack's own tables, as `stack serve` makes them.
        client.batch_execute(posim::stack::pg::MIGRATIONS).await.expect("the stack's schema");
        client
    });
    let ceiling = runtime
        .block_on(posim::load::pgbench::ceiling(&postgres.url(), 4, Duration::from_secs(3)))
        .expect("pgbench runs");
    eprintln!(
        "pgbench: {:.0} flows/s with {} clients for {} s",
        ceiling.flows_per_second, ceiling.clients, ceiling.seconds
    );
    assert!(ceiling.flows_per_second > 10.0, "flows were sustained: {ceiling:?}");
    assert_eq!((ceiling.fsync.as_str(), ceiling.synchronous_commit.as_str()), ("on", "on"), "production durability");
    let count = |sql: &'static str| {
        let client = &client;
        runtime.block_on(async move { client.query_one(sql, &[]).await.expect("counted").get::<_, i64>(0) })
    };
    let executed = count("SELECT count(*) FROM posim_pgbench.payments WHERE state = 'executed'");
    assert!(executed > 0, "every flow ends executed");
    assert_eq!(executed, count("SELECT count(*) FROM posim_pgbench.payment_cycles"), "one cycle per payment");
    let stacks = (count("SELECT count(*) FROM public.payments"), count("SELECT count(*) FROM public.payment_cycles"));
    assert_eq!(stacks, (0, 0), "the stack's own tables hold no pgbench rows");
    let refused = runtime.block_on(posim::load::pgbench::ceiling(&postgres.url(), 0, Duration::from_secs(3)));
    assert!(refused.is_err(), "zero clients is refused");
}
