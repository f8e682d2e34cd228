//! One world for both engines: for a scenario and seed, the world's fault
//! decisions on a call — keyed on (purchase, world endpoint, attempt) — are
//! the same in the simulator and in a live run against the reference stack.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const SCENARIO: &str = "fixtures/scenarios/world-faults.toml";

/// Runs `posim` with `args` and the trace written under `out`.
fn posim(args: &[&str], out: &Path) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_posim")).args(args).arg("--out").arg(out).output().expect("posim runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
}

/// The world's faults of a trace: (purchase, endpoint, attempt) → (fault, kind).
fn world_faults(trace: &Path) -> BTreeMap<(u64, String, u64), (u64, String)> {
    let text = std::fs::read_to_string(trace).expect("trace.jsonl");
    let mut faults = BTreeMap::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).expect("a JSON line");
        let call = &record["key"]["call"];
        let Some(endpoint) = call["site"]["world"].as_str() else { continue };
        assert_eq!(record["event"], "fault");
        let key = (
            call["purchase"].as_u64().expect("purchase"),
            endpoint.to_string(),
            call["attempt"].as_u64().expect("attempt"),
        );
        let decision = (record["fault"].as_u64().expect("fault"), record["kind"].as_str().expect("kind").to_string());
        assert!(faults.insert(key.clone(), decision).is_none(), "{key:?} rolled twice");
    }
    faults
}

#[test]
#[ignore = "needs PostgreSQL"]
fn the_world_decides_alike_in_the_simulator_and_live() {
    assert!(posim::live::postgres::find_binaries().is_some(), "this test needs PostgreSQL's server binaries");
    let dir = tempfile::tempdir().expect("a temp dir");
    let (sim, live) = (dir.path().join("sim"), dir.path().join("live"));
    posim(&["run", SCENARIO], &sim);
    posim(&["live", SCENARIO, "--time-scale", "120"], &live);
    let (sim, live) = (world_faults(&sim.join("trace.jsonl")), world_faults(&live.join("trace.jsonl")));
    let shared: Vec<_> = sim.keys().filter(|key| live.contains_key(*key)).collect();
    for key in &shared {
        assert_eq!(sim[*key], live[*key], "the world decided {key:?} differently");
    }
    // The plan's unscoped faults split one roll per boundary: keyed apart,
    // about half the shared keys would disagree.
    let count = |endpoints: &[&str]| shared.iter().filter(|key| endpoints.contains(&key.1.as_str())).count();
    let (psp, gateway) = (count(&["get_charge", "list_charges", "refund"]), count(&["start_cycle", "find_cycles"]));
    let sizes =
        format!("shared {} (psp {psp}, gateway {gateway}); sim {}, live {}", shared.len(), sim.len(), live.len());
    assert!(psp >= 10 && gateway >= 30, "too few shared decisions to mean anything: {sizes}");
    assert!(2 * shared.len() >= live.len(), "most of the live run's world faults replay the simulator's: {sizes}");
    eprintln!("{sizes}");
}
