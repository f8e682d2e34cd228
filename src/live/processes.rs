//! The stack as local processes, one per replica: posim's own reference
//! stack (`posim stack serve`) or a team's command run with `sh -c`, on a
//! throwaway PostgreSQL from the machine's binaries. Stack faults are
//! signals: SIGSTOP/SIGCONT for a pause, SIGKILL for a kill; the database
//! restarts with `pg_ctl`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::launch_error::{LaunchError, last_lines};
use super::postgres::ThrowawayPostgres;

/// What each replica runs.
#[derive(Clone, Debug)]
pub enum Program {
    /// This executable's `stack serve`.
    Embedded,
    /// A command for `sh -c`.
    Shell(String),
}

struct Process {
    child: Child,
    log: PathBuf,
}

pub struct Processes {
    program: Program,
    pub(super) postgres: Option<ThrowawayPostgres>,
    logs: PathBuf,
    processes: Vec<Option<Process>>,
}

impl Processes {
    /// A team's command may not need the database: start it if we can.
    pub fn new(program: Program, replicas: usize, logs: &Path) -> Result<Processes, LaunchError> {
        let postgres = match program {
            Program::Embedded => Some(ThrowawayPostgres::start()?),
            Program::Shell(_) => ThrowawayPostgres::start().ok(),
        };
        Ok(Processes { program, postgres, logs: logs.to_path_buf(), processes: (0..replicas).map(|_| None).collect() })
    }

    pub fn database_url(&self) -> Option<String> {
        self.postgres.as_ref().map(ThrowawayPostgres::url)
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
        command.envs(env).stdin(Stdio::null()).stdout(out).stderr(err).kill_on_drop(true);
        let child = command.spawn().map_err(|e| LaunchError::Spawn(e.to_string()))?;
        self.processes[replica] = Some(Process { child, log });
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// Why a starting replica will never answer: it exited (with its last lines).
    pub fn exited(&mut self, replica: usize) -> Option<LaunchError> {
        let process = self.processes[replica].as_mut()?;
        let status = process.child.try_wait().ok().flatten()?;
        let output = last_lines(&std::fs::read_to_string(&process.log).unwrap_or_default());
        self.processes[replica] = None;
        Some(LaunchError::Exited { status: status.to_string(), output })
    }

    pub fn last_output(&self, replica: usize) -> String {
        let log = self.processes[replica].as_ref().map(|p| p.log.clone());
        last_lines(&log.and_then(|log| std::fs::read_to_string(log).ok()).unwrap_or_default())
    }

    /// SIGTERM (after SIGCONT, in case it is paused), then SIGKILL after 5 s.
    pub async fn stop(&mut self, replica: usize) {
        let Some(mut process) = self.processes[replica].take() else { return };
        signal(&process.child, "CONT");
        signal(&process.child, "TERM");
        if tokio::time::timeout(Duration::from_secs(5), process.child.wait()).await.is_err() {
            let _ = process.child.kill().await;
        }
    }

    pub fn pause(&mut self, replica: usize, paused: bool) -> Result<(), LaunchError> {
        let process = self.processes[replica].as_ref().ok_or_else(|| not_running(replica))?;
        signal(&process.child, if paused { "STOP" } else { "CONT" });
        Ok(())
    }

    pub async fn kill(&mut self, replica: usize) -> Result<(), LaunchError> {
        let mut process = self.processes[replica].take().ok_or_else(|| not_running(replica))?;
        process.child.kill().await.map_err(|e| LaunchError::StackFault(format!("kill replica {replica}: {e}")))
    }

    pub fn database_running(&mut self, running: bool) -> Result<(), LaunchError> {
        let postgres = self.postgres.as_ref().ok_or(LaunchError::NoDatabase)?;
        if running { postgres.start_server() } else { postgres.stop_server() }.map_err(LaunchError::Postgres)
    }
}

fn not_running(replica: usize) -> LaunchError {
    LaunchError::StackFault(format!("replica {replica} is not running"))
}

fn signal(child: &Child, name: &str) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
    }
}
