//! Swarm testing end to end, through the binary: a swarm with a bug switch
//! finds failing seeds and writes artifacts; an artifact replays to the same
//! trace, a tampered one does not, a bad one is refused; shrinking keeps
//! the D-code failing and grows nothing. The fault mix through the library.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use posim::scenario::Scenario;
use posim::swarm::artifact::Artifact;
use posim::swarm::edits::draw_mix;

const BUG: &str = "nonidempotent-confirm";

fn posim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_posim")).args(args).output().expect("posim runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// One small swarm over the rollout with a bug on, shared by the tests:
/// its artifacts' folder (kept for the test process).
fn swarm_artifacts() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir").keep();
        let out = dir.join("artifacts");
        let out_arg = out.to_str().expect("a UTF-8 temp path");
        let args = ["swarm", "scenarios/rollout.toml", "--seeds", "4", "--jobs", "2", "--stack-bug", BUG];
        let output = posim(&[&args[..], &["--out", out_arg]].concat());
        assert_eq!(output.status.code(), Some(1), "a seed fails:\n{}{}", stdout(&output), stderr(&output));
        assert!(stdout(&output).contains("4 seeds in"), "{}", stdout(&output));
        out
    })
}

/// The swarm's artifacts, in seed order.
fn artifacts() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(swarm_artifacts())
        .expect("the artifacts' folder")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "at least one failing seed wrote an artifact");
    paths
}

/// The first artifact (in file name order) whose run broke D2, the
/// invariant this bug breaks.
fn d2_artifact() -> (PathBuf, Artifact) {
    let read = |path: PathBuf| {
        let artifact = Artifact::read(&path).unwrap_or_else(|error| panic!("a valid artifact: {error}"));
        (path, artifact)
    };
    let found = artifacts().into_iter().map(read).find(|(_, artifact)| artifact.result.violations.contains_key("D2"));
    found.expect("a seed broke D2")
}

fn copy_with(artifact: &Artifact, name: &str, change: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let mut value = serde_json::to_value(artifact).expect("JSON");
    change(&mut value);
    let path = tempfile::tempdir().expect("a temp dir").keep().join(name);
    std::fs::write(&path, value.to_string()).expect("written");
    path
}

#[test]
fn a_swarm_with_a_bug_finds_failing_seeds_that_replay_identically() {
    let (path, artifact) = d2_artifact();
    assert_eq!((artifact.scenario.as_str(), artifact.artifact_version), ("rollout", 1));
    assert_eq!(artifact.stack_bugs.iter().map(|bug| bug.to_string()).collect::<Vec<_>>(), [BUG]);
    assert!(artifact.source.toml.contains("name = \"rollout\""), "the scenario travels with the artifact");
    assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(format!("seed-{}.json", artifact.seed).as_str()));
    let output = posim(&["replay", path.to_str().expect("UTF-8")]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(text.contains(&format!("reproduced: same trace hash {}", artifact.result.trace_hash)), "{text}");
}

#[test]
fn an_artifact_round_trips_through_json() {
    let (path, artifact) = d2_artifact();
    let text = std::fs::read_to_string(&path).expect("readable");
    assert_eq!(artifact.to_json().expect("exact") + "\n", text, "read and written again byte for byte");
    let back: Artifact = serde_json::from_str(&text).expect("JSON");
    assert_eq!(back, artifact);
}

#[test]
fn the_fault_mix_is_deterministic_per_seed_and_within_the_scenarios_bounds() {
    let scenario = Scenario::load(Path::new("scenarios/rollout.toml")).expect("bundled");
    let mut on = 0;
    for seed in 0..100 {
        let mix = draw_mix(&scenario, seed);
        assert_eq!(mix, draw_mix(&scenario, seed), "seed {seed} draws one mix");
        assert_eq!(mix.len(), scenario.faults.len());
        for (setting, fault) in mix.iter().zip(&scenario.faults) {
            assert_eq!(setting.kind, fault.kind);
            assert!(0.0 < setting.probability && setting.probability <= fault.probability, "{setting:?} {fault:?}");
            on += usize::from(setting.on);
        }
    }
    let total = 100 * scenario.faults.len();
    assert!(on * 10 > total * 4 && on * 10 < total * 6, "about half the faults on: {on} of {total}");
    let distinct: std::collections::HashSet<String> =
        (0..20).map(|seed| format!("{:?}", draw_mix(&scenario, seed))).collect();
    assert!(distinct.len() > 15, "seeds draw different mixes");
}

#[test]
fn shrinking_keeps_the_code_failing_and_grows_nothing() {
    let (path, artifact) = d2_artifact();
    let out = tempfile::tempdir().expect("a temp dir").keep().join("shrunk.json");
    let args = ["shrink", path.to_str().expect("UTF-8"), "--max-runs", "12", "--out", out.to_str().expect("UTF-8")];
    let output = posim(&args);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(text.contains("before: ") && text.contains("after: ") && text.contains("12 runs"), "{text}");
    let shrunk = Artifact::read(&out).expect("a shrunk artifact");
    let record = shrunk.shrink.as_ref().expect("the shrink is recorded");
    assert_eq!(record.target, "D2");
    assert!(shrunk.result.violations.contains_key("D2"), "{:?}", shrunk.result.violations);
    assert!(shrunk.result.sizes.none_larger_than(&artifact.result.sizes), "{:?}", shrunk.result.sizes);
    assert!(shrunk.result.sizes != artifact.result.sizes, "12 runs shrink something: {text}");
    let replayed = posim(&["replay", out.to_str().expect("UTF-8")]);
    assert_eq!(replayed.status.code(), Some(0), "the shrunk artifact replays: {}", stdout(&replayed));
}

#[test]
fn without_the_mix_the_faults_run_as_written() {
    let out = tempfile::tempdir().expect("a temp dir");
    let out_arg = out.path().to_str().expect("UTF-8");
    let args = ["swarm", "scenarios/terminal-faults.toml", "--seeds", "2", "--no-mix", "--stack-bug", BUG, "--out"];
    let output = posim(&[&args[..], &[out_arg]].concat());
    assert_eq!(output.status.code(), Some(1), "{}{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("the scenario's faults as written"), "{}", stdout(&output));
    let path = out.path().join("seed-0.json");
    let artifact = Artifact::read(&path).expect("seed 0 fails on terminal-faults with this bug");
    assert_eq!(artifact.edits.faults, None, "no mix recorded");
    let replayed = posim(&["replay", path.to_str().expect("UTF-8")]);
    assert_eq!(replayed.status.code(), Some(0), "{}", stdout(&replayed));
}

#[test]
fn a_tampered_artifact_does_not_replay() {
    let (_, artifact) = d2_artifact();
    let other_seed = copy_with(&artifact, "seed.json", |value| value["seed"] = serde_json::json!(artifact.seed + 1000));
    let output = posim(&["replay", other_seed.to_str().expect("UTF-8")]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("NOT reproduced") && stdout(&output).contains("trace hash:"),
        "{}",
        stdout(&output)
    );
    let other_hash = copy_with(&artifact, "hash.json", |value| value["result"]["trace_hash"] = serde_json::json!("0"));
    let output = posim(&["replay", other_hash.to_str().expect("UTF-8")]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("trace hash: 0 in the artifact"), "{}", stdout(&output));
}

#[test]
fn a_bad_artifact_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "not json").expect("written");
    let future = dir.path().join("future.json");
    std::fs::write(&future, r#"{"artifact_version": 7, "seed": 1}"#).expect("written");
    let missing = dir.path().join("missing.json");
    for (path, says) in [
        (&garbage, "not a posim artifact"),
        (&future, "artifact version 7 is not supported"),
        (&missing, "cannot read"),
    ] {
        for command in ["replay", "shrink"] {
            let output = posim(&[command, path.to_str().expect("UTF-8")]);
            assert_eq!(output.status.code(), Some(2), "{command} {}", path.display());
            assert!(stderr(&output).contains(says), "{command}: {}", stderr(&output));
        }
    }
}

#[test]
fn bad_usage_exits_2() {
    for args in [["--seeds", "0"], ["--jobs", "0"]] {
        let output = posim(&[&["swarm", "scenarios/rollout.toml"][..], &args].concat());
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains("must be at least 1"), "{}", stderr(&output));
    }
}

#[test]
fn an_incident_rehearsal_keeps_its_faults_unless_asked_to_mix() {
    let scenario = "scenarios/incident-b-bad-deploy.toml";
    let out = tempfile::tempdir().expect("a temp dir");
    let out_arg = out.path().to_str().expect("a UTF-8 temp path");
    let kept = posim(&["swarm", scenario, "--seeds", "2", "--out", out_arg]);
    assert_eq!(kept.status.code(), Some(0), "{}{}", stdout(&kept), stderr(&kept));
    assert!(stdout(&kept).contains("the scenario's faults as written"), "{}", stdout(&kept));
    let mixed = posim(&["swarm", scenario, "--seeds", "2", "--mix", "--out", out_arg]);
    assert!(stdout(&mixed).contains("a fault mix per seed"), "{}", stdout(&mixed));
}
