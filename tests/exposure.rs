//! Nothing a run starts is reachable by others: the throwaway PostgreSQL
//! asks for the run's password over TCP, containers publish their ports on
//! 127.0.0.1 only, and posim's world listens on loopback (and, for
//! containers, on Docker's bridge) under a path only the run's stack knows.
//! These tests need PostgreSQL or Docker: ignored by a plain `cargo test`,
//! run (and failing without the service) under `--include-ignored`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Connects and runs `SELECT 1`; the error's text if the server refuses.
fn connect(url: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(|e| format!("{e:?}"))?;
        tokio::spawn(connection);
        client.simple_query("SELECT 1").await.map(|_| ()).map_err(|e| format!("{e:?}"))
    })
}

#[test]
#[ignore = "needs PostgreSQL"]
fn the_throwaway_postgres_refuses_a_connection_without_the_runs_password() {
    let postgres = posim::live::postgres::ThrowawayPostgres::start().expect("a throwaway PostgreSQL");
    connect(&postgres.url()).expect("the run's own URL connects");
    let refused = connect(&postgres.url_without_password()).expect_err("no password, no connection");
    assert!(refused.contains("password"), "refused for want of a password: {refused}");
    let wrong = postgres.url().replacen("posim:", "posim:guess", 1);
    assert!(connect(&wrong).is_err(), "a wrong password is refused");
}

/// Starts `posim live` on the smoke scenario, its report in `out`, its run registered under `runs`.
fn spawn_live(out: &std::path::Path, runs: &std::path::Path, extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["live", "fixtures/scenarios/live-smoke.toml", "--no-trace", "--out"])
        .arg(out)
        .args(extra)
        .env("POSIM_RUNS_DIR", runs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("posim starts")
}

/// The listening TCP sockets of process `pid` (from `ss`), as `address:port`.
fn listening(pid: u32) -> Vec<String> {
    let out = Command::new("ss").args(["-Hltnp"]).output().expect("ss runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let owner = format!("pid={pid},");
    text.lines()
        .filter(|line| line.contains(&owner))
        .filter_map(|line| line.split_whitespace().nth(3))
        .map(String::from)
        .collect()
}

#[test]
#[ignore = "needs PostgreSQL"]
fn a_live_run_on_processes_listens_on_loopback_only() {
    let out = tempfile::tempdir().expect("a temp dir");
    let runs = tempfile::tempdir().expect("a runs root");
    let mut run = spawn_live(out.path(), runs.path(), &["--time-scale", "120"]);
    let started = Instant::now();
    let mut seen = Vec::new();
    while seen.is_empty() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
        seen = listening(run.id());
    }
    let answers: Vec<String> = seen.iter().map(|address| get(address, "/v1/charges")).collect();
    let status = run.wait().expect("posim ends");
    assert!(!seen.is_empty(), "posim's world was seen listening");
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 404"), "outside the run's path the world is not there: {answer}");
    }
    assert!(seen.iter().all(|address| address.starts_with("127.0.0.1:")), "loopback only: {seen:?}");
    assert_eq!(status.code(), Some(0), "the run passes");
}

/// The status line of a bare GET of `path` on `address`.
fn get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return format!("cannot connect to {address}") };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

/// `docker ps` of the containers of the run registered under `runs`: (name, ports).
fn containers_of(runs: &std::path::Path) -> Vec<(String, String)> {
    let ids = std::fs::read_dir(runs).into_iter().flatten().flatten().filter_map(|d| d.file_name().into_string().ok());
    let Some(run) = ids.into_iter().next() else { return Vec::new() };
    let filter = format!("label=posim.run={run}");
    let listed = Command::new("docker")
        .args(["ps", "--filter", &filter, "--format", "{{.Names}}\t{{.Ports}}"])
        .output()
        .expect("docker ps");
    let text = String::from_utf8_lossy(&listed.stdout);
    let split = |line: &str| line.split_once('\t').map(|(n, p)| (n.to_string(), p.to_string()));
    text.lines().filter_map(split).collect()
}

/// The host port a container publishes, from `docker ps`'s `127.0.0.1:PORT->5432/tcp`.
fn host_port(ports: &str) -> Option<u16> {
    ports.split("->").next()?.rsplit(':').next()?.parse().ok()
}

#[test]
#[ignore = "needs Docker"]
fn containers_publish_on_loopback_and_the_database_wants_the_runs_password() {
    let built = Command::new(env!("CARGO_BIN_EXE_posim")).args(["images", "build"]).output().expect("posim runs");
    assert!(built.status.success(), "posim images build: {}", String::from_utf8_lossy(&built.stderr));
    let (out, runs) = (tempfile::tempdir().expect("a temp dir"), tempfile::tempdir().expect("a runs root"));
    let mut run = spawn_live(out.path(), runs.path(), &["--stack-image", "posim-stack:local"]);
    let started = Instant::now();
    let mut seen = Vec::new();
    // Once a replica runs, the database has the run's password.
    while !seen.iter().any(|(name, _): &(String, String)| name.contains("replica"))
        && started.elapsed() < Duration::from_secs(90)
    {
        std::thread::sleep(Duration::from_millis(200));
        seen = containers_of(runs.path());
    }
    let world = listening(run.id());
    let database = seen.iter().find(|(name, _)| name.ends_with("-postgres")).and_then(|(_, ports)| host_port(ports));
    let refused = database.map(|port| {
        let without = connect(&format!("host=127.0.0.1 port={port} user=posim dbname=postgres"));
        let bootstrap = format!("host=127.0.0.1 port={port} user=posim password=posim-image-bootstrap dbname=postgres");
        (without, connect(&bootstrap))
    });
    let status = run.wait().expect("posim ends");
    assert!(seen.iter().any(|(name, _)| name.contains("replica")), "a replica was seen: {seen:?}");
    for (name, ports) in &seen {
        let published: Vec<&str> = ports.split(", ").collect();
        assert!(published.iter().all(|p| p.starts_with("127.0.0.1:")), "{name} publishes on loopback only: {ports}");
    }
    let (without, bootstrap) = refused.expect("the database container publishes its port");
    assert!(without.is_err(), "no password, no connection");
    assert!(bootstrap.is_err(), "the image's bootstrap password was replaced by the run's");
    assert!(
        !world.iter().any(|a| a.starts_with("0.0.0.0:") || a.starts_with("*:")),
        "world not on every interface: {world:?}"
    );
    assert_eq!(status.code(), Some(0), "the run passes");
}
