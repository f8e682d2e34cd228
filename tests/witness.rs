//! Witnesses explain: a violation lists, in time order, the records that
//! led to it — the terminal's requests and what it heard, the faults
//! injected on the stack's calls, what the world answered them, the charges
//! and cycles — beside the records that break the invariant.

use std::process::Command;

#[test]
fn a_d2_witness_from_resend_after_timeout_names_the_ambiguous_answer_and_the_second_command() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["run", "scenarios/iot-faults.toml", "--stack-bug", "resend-after-timeout", "--no-trace", "--out"])
        .arg(dir.path())
        .output()
        .expect("posim runs");
    assert_eq!(output.status.code(), Some(1), "the bug is caught");
    let text = std::fs::read_to_string(dir.path().join("summary.json")).expect("a summary");
    let summary: serde_json::Value = serde_json::from_str(&text).expect("summary.json parses");
    let violations = summary["violations"].as_array().expect("violations");
    let d2 = violations.iter().find(|v| v["code"] == "D2").expect("a D2 violation");
    let witness = d2["witness"].as_array().expect("its witness");
    let text = |line: &serde_json::Value| line["text"].as_str().expect("a line").to_string();
    let starts: Vec<usize> = (0..witness.len()).filter(|&i| witness[i]["key"] == true).collect();
    assert_eq!(starts.len(), 2, "the two cycles are the key records: {witness:#?}");
    assert!(starts.iter().all(|&i| text(&witness[i]).contains("starts cycle")));
    let ambiguous = (0..starts[1])
        .find(|&i| witness[i]["key"] == false && text(&witness[i]).contains("fires on the stack's start_cycle call"));
    let ambiguous = ambiguous.expect("the lost or late gateway answer before the second command is in the witness");
    assert!(text(&witness[ambiguous]).contains("iot_"), "{}", text(&witness[ambiguous]));
    // The world's own account of the first command: it ran the machine, and
    // the stack heard nothing or a 504 before it sent the second.
    let unheard = (starts[0]..starts[1]).find(|&i| {
        let line = text(&witness[i]);
        line.contains("the gateway answers the stack's start_cycle call")
            && (line.contains("nothing before the stack's timeout") || line.contains("504"))
    });
    assert!(unheard.is_some(), "the world's answer to the first command is in the witness: {witness:#?}");
    let execute = witness.iter().position(|l| text(l).contains("sends request") && text(l).contains("execute-cycle"));
    assert!(execute.is_some_and(|i| i < starts[0]), "the terminal's execute-cycle request comes first");
    let records: Vec<u64> = witness.iter().map(|l| l["record"].as_u64().expect("a record number")).collect();
    assert!(records.windows(2).all(|w| w[0] < w[1]), "in time order");
    let markdown = std::fs::read_to_string(dir.path().join("summary.md")).expect("summary.md");
    assert!(markdown.contains(&format!("→ {}", text(&witness[starts[1]]))), "the key records are marked");
}
