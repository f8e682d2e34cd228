//! The stack as local processes, one per replica: posim's own reference
//! stack (`posim stack serve`) or a team's command run with `sh -c`, on a
//! throwaway PostgreSQL from the machine's binaries. Each replica is a
//! process group that dies with posim (see `group`), recorded in the run's
//! registry. Stack faults are signals to the whole group: SIGSTOP/SIGCONT
//! for a pause, SIGKILL for a kill; the database restarts with `pg_ctl`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::group;
use super::launch_error::{LaunchError, last_lines};
use super::postgres::{self, PostgresError, ThrowawayPostgres};
use super::runs::{PostgresRecord, Run, Started};

/// What each replica runs.
#[derive(Clone, Debug)]
pub enum Program {
    /// This executable's `stack serve`.
    Embedded,
    /// A command for `sh -c`.
    Shell(String),
}

/// A replica: the leader of its own process group.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn group(&self) -> u32 {
        self.child.id()
    }

    /// Whether the leader and every process of its group are gone (reaps the leader).
    fn gone(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some() && group::members(self.group()).is_empty()
    }
}

impl Drop for Process {
    /// However the run ends (Ctrl-C drops it), nothing of the group is left.
    fn drop(&mut self) {
        group::signal(self.group(), libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Processes {
    program: Program,
    pub(super) postgres: Option<ThrowawayPostgres>,
    /// A database posim does not own (shards share one): never stopped by posim.
    given_database: Option<String>,
    logs: PathBuf,
    processes: Vec<Option<Process>>,
    run: Arc<Run>,
}

impl Processes {
    /// A team's command may not need the database: start it if we can.
    pub fn new(program: Program, replicas: usize, logs: &Path, run: Arc<Run>) -> Result<Processes, LaunchError> {
        let postgres = match program {
            Program::Embedded => Some(start_postgres(&run)?),
            Program::Shell(_) => start_postgres(&run).ok(),
        };
        let processes = (0..replicas).map(|_| None).collect();
        Ok(Processes { program, postgres, given_database: None, logs: logs.to_path_buf(), processes, run })
    }

    /// Replicas on a database given by URL (`--database-url`), which posim
    /// neither starts nor stops.
    pub fn on_database(program: Program, replicas: usize, logs: &Path, run: Arc<Run>, url: String) -> Processes {
        let processes = (0..replicas).map(|_| None).collect();
        Processes { program, postgres: None, given_database: Some(url), logs: logs.to_path_buf(), processes, run }
    }

    pub fn database_url(&self) -> Option<String> {
        self.postgres.as_ref().map(ThrowawayPostgres::url).or_else(|| self.given_database.clone())
    }

    /// Starts a replica on `port` with `env`; returns its URL.
    pub fn start(&mut self, replica: usize, port: u16, env: BTreeMap<String, String>) -> Result<String, LaunchError> {
        let log = self.logs.join(format!("replica-{replica}.log"));
        let spawn = |e: std::io::Error| LaunchError::Spawn(format!("{}: {e}", log.display()));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(spawn)?;
        let err = out.try_clone().map_err(spawn)?;
        let mut command = match &self.program {
            Program::Embedded => {
                let exe = std::env::current_exe().map_err(|e| LaunchError::Spawn(e.to_string()))?;
                let mut command = Command::new(exe);
                command.args(["stack", "serve"]);
                command
            }
            Program::Shell(text) => {
                let mut command = Command::new("sh");
                command.args(["-c", text]);
                command
            }
        };
        command.envs(env).stdin(Stdio::null()).stdout(out).stderr(err);
        let child = group::spawn(command).map_err(|e| LaunchError::Spawn(e.to_string()))?;
        if let Some(leader) = Started::of(child.id()) {
            self.run.update(|record| record.groups.push(leader));
        }
        self.processes[replica] = Some(Process { child, log });
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// Why a replica will never answer: it exited (with its last lines).
    /// What its group still runs is killed.
    pub fn exited(&mut self, replica: usize) -> Option<LaunchError> {
        let process = self.processes[replica].as_mut()?;
        let status = process.child.try_wait().ok().flatten()?;
        let output = last_lines(&std::fs::read_to_string(&process.log).unwrap_or_default());
        self.forget(replica);
        Some(LaunchError::Exited { status: status.to_string(), output })
    }

    pub fn last_output(&self, replica: usize) -> String {
        let log = self.processes[replica].as_ref().map(|p| p.log.clone());
        last_lines(&log.and_then(|log| std::fs::read_to_string(log).ok()).unwrap_or_default())
    }

    /// SIGTERM to the group (after SIGCONT, in case it is paused), then
    /// SIGKILL to what is left of it after 5 s.
    pub async fn stop(&mut self, replica: usize) {
        let Some(process) = self.processes[replica].as_mut() else { return };
        group::signal(process.group(), libc::SIGCONT);
        group::signal(process.group(), libc::SIGTERM);
        let started = Instant::now();
        while !process.gone() && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.forget(replica);
    }

    pub fn pause(&mut self, replica: usize, paused: bool) -> Result<(), LaunchError> {
        let process = self.processes[replica].as_ref().ok_or_else(|| not_running(replica))?;
        let sent = group::signal(process.group(), if paused { libc::SIGSTOP } else { libc::SIGCONT });
        if !sent {
            return Err(LaunchError::StackFault(format!("replica {replica}: {}", std::io::Error::last_os_error())));
        }
        Ok(())
    }

    pub async fn kill(&mut self, replica: usize) -> Result<(), LaunchError> {
        self.processes[replica].as_ref().ok_or_else(|| not_running(replica))?;
        self.forget(replica);
        Ok(())
    }

    /// SIGKILLs what is left of the replica's group and takes it off the record.
    fn forget(&mut self, replica: usize) {
        let Some(process) = self.processes[replica].take() else { return };
        let leader = process.group();
        drop(process);
        self.run.update(|record| record.groups.retain(|group| group.pid != leader));
    }

    pub fn database_running(&mut self, running: bool) -> Result<(), LaunchError> {
        let postgres = self.postgres.as_ref().ok_or(LaunchError::NoDatabase)?;
        if running { postgres.start_server() } else { postgres.stop_server() }.map_err(LaunchError::Postgres)
    }
}

/// A throwaway PostgreSQL in a folder named after the run, on the run's
/// record before it starts (the server outlives a SIGKILLed posim).
fn start_postgres(run: &Run) -> Result<ThrowawayPostgres, PostgresError> {
    let folder = tempfile::Builder::new().prefix(&format!("{}-pg-", run.id())).tempdir();
    let folder = folder.map_err(|e| PostgresError::Step { step: "creating a folder", detail: e.to_string() })?;
    let data = postgres::data_of(folder.path());
    let bin = postgres::find_binaries();
    run.update(|record| {
        record.folders.push(folder.path().to_path_buf());
        record.postgres = bin.map(|bin| PostgresRecord { bin, data });
    });
    ThrowawayPostgres::start_in(folder)
}

fn not_running(replica: usize) -> LaunchError {
    LaunchError::StackFault(format!("replica {replica} is not running"))
}
