//! `posim load` against the embedded reference stack on a throwaway
//! PostgreSQL: a knee is found with per-step percentiles, the invariants
//! hold after the load (and a bug switch breaks D2), thresholds gate the exit,
//! and pgbench gives the database's own ceiling beside the knee.

use std::process::{Command, Output};

const SMOKE: &str = "fixtures/scenarios/load-smoke.toml";

fn load(out: &std::path::Path, args: &[&str]) -> Output {
    load_scenario(std::path::Path::new(SMOKE), out, args)
}

fn load_scenario(scenario: &std::path::Path, out: &std::path::Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .arg("load")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("posim runs");
    eprintln!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    output
}

/// `posim report DIR` re-renders a load run's views byte for byte.
fn assert_re_rendered(dir: &std::path::Path) {
    let views = ["summary.md", "oplog.jsonl", "junit.xml", "report.html"];
    let written: Vec<Vec<u8>> = views.iter().map(|view| std::fs::read(dir.join(view)).expect("a view")).collect();
    for view in views {
        std::fs::remove_file(dir.join(view)).expect("the view is deleted");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_posim")).arg("report").arg(dir).output().expect("posim runs");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    for (view, bytes) in views.iter().zip(written) {
        assert!(std::fs::read(dir.join(view)).is_ok_and(|again| again == bytes), "{view} differs once re-rendered");
    }
}

fn summary(dir: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("a summary");
    serde_json::from_str(&text).expect("summary.json parses")
}

#[test]
#[ignore = "needs PostgreSQL"]
fn find_knee_finds_a_knee_with_per_step_percentiles_and_d1_d8_hold() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // The cap is tight enough that a small CI host crosses it within the steps.
    let args = [
        &["--find-knee", "--rate", "40", "--step-rate", "120", "--steps", "4", "--step-duration", "3s"][..],
        &["--pgbench-duration", "2s"],
    ]
    .concat();
    let output = load(dir.path(), &args);
    assert_eq!(output.status.code(), Some(0), "the reference stack keeps D1–D8 under load");
    let summary = summary(dir.path());
    assert_eq!(summary["schema_version"], 6);
    assert!(summary["violation_counts"].as_object().is_some_and(|v| v.is_empty()));
    let load = &summary["load"];
    let steps = load["steps"].as_array().expect("steps");
    assert!(!steps.is_empty() && steps.len() <= 4);
    for step in steps {
        let all = &step["latency"]["all"];
        assert!(all["count"].as_u64().is_some_and(|n| n > 0), "{step}");
        let p = |name: &str| all[name].as_f64().expect("a percentile");
        assert!(p("p50_ms") <= p("p90_ms") && p("p90_ms") <= p("p99_ms") && p("p99_ms") <= p("max_ms"));
        assert!(step["latency"]["authorize"]["count"].as_u64().is_some_and(|n| n > 0));
    }
    let knee = &load["knee"];
    assert!(knee["throughput"].as_f64().is_some_and(|t| t > 10.0), "a knee: {knee}");
    // The step past a knee was the stack's limit (or no step crossed the caps).
    let limited = knee["limited_by"].as_str();
    match knee["next_step"].is_null() {
        true => assert_eq!(limited, Some("within_caps"), "{knee}"),
        false => assert!(matches!(limited, Some("stack_latency" | "stack_errors" | "database")), "{knee}"),
    }
    assert!(load["headroom"].as_f64().is_some_and(|h| h > 1.0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("load step ").count(), steps.len(), "a progress line per step");
    assert!(stderr.contains(" s on the run's database (schema posim_pgbench)"), "a progress line for pgbench");
    // pgbench ran after the audit, in its own schema: D1–D8 above are the stack's rows alone.
    let ceiling = &load["database_ceiling"];
    let flows = ceiling["flows_per_second"].as_f64().expect("a ceiling");
    assert!(flows > 0.0, "{ceiling}");
    assert_eq!((ceiling["fsync"].as_str(), ceiling["synchronous_commit"].as_str()), (Some("on"), Some("on")));
    assert_eq!(ceiling["seconds"], 2);
    let ratio = load["knee_over_ceiling"].as_f64().expect("a ratio");
    let knee = knee["throughput"].as_f64().expect("a knee");
    assert!((ratio - knee / flows).abs() < 1e-9, "knee ÷ ceiling: {ratio} vs {knee} / {flows}");
    let markdown = std::fs::read_to_string(dir.path().join("summary.md")).expect("summary.md");
    let line =
        format!("database ceiling (pgbench, {} clients, 2 s, fsync on, synchronous_commit on)", ceiling["clients"]);
    assert!(markdown.contains(&line) && markdown.contains("knee ÷ ceiling"), "{markdown}");
}

#[test]
#[ignore = "needs PostgreSQL"]
fn a_nonidempotent_confirm_under_double_taps_fails_with_d2() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = load(dir.path(), &["--rate", "30", "--step-duration", "3s", "--stack-bug", "nonidempotent-confirm"]);
    assert_eq!(output.status.code(), Some(1));
    let summary = summary(dir.path());
    assert!(summary["violation_counts"]["D2"].as_u64().is_some_and(|n| n > 0), "{}", summary["violation_counts"]);
    assert_re_rendered(dir.path());
}

#[test]
#[ignore = "needs PostgreSQL"]
fn a_threshold_it_cannot_meet_exits_1_naming_it_and_one_it_meets_exits_0() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let base = ["--rate", "20", "--step-duration", "2s", "--no-trace", "--no-pgbench"];
    let unmeetable =
        load(dir.path(), &[&base[..], &["--threshold", "p99<1ms", "--threshold", "error_rate<50%"]].concat());
    assert_eq!(unmeetable.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&unmeetable.stdout);
    assert!(stdout.contains("threshold breached: p99<1ms"), "{stdout}");
    assert!(!stdout.contains("threshold breached: error_rate"), "{stdout}");
    let met = load(dir.path(), &[&base[..], &["--threshold", "p99<10s", "--threshold", "knee>1x"]].concat());
    assert_eq!(met.status.code(), Some(0));
    let load = &summary(dir.path())["load"];
    assert!(load["database_ceiling"].is_null() && load["knee_over_ceiling"].is_null());
    assert_eq!(load["database_ceiling_note"], "skipped (--no-pgbench)");
}

#[test]
#[ignore = "needs PostgreSQL"]
fn the_closed_model_steps_goose_users_up_and_keeps_d1_d8() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let args =
        ["--users", "4", "--step-users", "4", "--steps", "2", "--step-duration", "3s", "--no-trace", "--no-pgbench"];
    let output = load(dir.path(), &args);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("[INFO]"), "goose's INFO log stays off stdout: {stdout}");
    assert!(!stdout.contains("outcome:"), "a load run has no rollout outcome: {stdout}");
    let summary = summary(dir.path());
    assert!(summary["violation_counts"].as_object().is_some_and(|v| v.is_empty()));
    let load = &summary["load"];
    assert_eq!(load["model"], "closed (goose)");
    let steps = load["steps"].as_array().expect("steps");
    let targets: Vec<f64> = steps.iter().map(|s| s["target"].as_f64().expect("a target")).collect();
    assert_eq!(targets, vec![4.0, 8.0], "users per step");
    for step in steps {
        assert!(step["started"].as_u64().is_some_and(|n| n > 0), "users bought: {step}");
        assert!(step["latency"]["execute-cycle"]["count"].as_u64().is_some_and(|n| n > 0), "{step}");
    }
}

fn shard(out: &std::path::Path, shard: &str, database_url: &str) -> std::process::Child {
    let args =
        ["--rate", "10", "--step-rate", "10", "--steps", "2", "--step-duration", "3s", "--no-trace", "--no-pgbench"];
    Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["load", SMOKE, "--shard", shard, "--database-url", database_url, "--out"])
        .arg(out)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("posim runs")
}

fn steps_file(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("load-steps.json")).expect("the steps' raw numbers");
    serde_json::from_str(&text).expect("load-steps.json parses")
}

#[test]
#[ignore = "needs PostgreSQL"]
fn two_shards_on_one_database_merge_into_one_result_with_summed_counts() {
    let postgres = posim::live::postgres::ThrowawayPostgres::start().expect("a throwaway PostgreSQL");
    let dirs = [tempfile::tempdir().expect("a temp dir"), tempfile::tempdir().expect("a temp dir")];
    let mut children: Vec<_> =
        dirs.iter().enumerate().map(|(i, dir)| shard(dir.path(), &format!("{i}/2"), &postgres.url())).collect();
    for child in &mut children {
        assert_eq!(child.wait().expect("the shard ends").code(), Some(0), "each shard keeps D1–D8");
    }
    let merged = tempfile::tempdir().expect("a temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["merge"])
        .args(dirs.iter().map(|d| d.path()))
        .arg("--out")
        .arg(merged.path())
        .output()
        .expect("posim merge runs");
    eprintln!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0));
    let whole = summary(merged.path());
    assert_eq!(whole["load"]["shard"], "merged 2 shards");
    assert!(whole["violation_counts"].as_object().is_some_and(|v| v.is_empty()));
    let shards: Vec<serde_json::Value> = dirs.iter().map(|d| summary(d.path())).collect();
    assert_eq!((shards[0]["load"]["shard"].as_str(), shards[1]["load"]["shard"].as_str()), (Some("0/2"), Some("1/2")));
    let total = |key: &str| shards.iter().map(|s| s["load"][key].as_u64().expect("a count")).sum::<u64>();
    assert_eq!(whole["load"]["purchases"].as_u64(), Some(total("purchases")));
    assert!(total("purchases") > 0);
    let raw: Vec<Vec<serde_json::Value>> = dirs.iter().map(|d| steps_file(d.path())).collect();
    for (index, step) in whole["load"]["steps"].as_array().expect("steps").iter().enumerate() {
        let started: u64 = raw.iter().filter_map(|r| r.get(index)).map(|s| s["started"].as_u64().expect("n")).sum();
        assert_eq!(step["started"].as_u64(), Some(started), "step {index}");
        let requests: u64 = shards
            .iter()
            .filter_map(|s| s["load"]["steps"].get(index))
            .map(|s| s["latency"]["all"]["count"].as_u64().expect("n"))
            .sum();
        assert_eq!(step["latency"]["all"]["count"].as_u64(), Some(requests), "histograms added, step {index}");
        assert_eq!(step["target"].as_f64(), Some(20.0 + 20.0 * index as f64), "offered rates summed");
    }
    let twice = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["merge"])
        .arg(dirs[0].path())
        .arg(dirs[0].path())
        .output()
        .expect("posim merge runs");
    assert_eq!(twice.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("missing [1/2], given twice [0/2]"));
}

#[test]
fn out_of_range_flags_exit_2_with_a_message() {
    for args in [
        &["--rate", "0"][..],
        &["--steps", "500"],
        &["--users", "5", "--rate", "5"],
        &["--threshold", "p50<1s"],
        &["--shard", "2/2"],
        &["--pgbench-clients", "0"],
        &["--pgbench-clients", "1001"],
        &["--pgbench-duration", "0s"],
        &["--pgbench-duration", "11m"],
        &["--no-pgbench", "--pgbench-clients", "4"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_posim")).args(["load", SMOKE]).args(args).output().expect("runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let flag = args.iter().rev().find(|arg| arg.starts_with("--")).expect("a flag");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

/// Two machines a condominium: purchases find no free machine long before
/// the stack is busy. posim names the fleet, reports no knee and exits 3.
#[test]
#[ignore = "needs PostgreSQL"]
fn a_fleet_too_small_is_named_as_the_limit_and_no_stack_knee_is_reported() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let smoke = std::fs::read_to_string(SMOKE).expect("the smoke scenario");
    let small = smoke.replace("machines_per_condominium = 40", "machines_per_condominium = 2");
    assert_ne!(small, smoke, "the fixture's fleet line is where the test expects it");
    let scenario = dir.path().join("small-fleet.toml");
    std::fs::write(&scenario, small).expect("the scenario is written");
    let out = dir.path().join("out");
    let args = ["--find-knee", "--rate", "100", "--step-rate", "100", "--steps", "3", "--step-duration", "3s"];
    let output = load_scenario(&scenario, &out, &[&args[..], &["--no-pgbench", "--no-trace"]].concat());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "posim could not measure the stack: {stdout}");
    assert!(stdout.contains("limited by the fleet") && stdout.contains("bigger fleet"), "{stdout}");
    let load = &summary(&out)["load"];
    assert!(load["knee"].is_null(), "no stack knee: {}", load["knee"]);
    assert_eq!(load["stopped_by"]["limit"], "fleet", "{}", load["stopped_by"]);
    let last = load["steps"].as_array().and_then(|steps| steps.last()).expect("a step");
    assert_eq!(last["limited_by"], "fleet", "{last}");
}
