//! `posim live --stack-image`: the reference stack image and PostgreSQL in
//! containers (built locally by `posim images build`; nothing is pulled),
//! replaced at every deploy and broken by stack faults. These tests need a
//! Docker engine: they are ignored by a plain `cargo test` and fail without
//! one under `--include-ignored` (what `.ci/run` runs). `.ci/run` builds the
//! images first; the first test here builds them too if they are missing or
//! older than this binary.

use std::process::{Command, Output};
use std::sync::OnceLock;

const STACK_IMAGE: &str = "posim-stack:local";

fn posim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_posim")).args(args).output().expect("posim runs")
}

/// Builds the images once per test run; without Docker that is a failure.
fn build_images() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let output = posim(&["images", "build"]);
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        if output.status.success() { Ok(()) } else { Err(text) }
    });
    if let Err(text) = built {
        panic!(
            "`posim images build` failed (these tests need a Docker engine):
{text}"
        );
    }
}

fn live(scenario: &str, out: &std::path::Path, extra: &[&str]) -> (Output, serde_json::Value) {
    let path = format!("fixtures/scenarios/{scenario}.toml");
    let out_arg = out.to_str().expect("a UTF-8 temp path");
    let mut args = vec!["live", &path, "--time-scale", "120", "--no-trace", "--out", out_arg];
    args.extend_from_slice(extra);
    let output = posim(&args);
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap_or_default();
    (output, serde_json::from_str(&summary).unwrap_or(serde_json::Value::Null))
}

fn said(output: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
#[ignore = "needs Docker"]
fn a_rollout_passes_with_the_stack_in_containers() {
    build_images();
    let out = tempfile::tempdir().expect("a temp dir");
    let (output, summary) = live("live-smoke", out.path(), &["--stack-image", STACK_IMAGE]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert_eq!(summary["engine"], "live, stack as containers, time scale 120×");
    let phases: Vec<&str> =
        summary["phases"].as_array().expect("phases").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(phases, ["25%", "100%"], "the containers were replaced for phase 2");
    let logs = std::fs::read_to_string(out.path().join("stack-logs/replica-0.log")).expect("replica logs kept");
    assert_eq!(logs.matches("--- container ").count(), 2, "one container per deploy: {logs}");
    assert!(logs.contains("listening on 0.0.0.0 port 8080"), "in its container, on every interface: {logs}");
}

#[test]
#[ignore = "needs Docker"]
fn paused_killed_and_restarted_stack_keeps_the_invariants_in_containers() {
    build_images();
    let out = tempfile::tempdir().expect("a temp dir");
    let (output, summary) = live("live-stack-faults", out.path(), &["--stack-image", STACK_IMAGE]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert_eq!(summary["violation_counts"], serde_json::json!({}), "{}", said(&output));
    let faults = summary["stack_faults"].as_array().expect("stack faults");
    let done: Vec<&str> =
        faults.iter().filter(|f| f["ended_ms"].is_u64()).filter_map(|f| f["action"].as_str()).collect();
    assert_eq!(done, ["pause_replica", "kill_replica", "restart_database"], "{faults:?}");
    assert!(summary["notes"].as_array().is_some_and(Vec::is_empty), "nothing was skipped: {}", summary["notes"]);
}

#[test]
#[ignore = "needs Docker"]
fn a_bug_switch_in_the_image_is_caught() {
    build_images();
    let out = tempfile::tempdir().expect("a temp dir");
    let extra = ["--stack-image", STACK_IMAGE, "--stack-bug", "state-lost-on-redeploy"];
    let (output, summary) = live("live-smoke", out.path(), &extra);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(summary["violation_counts"]["D6"].as_u64().unwrap_or(0) > 0, "{}", summary["violation_counts"]);
}

/// Late commands, refunds and captures, racing duplicates, offline
/// terminals, a `docker pause` and a database outage: the fixed stack holds,
/// an unfenced start command runs naive machines twice.
#[test]
#[ignore = "needs Docker"]
fn the_nemesis_is_played_in_containers() {
    build_images();
    let out = tempfile::tempdir().expect("a temp dir");
    let (output, summary) = live("live-nemesis", out.path(), &["--stack-image", STACK_IMAGE]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert_eq!(summary["violation_counts"], serde_json::json!({}), "{}", said(&output));
    let skew = tempfile::tempdir().expect("a temp dir");
    let (output, summary) = live("clock-skew", skew.path(), &["--stack-image", STACK_IMAGE]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let said_so = summary["notes"].as_array().is_some_and(|notes| {
        notes.iter().any(|note| {
            note.as_str().is_some_and(|n| n.starts_with("clock_skew is not played on this stack (containers)"))
        })
    });
    assert!(said_so, "containers cannot be skewed, and the report says so: {}", summary["notes"]);
    let buggy = tempfile::tempdir().expect("a temp dir");
    let extra = ["--stack-image", STACK_IMAGE, "--stack-bug", "unfenced-start"];
    let (output, summary) = live("live-nemesis", buggy.path(), &extra);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(summary["violation_counts"]["D2"].as_u64().unwrap_or(0) > 0, "{}", summary["violation_counts"]);
}

#[test]
#[ignore = "needs Docker"]
fn rollback_times_with_containers_sit_beside_those_with_processes() {
    build_images();
    let (processes, containers) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let (output, _) = live("live-incident-b", processes.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let (output, summary) = live("live-incident-b", containers.path(), &["--stack-image", STACK_IMAGE]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert!(summary["rollbacks"][0]["replicas_on_new_config_ms"].is_u64(), "{}", summary["rollbacks"]);
    let compared = posim(&["compare", path(&processes), path(&containers)]);
    let table = String::from_utf8_lossy(&compared.stdout);
    assert_eq!(compared.status.code(), Some(0), "{}", said(&compared));
    assert!(
        table.contains("| engine | live, stack as processes, time scale 120× | live, stack as containers"),
        "{table}"
    );
    let row = table.lines().find(|l| l.starts_with("| rollback 1: replicas on new config |")).expect("a rollback row");
    assert!(!row.contains("never") && !row.contains('—'), "both runs measured it: {row}");
}

fn path(dir: &tempfile::TempDir) -> &str {
    dir.path().to_str().expect("a UTF-8 temp path")
}

#[test]
#[ignore = "needs Docker"]
fn a_missing_image_is_named_with_the_command_that_builds_it() {
    build_images();
    let out = tempfile::tempdir().expect("a temp dir");
    let (output, _) = live("live-smoke", out.path(), &["--stack-image", "posim-no-such-image:test"]);
    assert_eq!(output.status.code(), Some(3), "{}", said(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("posim-no-such-image:test") && stderr.contains("posim images build"), "{stderr}");
}

#[test]
#[ignore = "needs Docker"]
fn no_docker_engine_is_a_harness_failure_that_says_what_was_tried() {
    let out = tempfile::tempdir().expect("a temp dir");
    let scenario = "fixtures/scenarios/live-smoke.toml";
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["live", scenario, "--stack-image", STACK_IMAGE, "--out", path(&out)])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .expect("posim runs");
    assert_eq!(output.status.code(), Some(3), "{}", said(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/docker.sock"), "says what it tried: {stderr}");
}

#[test]
#[ignore = "needs Docker"]
fn a_container_that_exits_at_start_up_ends_the_run_with_its_own_words() {
    build_images();
    let out = tempfile::tempdir().expect("a temp dir");
    // The stack image as the database: it refuses to start without DATABASE_URL.
    let extra = ["--stack-image", STACK_IMAGE, "--postgres-image", STACK_IMAGE];
    let (output, _) = live("live-smoke", out.path(), &extra);
    assert_eq!(output.status.code(), Some(3), "{}", said(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("exited with code") && stderr.contains("DATABASE_URL"), "{stderr}");
}

fn containers_of(run: &str) -> Vec<String> {
    let filter = format!("label=posim.run={run}");
    let listed = Command::new("docker").args(["ps", "-a", "-q", "--filter", &filter]).output().expect("docker ps");
    String::from_utf8_lossy(&listed.stdout).split_whitespace().map(str::to_string).collect()
}

fn network_exists(run: &str) -> bool {
    let inspected = Command::new("docker").args(["network", "inspect", run]).output().expect("docker network inspect");
    inspected.status.success()
}

/// The ids of the runs registered under `runs`.
fn registered(runs: &std::path::Path) -> Vec<String> {
    let dirs = std::fs::read_dir(runs).expect("the runs root").flatten();
    dirs.filter(|dir| dir.path().join("run.json").exists())
        .filter_map(|dir| dir.file_name().into_string().ok())
        .collect()
}

/// Starts a run on containers registered under `runs`, SIGKILLs it once its
/// database and both replicas run; returns its run id.
fn kill_when_serving(runs: &std::path::Path) -> String {
    let out = tempfile::tempdir().expect("a temp dir");
    let mut killed = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["live", "fixtures/scenarios/live-smoke.toml", "--stack-image", STACK_IMAGE, "--out", path(&out)])
        .env("POSIM_RUNS_DIR", runs)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("posim starts");
    let started = std::time::Instant::now();
    let run = loop {
        let run = registered(runs).pop();
        if let Some(run) = run.filter(|run| containers_of(run).len() >= 3) {
            break run;
        }
        assert!(killed.try_wait().expect("posim's status").is_none(), "posim ended before its replicas ran");
        assert!(started.elapsed() < std::time::Duration::from_secs(90), "no database and replicas within 90 s");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    killed.kill().expect("SIGKILL");
    killed.wait().expect("reaped");
    assert!(!containers_of(&run).is_empty() && network_exists(&run), "SIGKILL leaves the containers and network");
    run
}

fn assert_gone(runs: &std::path::Path, run: &str) {
    assert_eq!(containers_of(run), Vec::<String>::new(), "containers of {run}");
    assert!(!network_exists(run), "the network {run} is left");
    assert_eq!(registered(runs), Vec::<String>::new(), "run records left");
}

#[test]
#[ignore = "needs Docker"]
fn a_run_killed_with_sigkill_leaves_containers_that_clean_and_the_next_run_remove() {
    build_images();
    let runs = tempfile::tempdir().expect("a temp dir");
    let run = kill_when_serving(runs.path());
    let cleaned = Command::new(env!("CARGO_BIN_EXE_posim"))
        .arg("clean")
        .env("POSIM_RUNS_DIR", runs.path())
        .output()
        .expect("clean");
    assert_eq!(cleaned.status.code(), Some(0), "{}", said(&cleaned));
    assert!(said(&cleaned).contains(&format!("removed container {run}-replica-")), "{}", said(&cleaned));
    assert_gone(runs.path(), &run);
    let run = kill_when_serving(runs.path());
    // The next run sweeps at its start, even one whose stack cannot start.
    let out = tempfile::tempdir().expect("a temp dir");
    let next = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["live", "fixtures/scenarios/live-smoke.toml", "--stack-cmd", "exit 7", "--out", path(&out)])
        .env("POSIM_RUNS_DIR", runs.path())
        .output()
        .expect("the next run");
    assert_eq!(next.status.code(), Some(3), "{}", said(&next));
    assert!(said(&next).contains("that 1 dead run(s) left"), "{}", said(&next));
    assert_gone(runs.path(), &run);
}
