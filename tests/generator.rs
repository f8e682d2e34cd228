//! `posim generator` on one embedded reference-stack replica (throwaway
//! PostgreSQL): posim's generator and wrk both sustain a rate on
//! `GET /health`, the ratio is posim ÷ wrk, and the report is written.
//! Needs PostgreSQL and wrk (ignored by a plain `cargo test`). No timing is
//! asserted: the ratio is measured, not tested.

use std::process::Command;

#[test]
#[ignore = "needs PostgreSQL and wrk"]
fn posim_and_wrk_both_sustain_a_rate_and_the_ratio_is_posim_over_wrk() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["generator", "--duration", "2s", "--connections", "16", "--out"])
        .arg(dir.path())
        .output()
        .expect("posim runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0));
    let text = std::fs::read_to_string(dir.path().join("generator.json")).expect("generator.json");
    let report: serde_json::Value = serde_json::from_str(&text).expect("generator.json parses");
    let rate = |generator: &str| report[generator]["requests_per_second"].as_f64().expect("a rate");
    let (posim, wrk) = (rate("posim"), rate("wrk"));
    assert!(posim > 0.0 && wrk > 0.0, "both rates: {report}");
    // JSON's decimal text may move the last bit of a float: equal to 1e-12.
    let ratio = report["ratio"].as_f64().expect("a ratio");
    assert!((ratio - posim / wrk).abs() <= 1e-12 * ratio, "ratio {ratio} = {posim} / {wrk}");
    assert_eq!(report["connections"], 16);
    for generator in ["posim", "wrk"] {
        let line = &report[generator];
        assert!(line["p99_ms"].as_f64().is_some_and(|p99| p99 > 0.0), "{line}");
        assert!(line["requests"].as_u64().is_some_and(|n| n > 0), "{line}");
    }
    let markdown = std::fs::read_to_string(dir.path().join("generator.md")).expect("generator.md");
    assert!(markdown.contains("| posim |") && markdown.contains("| wrk |"), "{markdown}");
    assert!(stdout.contains("ratio posim ÷ wrk: "), "{stdout}");
    assert!(dir.path().join("stack-logs/replica-0.log").is_file(), "the replica's output is kept");
}

#[test]
fn out_of_range_flags_exit_2_naming_the_flag() {
    for (args, flag) in [
        (["--connections", "0"], "--connections"),
        (["--connections", "1025"], "--connections"),
        (["--duration", "0s"], "--duration"),
        (["--duration", "6m"], "--duration"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_posim")).arg("generator").args(args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn without_wrk_it_exits_2_and_says_how_to_install_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["generator", "--duration", "1s"])
        .env("PATH", "/nonexistent")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wrk is not installed (Debian: apt-get install wrk)"), "{stderr}");
}
