//! Fuzzing the scenario parser: the repository's own scenarios (and its
//! fleet fixture), mutated — a value replaced by a hostile one (huge,
//! negative, a float where an integer goes, a wrong type, a duration of
//! "999999999h", unicode), keys dropped, duplicated or added, the text cut
//! short, garbage inserted. `Scenario::parse` never panics and never
//! allocates what a number asks for before checking it; every refusal says
//! `file:line:column`; every accepted scenario's numbers are within bounds.
//! A few refused files go through `posim run`: exit 2, the place on stderr.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use posim::scenario::{Scenario, ScenarioError};
use posim::time::{DAY, HOUR, MINUTE};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// CONTRACT.md §2 and the scenario's own bounds.
const DURATION_MAX: u64 = 366 * DAY;
const TTL_MAX: u64 = 7 * DAY;
const TIMEOUT_MAX: u64 = 10 * MINUTE;
const LATENCY_MAX: u64 = HOUR;
const MACHINES_MAX: usize = 5_000_000;
const TERMINALS_MAX: usize = 5_000_000;

/// Generous: the biggest fleet a scenario may ask for is built in well
/// under this on a loaded CI host.
const PARSE_TIME_MAX: Duration = Duration::from_secs(10);

const FLEET_REFERENCE: &str = "../fixtures/fleet-small.toml";

fn fleet_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fleet-small.toml")
}

/// The scenarios of the repository, as (file name, text).
fn originals() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for dir in ["scenarios", "fixtures/scenarios"] {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|error| panic!("{dir}: {error}"));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
                // An absolute fleet path: a copy parses the same from any folder.
                let text = text.replace(FLEET_REFERENCE, &fleet_fixture().display().to_string());
                files.push((path.display().to_string(), text));
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "the repository's scenarios are found");
    files
}

/// Values that break a type, a range or an allocation.
fn hostile_value() -> impl Strategy<Value = String> {
    let fixed = select(vec![
        "9223372036854775807",
        "-9223372036854775808",
        "4294967295",
        "4294967296",
        "65535",
        "65536",
        "256",
        "5000000",
        "1000001",
        "100000",
        "0",
        "-1",
        "1e308",
        "-0.0",
        "nan",
        "inf",
        "-inf",
        "1.5",
        "0.5",
        "true",
        "\"999999999h\"",
        "\"1000000000000000000000d\"",
        "\"18446744073709551615ms\"",
        "\"367d\"",
        "\"366d\"",
        "\"8d\"",
        "\"11m\"",
        "\"2h\"",
        "\"0s\"",
        "\"1ms\"",
        "\"-5m\"",
        "\"5 parsecs\"",
        "\"\"",
        "\"😀\"",
        "\"off\"",
        "\"blocklist\"",
        "\"6f1c2a7e-0d4b-4c8e-9a51-3b2f7d9e8c01\"",
        "[0, 9223372036854775807]",
        "[5, 1]",
        "[]",
        "[1, 2, 3]",
        "[\"1s\", \"999999999h\"]",
        "[\"0s\", \"0s\"]",
        "[0, 4294967295]",
        "{}",
        "1979-05-27T07:32:00Z",
        "\"9999-12-31T23:59:59Z\"",
    ]);
    prop_oneof![
        6 => fixed.prop_map(str::to_string),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|x| format!("{x:?}")),
        1 => (0u64..1_000_000_000, select(vec!["ms", "s", "m", "h", "d", "w", "y", "parsec"]))
            .prop_map(|(n, unit)| format!("\"{n}{unit}\"")),
        1 => "\\PC{0,16}".prop_map(|text| format!("{text:?}")),
    ]
}

/// Every key a scenario knows, for inserting where it may or may not belong.
const KEYS: &[&str] = &[
    "seed",
    "start",
    "drain",
    "expect",
    "condominiums",
    "machines_per_condominium",
    "terminals_per_condominium",
    "naive_share",
    "washes_per_machine_per_day",
    "amount_cents",
    "cycle_length",
    "decline_rate",
    "request_timeout",
    "max_attempts",
    "backoff",
    "duplicate_delay_max",
    "replicas",
    "cycle_ttl",
    "iot_timeout",
    "psp_timeout",
    "restart",
    "sweep_interval",
    "terminal_stack",
    "stack_psp",
    "stack_iot",
    "card",
    "min_samples",
    "sweep_backlog_max",
    "analysis_interval",
    "stable_for",
    "fraction",
    "hold",
    "hold_max",
    "bad_build_error_rate",
    "bad_build_confirm_failure_rate",
    "bad_build_execute_failure_rate",
    "bad_build_duplicate_rate",
    "probability",
    "from",
    "until",
    "duration",
    "at",
    "replica",
    "every",
];

const TABLES: &[&str] = &["fleet", "traffic", "terminals", "stack", "latency", "criteria", "rollback_targets"];

#[derive(Clone, Debug)]
enum Mutation {
    /// The value of the n-th `key = value` line.
    Replace(Index, String),
    Drop(Index),
    Duplicate(Index),
    /// Cut the text at this share of its length.
    Truncate(Index),
    Insert(Index, String),
    /// A known key and a hostile value right after the n-th table header.
    InsertKey(Index, &'static str, String),
    /// A table that may already exist, with one key.
    AppendTable(&'static str, &'static str, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let garbage = prop_oneof!["\\PC{0,30}", ".{0,30}", Just("[[".to_string()), Just("= 1".to_string())];
    prop_oneof![
        8 => (any::<Index>(), hostile_value()).prop_map(|(at, value)| Mutation::Replace(at, value)),
        2 => any::<Index>().prop_map(Mutation::Drop),
        1 => any::<Index>().prop_map(Mutation::Duplicate),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), garbage).prop_map(|(at, text)| Mutation::Insert(at, text)),
        4 => (any::<Index>(), select(KEYS), hostile_value()).prop_map(|(at, key, value)| Mutation::InsertKey(at, key, value)),
        2 => (select(TABLES), select(KEYS), hostile_value()).prop_map(|(table, key, value)| Mutation::AppendTable(table, key, value)),
    ]
}

fn is_assignment(line: &str) -> bool {
    let line = line.trim_start();
    !line.starts_with('#') && !line.starts_with('[') && line.contains(" = ")
}

fn is_header(line: &str) -> bool {
    line.trim_start().starts_with('[')
}

/// The index of the n-th line that `keep` selects, if any.
fn nth_line(lines: &[String], at: &Index, keep: fn(&str) -> bool) -> Option<usize> {
    let chosen: Vec<usize> = (0..lines.len()).filter(|&i| keep(&lines[i])).collect();
    (!chosen.is_empty()).then(|| chosen[at.index(chosen.len())])
}

fn apply(text: &str, mutation: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    match mutation {
        Mutation::Replace(at, value) => {
            if let Some(i) = nth_line(&lines, at, is_assignment)
                && let Some((key, _)) = lines[i].split_once(" = ")
            {
                lines[i] = format!("{key} = {value}");
            }
        }
        Mutation::Drop(at) if !lines.is_empty() => {
            lines.remove(at.index(lines.len()));
        }
        Mutation::Duplicate(at) if !lines.is_empty() => {
            let i = at.index(lines.len());
            lines.insert(i, lines[i].clone());
        }
        Mutation::Truncate(at) => {
            let cut = at.index(text.len() + 1);
            let cut = (0..=cut).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            return text[..cut].to_string();
        }
        Mutation::Insert(at, garbage) => lines.insert(at.index(lines.len() + 1), garbage.clone()),
        Mutation::InsertKey(at, key, value) => {
            let i = nth_line(&lines, at, is_header).map_or(0, |i| i + 1);
            lines.insert(i, format!("{key} = {value}"));
        }
        Mutation::AppendTable(table, key, value) => lines.push(format!("[{table}]\n{key} = {value}")),
        Mutation::Drop(_) | Mutation::Duplicate(_) => {}
    }
    lines.join("\n")
}

/// A scenario of the repository with one to three mutations.
fn mutated(originals: Vec<(String, String)>) -> impl Strategy<Value = (String, String)> {
    (select(originals), proptest::collection::vec(mutation(), 1..=3)).prop_map(|((file, text), mutations)| {
        let text = mutations.iter().fold(text, |text, mutation| apply(&text, mutation));
        (file, text)
    })
}

/// Parses, turning a panic into a failure that names the input.
fn parse(text: &str, file: &str, base: &Path) -> Result<Result<Scenario, ScenarioError>, TestCaseError> {
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| Scenario::parse(text, file, base)));
    let took = started.elapsed();
    let parsed = outcome.map_err(|_| TestCaseError::fail(format!("Scenario::parse panicked on:\n{text}")))?;
    prop_assert!(took < PARSE_TIME_MAX, "parsing took {:?}:\n{}", took, text);
    Ok(parsed)
}

/// A refusal says where: `file:line:column:` within the text of that file.
fn refusal_has_a_place(error: &ScenarioError, files: &[(&str, &str)]) -> Result<(), TestCaseError> {
    let text = files.iter().find(|(file, _)| *file == error.file).map(|(_, text)| *text);
    let text = text.ok_or_else(|| TestCaseError::fail(format!("an unknown file in `{error}`")))?;
    let shown = error.to_string();
    let Some((line, column)) = error.at else {
        return Err(TestCaseError::fail(format!("no line and column in `{shown}` for:\n{text}")));
    };
    prop_assert!(shown.starts_with(&format!("{}:{line}:{column}: ", error.file)), "{}", shown);
    prop_assert!(!error.message.is_empty());
    let lines = text.split('\n').count();
    prop_assert!(line >= 1 && line <= lines, "line {} of {} in `{}`", line, lines, shown);
    let width = text.split('\n').nth(line - 1).map_or(0, |l| l.chars().count());
    prop_assert!(column >= 1 && column <= width + 1, "column {} of {} in `{}`", column, width, shown);
    Ok(())
}

/// An accepted scenario's numbers are within their bounds.
fn accepted_is_bounded(scenario: &Scenario) -> Result<(), TestCaseError> {
    let share = |x: f64| (0.0..=1.0).contains(&x);
    let stack = &scenario.stack;
    prop_assert!((1..=64).contains(&stack.replicas));
    prop_assert!((1..=TTL_MAX).contains(&stack.settings.cycle_ttl), "cycle_ttl {}", stack.settings.cycle_ttl);
    prop_assert!((1..=TIMEOUT_MAX).contains(&stack.settings.iot_timeout), "iot {}", stack.settings.iot_timeout);
    prop_assert!((1..=TIMEOUT_MAX).contains(&stack.psp_timeout), "psp {}", stack.psp_timeout);
    prop_assert!(stack.restart <= DURATION_MAX && stack.sweep_interval <= DURATION_MAX);
    let traffic = &scenario.traffic;
    prop_assert!((0.0..=500.0).contains(&traffic.washes_per_machine_per_day));
    prop_assert!(share(traffic.decline_rate));
    let (low, high) = traffic.amount_cents;
    prop_assert!(1 <= low && low <= high && high <= 100_000_000);
    let (shortest, longest) = traffic.cycle_length;
    prop_assert!(
        0 < shortest && shortest <= longest && longest <= DURATION_MAX,
        "cycle_length {:?}",
        (shortest, longest)
    );
    let terminals = &scenario.terminals;
    prop_assert!((1..=20).contains(&terminals.max_attempts));
    for duration in [terminals.request_timeout, terminals.backoff, terminals.duplicate_delay_max, scenario.drain] {
        prop_assert!(duration <= DURATION_MAX, "duration {}", duration);
    }
    let latency = &scenario.latency;
    for (low, high) in [latency.terminal_stack, latency.stack_psp, latency.stack_iot, latency.card] {
        prop_assert!(low <= high && high <= LATENCY_MAX, "latency {:?}", (low, high));
    }
    let fleet = &scenario.fleet;
    prop_assert!(!fleet.condominiums.is_empty() && fleet.machines.len() <= MACHINES_MAX);
    prop_assert!(fleet.terminals.len() <= TERMINALS_MAX, "{} terminals", fleet.terminals.len());
    for phase in &scenario.phases {
        prop_assert!(0 < phase.hold && phase.hold <= phase.hold_max && phase.hold_max <= DURATION_MAX);
        prop_assert!(share(phase.bad_build_error_rate));
        let build = phase.bad_build;
        prop_assert!(
            share(build.confirm_failure_rate) && share(build.execute_failure_rate) && share(build.duplicate_rate)
        );
    }
    for fault in &scenario.faults {
        prop_assert!(share(fault.probability) && fault.from < fault.until && fault.duration <= DURATION_MAX);
    }
    let criteria = &scenario.criteria;
    prop_assert!(criteria.analysis_interval > 0 && criteria.stable_for <= DURATION_MAX);
    let horizon = scenario.horizon();
    prop_assert!(scenario.stack_faults.iter().all(|fault| fault.at < horizon.saturating_add(scenario.drain)));
    Ok(())
}

/// Parses one scenario; `files` are the texts its errors may point into.
fn check(text: &str, file: &str, base: &Path, files: &[(&str, &str)]) -> Result<bool, TestCaseError> {
    match parse(text, file, base)? {
        Ok(scenario) => accepted_is_bounded(&scenario).map(|()| true),
        Err(error) => refusal_has_a_place(&error, files).map(|()| false),
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

/// Runs `cases` cases of `strategy` through `one` (true: accepted).
fn fuzz<T: std::fmt::Debug>(
    name: &str,
    cases: u32,
    strategy: impl Strategy<Value = T>,
    one: impl Fn(T) -> Result<bool, TestCaseError>,
) {
    let accepted = Cell::new(0u32);
    let outcome = runner(cases).run(&strategy, |case| {
        if one(case)? {
            accepted.set(accepted.get() + 1);
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    let accepted = accepted.get();
    eprintln!("fuzz_scenarios: {name}: {cases} generated cases ({accepted} accepted, {} refused)", cases - accepted);
    assert!(accepted > 0 && accepted < cases, "both outcomes are exercised: {accepted} of {cases} accepted");
}

#[test]
fn mutated_scenarios_are_refused_with_a_place_or_bounded() {
    let fleet_path = fleet_fixture().display().to_string();
    let fleet = std::fs::read_to_string(&fleet_path).expect("the fleet fixture");
    fuzz("mutated scenarios", 4_000, mutated(originals()), |(file, text)| {
        check(&text, &file, Path::new("."), &[(&file, &text), (&fleet_path, &fleet)])
    });
}

/// The fleet fixture mutated, under a scenario that reads it.
#[test]
fn mutated_fleet_files_are_refused_with_a_place_or_bounded() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let fleet = std::fs::read_to_string(fleet_fixture()).expect("the fleet fixture");
    let scenario = std::fs::read_to_string("scenarios/game-day-operator.toml").expect("a scenario with a fleet file");
    let scenario = scenario.replace(FLEET_REFERENCE, "fleet.toml");
    let fleet_path = dir.path().join("fleet.toml");
    let fleet_file = fleet_path.display().to_string();
    let strategy = proptest::collection::vec(mutation(), 1..=3)
        .prop_map(move |mutations| mutations.iter().fold(fleet.clone(), |text, mutation| apply(&text, mutation)));
    fuzz("mutated fleet files", 600, strategy, |fleet| {
        std::fs::write(&fleet_path, &fleet).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let file = "game-day-operator.toml";
        check(&scenario, file, dir.path(), &[(file, &scenario), (&fleet_file, &fleet)])
    });
}

#[test]
fn posim_run_exits_2_with_the_place_for_a_mutated_bad_scenario() {
    const CASES: u32 = 30;
    let dir = tempfile::tempdir().expect("a temp dir");
    let refused = Cell::new(0u32);
    let outcome = runner(CASES).run(&mutated(originals()), |(_, text)| {
        let written = dir.path().join(format!("fuzz-{}.toml", refused.get())).display().to_string();
        let Err(expected) = parse(&text, &written, dir.path())? else { return Ok(()) };
        refused.set(refused.get() + 1);
        std::fs::write(&written, &text).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let out = dir.path().join("out");
        let output = Command::new(env!("CARGO_BIN_EXE_posim"))
            .args(["run", &written, "--out"])
            .arg(&out)
            .output()
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        prop_assert_eq!(output.status.code(), Some(2), "{}", stderr);
        prop_assert!(!stderr.contains("panicked"), "{}", stderr);
        prop_assert!(stderr.contains(&expected.to_string()), "`{}` not in {}", expected, stderr);
        prop_assert!(expected.at.is_some(), "no line and column: {}", expected);
        prop_assert!(!out.exists(), "nothing is written for a refused scenario");
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    eprintln!("fuzz_scenarios: {CASES} generated cases through `posim run` ({} refused ones run)", refused.get());
    assert!(refused.get() > 0, "at least one refused scenario went through the binary");
}
