//! A bad scenario is refused before anything runs: exit 2, `file:line:column`
//! and what was expected, never a panic.

use std::process::Command;

/// (file, where, what the message must say)
const CASES: &[(&str, &str, &str)] = &[
    ("unknown-key.toml", ":11:1:", "unknown field `colour`"),
    ("wrong-type.toml", ":9:12:", "expected f64"),
    ("fraction-above-one.toml", ":9:12:", "fraction must be between 0 and 1, got 1.5"),
    ("malformed-uuid.toml", ":9:54:", "must be a UUID in canonical form"),
    ("unknown-fault-kind.toml", ":13:8:", "unknown variant `meteor_strike`, expected one of"),
    ("unknown-mode.toml", ":8:8:", "expected one of `off`, `allowlist`, `blocklist`"),
    ("bad-duration.toml", ":10:8:", "is not a duration"),
    ("unknown-phase-in-fault.toml", ":15:11:", "no phase is named `50%`"),
    ("broken-toml.toml", ":2:7:", "expected `]`"),
    ("no-phases.toml", ":1:1:", "missing field `phases`"),
    ("stack-fault-replica-out-of-range.toml", ":17:11:", "replica 2 does not exist: the stack has 2 replicas"),
    ("stack-fault-without-duration.toml", ":15:6:", "pause_replica needs a `duration` above zero"),
    ("stack-fault-after-the-end.toml", ":15:6:", "at 5h 0m is past the run's end (40m 0s)"),
    ("duration-too-long.toml", ":10:8:", "is longer than a scenario allows"),
    ("too-many-terminals.toml", ":5:29:", "terminals_per_condominium must be at most 1000"),
    // Found by tests/fuzz_scenarios.rs (or bounded with it): numbers that
    // allocated, overflowed a live run's stack env, or had no bound at all.
    ("fleet-too-big.toml", ":3:1:", "more than 5,000,000 machines or terminals"),
    (
        "fleet-file-huge-counts.toml",
        "",
        "huge-fleet.fleet:3:6: condominium 3f9c1e52-7a0b-4d8e-b6c1-2e5f8a9d0b17: machines",
    ),
    ("latency-too-long.toml", ":7:8:", "card must be [low, high] milliseconds, low ≤ high ≤ 3600000"),
    ("cycle-length-too-long.toml", ":7:16:", "`999999999h` is longer than a scenario allows"),
    ("ttl-beyond-the-stack.toml", ":7:13:", "cycle_ttl must be at most 168h 0m"),
    ("psp-timeout-beyond-the-stack.toml", ":7:15:", "psp_timeout must be at most 10m 0s"),
    ("live-time-scale-out-of-range.toml", ":13:14:", "time_scale must be between 1 and 10000"),
    ("live-skip-without-a-reason.toml", ":13:8:", "skip says why a live suite leaves the scenario out; it is empty"),
    // A game day's sealed script.
    ("inject-unknown-incident.toml", ":14:12:", "expected incident `A`, `B` or `C`, got `D`"),
    ("inject-incident-and-fault.toml", ":13:6:", "an injection names either `incident` (A, B or C) or `fault`"),
    ("inject-fault-without-probability.toml", ":13:6:", "an injected fault needs `probability`"),
    ("inject-after-the-end.toml", ":13:6:", "an injection must come before the run ends (1h 0m)"),
    ("inject-error-rate-above-one.toml", ":15:14:", "error_rate must be between 0 and 1, got 1.5"),
];

#[test]
fn every_bad_scenario_is_refused_with_its_place() {
    let out = tempfile::tempdir().expect("a temp dir");
    for (file, place, message) in CASES {
        let path = format!("fixtures/bad-scenarios/{file}");
        let output = Command::new(env!("CARGO_BIN_EXE_posim"))
            .args(["run", &path, "--out"])
            .arg(out.path().join(file))
            .output()
            .expect("posim runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{file}: {stderr}");
        // An empty place: the mistake is in the fleet file, placed in the message.
        let placed = if place.is_empty() { String::new() } else { format!("{path}{place}") };
        assert!(stderr.contains(&placed), "{file}: no `{place}` in: {stderr}");
        assert!(stderr.contains(message), "{file}: no `{message}` in: {stderr}");
        assert!(!stderr.contains("panicked"), "{file} panicked: {stderr}");
        assert!(!out.path().join(file).exists(), "{file}: nothing is written for a refused scenario");
    }
}

#[test]
fn an_unknown_bug_switch_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["run", "scenarios/rollout.toml", "--stack-bug", "gremlins"])
        .output()
        .expect("posim runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown stack bug `gremlins`"), "{stderr}");
}

#[test]
fn a_missing_scenario_file_is_a_usage_error() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_posim")).args(["run", "scenarios/nope.toml"]).output().expect("posim runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("scenarios/nope.toml: cannot read"));
}
