//! Nothing a live run starts outlives it: a team's command whose stack is a
//! child of its shell leaves no process and no listening port after a
//! rollout with redeploys; a posim killed with SIGKILL mid-run leaves
//! processes, a database, folders and containers that `posim clean` — or
//! the next run's start — removes. Each run has its own runs root
//! (POSIM_RUNS_DIR) and a marker in its environment, which every process it
//! starts inherits: that is how the test finds them in /proc. These tests
//! need PostgreSQL (and Docker for containers): ignored by a plain
//! `cargo test`, they fail without them under `--include-ignored`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

const POSIM: &str = env!("CARGO_BIN_EXE_posim");
const MARKER: &str = "POSIM_HYGIENE_MARKER";

/// A process of the run under test, as /proc shows it.
#[derive(Clone, Debug)]
struct Marked {
    pid: u32,
    parent: u32,
    name: String,
    /// The PORT posim gave a replica.
    port: Option<u16>,
    /// The throwaway PostgreSQL's port, from a replica's DATABASE_URL.
    database_port: Option<u16>,
}

/// One run's isolation: its runs root, its marker, its report folder.
struct Harness {
    runs: Rc<tempfile::TempDir>,
    out: tempfile::TempDir,
    marker: String,
}

impl Harness {
    fn new() -> Harness {
        assert!(posim::live::postgres::find_binaries().is_some(), "these tests need PostgreSQL's server binaries");
        let dir = || tempfile::tempdir().expect("a temp dir");
        Harness { runs: Rc::new(dir()), out: dir(), marker: uuid::Uuid::new_v4().to_string() }
    }

    /// Another run on the same runs root, with a marker of its own.
    fn next_run(&self) -> Harness {
        Harness { runs: Rc::clone(&self.runs), ..Harness::new() }
    }

    fn posim(&self, args: &[&str]) -> Command {
        let mut command = Command::new(POSIM);
        command.args(args).env("POSIM_RUNS_DIR", self.runs.path()).env(MARKER, &self.marker);
        command
    }

    fn live(&self, scenario: &str, extra: &[&str]) -> Command {
        let scenario = format!("fixtures/scenarios/{scenario}.toml");
        let out = self.out.path().to_str().expect("a UTF-8 temp path");
        let mut command = self.posim(&["live", &scenario, "--time-scale", "120", "--out", out]);
        command.args(extra);
        command
    }

    fn clean(&self) -> Output {
        self.posim(&["clean"]).output().expect("posim clean runs")
    }

    /// The live (not zombie) processes that carry this run's marker.
    fn marked(&self) -> Vec<Marked> {
        let pids = std::fs::read_dir("/proc").expect("/proc").flatten();
        let pids = pids.filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok());
        pids.filter_map(|pid| marked(pid, &self.marker)).collect()
    }

    /// The run records under this run's root.
    fn records(&self) -> Vec<serde_json::Value> {
        let dirs = std::fs::read_dir(self.runs.path()).expect("the runs root").flatten();
        let text = |dir: std::fs::DirEntry| std::fs::read_to_string(dir.path().join("run.json")).ok();
        dirs.filter_map(text).map(|text| serde_json::from_str(&text).expect("a run record")).collect()
    }

    /// Waits until `ready` holds of the marked processes (panics after 60 s).
    fn wait_for(&self, what: &str, posim: &mut Child, ready: impl Fn(&[Marked]) -> bool) -> Vec<Marked> {
        let started = Instant::now();
        loop {
            let marked = self.marked();
            if ready(&marked) {
                return marked;
            }
            assert!(posim.try_wait().expect("posim's status").is_none(), "posim ended before {what}");
            assert!(started.elapsed() < Duration::from_secs(60), "no {what} within 60 s: {marked:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn marked(pid: u32, marker: &str) -> Option<Marked> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let vars: Vec<String> = environ.split(|&b| b == 0).map(|var| String::from_utf8_lossy(var).into_owned()).collect();
    let get = |name: &str| vars.iter().find_map(|var| var.strip_prefix(&format!("{name}=")).map(str::to_string));
    if get(MARKER)? != marker {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim().to_string();
    let port = get("PORT").and_then(|port| port.parse().ok());
    let database_port = get("DATABASE_URL").and_then(|url| url.rsplit(':').next()?.split('/').next()?.parse().ok());
    Some(Marked { pid, parent: fields.get(1)?.parse().ok()?, name, port, database_port })
}

/// Replicas (processes given a PORT) that answer on it.
fn answering(marked: &[Marked]) -> BTreeSet<u16> {
    marked.iter().filter_map(|m| m.port).filter(|&port| listening(port)).collect()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

fn said(output: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Every port the run's processes had (replicas' and the database's).
fn ports(marked: &[Marked]) -> BTreeSet<u16> {
    marked.iter().flat_map(|m| [m.port, m.database_port]).flatten().collect()
}

/// Asserts nothing of the run is left: no marked process, no listening port, no folder, no record.
fn assert_nothing_left(harness: &Harness, ports: &BTreeSet<u16>, folders: &[PathBuf]) {
    // A SIGKILLed process may take a moment to be gone from /proc.
    let started = Instant::now();
    while !harness.marked().is_empty() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(harness.marked().iter().map(|m| (m.pid, m.name.clone())).collect::<Vec<_>>(), []);
    let open: Vec<u16> = ports.iter().copied().filter(|&port| listening(port)).collect();
    assert_eq!(open, Vec::<u16>::new(), "ports still listening (of {ports:?})");
    let left: Vec<&PathBuf> = folders.iter().filter(|folder| folder.exists()).collect();
    assert_eq!(left, Vec::<&PathBuf>::new(), "folders left");
    assert_eq!(harness.records(), Vec::<serde_json::Value>::new(), "run records left");
}

/// The folders a run's record names (read while the run is alive or dead).
fn folders_of(harness: &Harness) -> Vec<PathBuf> {
    let records = harness.records();
    assert_eq!(records.len(), 1, "one run registered: {records:?}");
    let folders = records[0]["folders"].as_array().expect("folders");
    folders.iter().filter_map(|folder| folder.as_str()).map(PathBuf::from).collect()
}

/// `sh -c "posim stack serve; true"`: the shell cannot exec the stack, so the stack is its child.
fn stack_under_a_shell() -> String {
    format!("{POSIM} stack serve; true")
}

/// A replica's stack (a `posim` given a PORT) whose parent is a shell of the run.
fn under_a_shell(marked: &[Marked]) -> bool {
    let shells: BTreeSet<u32> = marked.iter().filter(|m| m.name == "sh").map(|m| m.pid).collect();
    marked.iter().any(|m| m.name == "posim" && m.port.is_some() && shells.contains(&m.parent))
}

#[test]
#[ignore = "needs PostgreSQL"]
fn a_stack_under_a_shell_leaves_no_process_and_no_port_after_a_rollout() {
    let harness = Harness::new();
    let mut posim = harness.live("live-smoke", &["--stack-cmd", &stack_under_a_shell()]);
    let mut posim = posim.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("posim starts");
    let (mut seen, mut folders) = (Vec::new(), Vec::new());
    while posim.try_wait().expect("posim's status").is_none() {
        seen.extend(harness.marked().into_iter().filter(|m| m.pid != posim.id()));
        if folders.is_empty() && !harness.records().is_empty() {
            folders = folders_of(&harness);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = posim.wait_with_output().expect("posim ends");
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let summary = std::fs::read_to_string(harness.out.path().join("summary.json")).expect("summary.json");
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary.json parses");
    assert_eq!(summary["phases"].as_array().map(Vec::len), Some(2), "a rollout with a redeploy");
    assert!(under_a_shell(&seen), "the stack ran as a child of its shell: {seen:?}");
    let replica_ports: BTreeSet<u16> = seen.iter().filter_map(|m| m.port).collect();
    assert!(replica_ports.len() >= 4, "two replicas, deployed twice: {replica_ports:?}");
    assert!(seen.iter().any(|m| m.database_port.is_some()), "replicas had a database: {seen:?}");
    assert!(!folders.is_empty(), "the run recorded its folders");
    assert_nothing_left(&harness, &ports(&seen), &folders);
}

/// SIGKILLs a live run once its replicas answer; returns what it had running.
fn kill_when_serving(harness: &Harness, stack: &[&str]) -> (Vec<Marked>, Vec<PathBuf>) {
    let mut posim = harness.live("live-smoke", stack).stdout(Stdio::null()).spawn().expect("posim starts");
    let marked = harness.wait_for("two answering replicas", &mut posim, |marked| answering(marked).len() >= 2);
    let folders = folders_of(harness);
    posim.kill().expect("SIGKILL");
    posim.wait().expect("reaped");
    (marked.into_iter().filter(|m| m.pid != posim.id()).collect(), folders)
}

#[test]
#[ignore = "needs PostgreSQL"]
fn a_run_killed_with_sigkill_is_removed_by_posim_clean() {
    let harness = Harness::new();
    let (running, folders) = kill_when_serving(&harness, &[]);
    let started = Instant::now();
    while harness.marked().iter().any(|m| m.port.is_some()) && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = harness.marked();
    assert!(!left.iter().any(|m| m.port.is_some()), "the replicas died with posim: {left:?}");
    assert!(left.iter().any(|m| m.name == "postgres"), "the daemonized PostgreSQL is left: {left:?}");
    assert!(folders.iter().all(|folder| folder.exists()), "its folder is left: {folders:?}");
    let listed = harness.posim(&["clean", "--dry-run"]).output().expect("posim clean --dry-run runs");
    assert!(said(&listed).contains("would stop the PostgreSQL of run posim-"), "{}", said(&listed));
    assert!(harness.marked().iter().any(|m| m.name == "postgres"), "a dry run stops nothing");
    assert!(folders.iter().all(|folder| folder.exists()), "a dry run removes nothing");
    let output = harness.clean();
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert!(said(&output).contains("stopped the PostgreSQL of run posim-"), "{}", said(&output));
    assert_nothing_left(&harness, &ports(&running), &folders);
    let again = harness.clean();
    assert!(said(&again).contains("nothing left by dead runs"), "{}", said(&again));
}

#[test]
#[ignore = "needs PostgreSQL"]
fn the_next_run_sweeps_what_a_killed_run_left() {
    let harness = Harness::new();
    let (running, folders) = kill_when_serving(&harness, &["--stack-cmd", &stack_under_a_shell()]);
    std::thread::sleep(Duration::from_millis(500));
    let left = harness.marked();
    assert!(answering(&left).len() >= 2, "a shell's children outlive a SIGKILLed posim: {left:?}");
    let next = harness.next_run();
    let output = next.live("live-smoke", &[]).output().expect("the next run");
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert!(said(&output).contains("dead run(s) left"), "{}", said(&output));
    assert_nothing_left(&harness, &ports(&running), &folders);
}

#[test]
#[ignore = "needs PostgreSQL"]
fn a_replica_that_dies_on_its_own_is_noticed_recorded_and_restarted() {
    let harness = Harness::new();
    let mut posim =
        harness.live("live-smoke", &[]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("posim");
    let serving = harness.wait_for("two answering replicas", &mut posim, |marked| answering(marked).len() >= 2);
    let victim = serving.iter().filter(|m| m.port.is_some()).map(|m| m.pid).min().expect("a replica");
    let killed = Command::new("kill").args(["-KILL", &victim.to_string()]).status().expect("kill runs");
    assert!(killed.success(), "SIGKILL to replica process {victim}");
    let output = posim.wait_with_output().expect("posim ends");
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let summary = std::fs::read_to_string(harness.out.path().join("summary.json")).expect("summary.json");
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary.json parses");
    let notes: Vec<&str> = summary["notes"].as_array().expect("notes").iter().filter_map(|n| n.as_str()).collect();
    let note = notes.iter().find(|note| note.contains("exited on its own")).expect("a note says so");
    assert!(note.contains("(signal: 9 (SIGKILL)); restarted with deploy 0"), "{note}");
    let trace = std::fs::read_to_string(harness.out.path().join("trace.jsonl")).expect("trace.jsonl");
    let events: Vec<serde_json::Value> =
        trace.lines().map(|line| serde_json::from_str(line).expect("a record")).collect();
    let exited = events.iter().position(|e| e["event"] == "replica_exited").expect("the exit is in the trace");
    let replica = &events[exited]["replica"];
    let back = events[exited..].iter().find(|e| e["event"] == "replica_up" && &e["replica"] == replica);
    assert!(back.is_some_and(|e| e["config"] == 0), "restarted with the config it ran: {:?}", back);
    assert_eq!(
        events.iter().filter(|e| e["event"] == "replica_exited").count(),
        1,
        "one exit, posim's own stops are not"
    );
}

/// Ctrl-C or a CI job's SIGTERM: the run removes everything itself, and
/// what it stops is not taken for replicas dying on their own.
#[test]
#[ignore = "needs PostgreSQL"]
fn a_run_stopped_with_sigterm_leaves_nothing() {
    let harness = Harness::new();
    let mut posim = harness.live("live-smoke", &["--stack-cmd", &stack_under_a_shell()]);
    let mut posim = posim.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("posim starts");
    let running = harness.wait_for("two answering replicas", &mut posim, |marked| answering(marked).len() >= 2);
    let folders = folders_of(&harness);
    let stopped = Command::new("kill").args(["-TERM", &posim.id().to_string()]).status().expect("kill runs");
    assert!(stopped.success(), "SIGTERM to posim");
    let output = posim.wait_with_output().expect("posim ends");
    assert_eq!(output.status.code(), Some(3), "{}", said(&output));
    assert!(said(&output).contains("interrupted: the stack and its database were stopped"), "{}", said(&output));
    assert!(!said(&output).contains("exited on its own"), "{}", said(&output));
    assert_nothing_left(&harness, &ports(&running), &folders);
}
