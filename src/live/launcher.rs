//! Starting and redeploying the stack under test, one process per replica:
//! the embedded default (posim's own reference stack on a throwaway
//! PostgreSQL), a team's command (`--stack-cmd`, run with `sh -c`), or a
//! stack already running (`--stack-url`, which posim cannot redeploy). A
//! deploy stops the old process, starts one with the new env, and waits for
//! `/health`; a process that exits instead is an error that carries its exit
//! status and the last lines it printed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::postgres::ThrowawayPostgres;
use crate::contract::canary::{IOT_TIMEOUT_VAR, TTL_VAR};
use crate::contract::{CanaryConfig, StackSettings};

/// How the stack under test is started.
#[derive(Clone, Debug)]
pub enum StackChoice {
    /// posim's reference stack (`posim stack serve`) on a throwaway PostgreSQL.
    Embedded { bugs: Vec<String> },
    /// A command run with `sh -c`, one process per replica.
    Command(String),
    /// Already running; posim cannot redeploy it.
    Url(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0}")]
    Postgres(#[from] super::postgres::PostgresError),
    #[error("the stack exited at start-up ({status}); its last lines:\n{output}")]
    Exited { status: String, output: String },
    #[error("the stack did not answer /health within {0:?}; its last lines:\n{1}")]
    NotHealthy(Duration, String),
    #[error("cannot start the stack: {0}")]
    Spawn(String),
}

struct Process {
    child: Child,
    log: PathBuf,
}

pub struct Launcher {
    choice: StackChoice,
    postgres: Option<ThrowawayPostgres>,
    world_url: String,
    settings: StackSettings,
    psp_timeout: u64,
    logs: PathBuf,
    processes: Vec<Option<Process>>,
    urls: Vec<Option<String>>,
    http: reqwest::Client,
}

impl Launcher {
    /// Prepares the launcher (and the database for the embedded stack or a command).
    /// `settings` and `psp_timeout` are wall-clock values (already scaled).
    pub fn new(
        choice: StackChoice,
        replicas: usize,
        world_url: String,
        (settings, psp_timeout): (StackSettings, u64),
        logs: PathBuf,
    ) -> Result<Launcher, LaunchError> {
        let postgres = match &choice {
            StackChoice::Embedded { .. } => Some(ThrowawayPostgres::start()?),
            StackChoice::Command(_) => ThrowawayPostgres::start().ok(),
            StackChoice::Url(_) => None,
        };
        let urls = match &choice {
            StackChoice::Url(url) => vec![Some(url.trim_end_matches('/').to_string()); replicas],
            _ => vec![None; replicas],
        };
        std::fs::create_dir_all(&logs).map_err(|e| LaunchError::Spawn(format!("{}: {e}", logs.display())))?;
        Ok(Launcher {
            choice,
            postgres,
            world_url,
            settings,
            psp_timeout,
            logs,
            processes: (0..replicas).map(|_| None).collect(),
            urls,
            http: reqwest::Client::new(),
        })
    }

    pub fn can_redeploy(&self) -> bool {
        !matches!(self.choice, StackChoice::Url(_))
    }

    pub fn url(&self, replica: usize) -> Option<String> {
        self.urls[replica].clone()
    }

    /// The env of CONTRACT.md for one replica.
    fn env(&self, port: u16, canary: &CanaryConfig) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = canary.env().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        env.insert("PORT".into(), port.to_string());
        env.insert("PSP_BASE_URL".into(), self.world_url.clone());
        env.insert("IOT_GATEWAY_URL".into(), self.world_url.clone());
        env.insert(TTL_VAR.into(), (self.settings.cycle_ttl / 1000).max(1).to_string());
        env.insert(IOT_TIMEOUT_VAR.into(), self.settings.iot_timeout.max(1).to_string());
        env.insert("PAYMENTS_PSP_TIMEOUT_MS".into(), self.psp_timeout.max(1).to_string());
        if let Some(postgres) = &self.postgres {
            env.insert("DATABASE_URL".into(), postgres.url());
        }
        if let StackChoice::Embedded { bugs } = &self.choice
            && !bugs.is_empty()
        {
            env.insert("POSIM_STACK_BUG".into(), bugs.join(","));
        }
        env
    }

    /// Stops the replica's process (SIGTERM, then kill after 5 s).
    pub async fn stop(&mut self, replica: usize) {
        if self.can_redeploy() {
            self.urls[replica] = None;
        }
        let Some(mut process) = self.processes[replica].take() else { return };
        if let Some(pid) = process.child.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        if tokio::time::timeout(Duration::from_secs(5), process.child.wait()).await.is_err() {
            let _ = process.child.kill().await;
        }
    }

    /// (Re)starts a replica with `canary`; returns once it answers `/health`.
    pub async fn deploy(&mut self, replica: usize, canary: &CanaryConfig) -> Result<(), LaunchError> {
        if !self.can_redeploy() {
            return Ok(());
        }
        self.stop(replica).await;
        let port = free_port()?;
        let log = self.logs.join(format!("replica-{replica}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| LaunchError::Spawn(e.to_string()))?;
        let err = out.try_clone().map_err(|e| LaunchError::Spawn(e.to_string()))?;
        let mut command = match &self.choice {
            StackChoice::Embedded { .. } => {
                let exe = std::env::current_exe().map_err(|e| LaunchError::Spawn(e.to_string()))?;
                let mut command = Command::new(exe);
                command.args(["stack", "serve"]);
                command
            }
            StackChoice::Command(text) => {
                let mut command = Command::new("sh");
                command.args(["-c", text]);
                command
            }
            StackChoice::Url(_) => unreachable!("checked by can_redeploy"),
        };
        command.envs(self.env(port, canary)).stdin(Stdio::null()).stdout(out).stderr(err).kill_on_drop(true);
        let child = command.spawn().map_err(|e| LaunchError::Spawn(e.to_string()))?;
        self.processes[replica] = Some(Process { child, log: log.clone() });
        let url = format!("http://127.0.0.1:{port}");
        self.wait_healthy(replica, &url).await?;
        self.urls[replica] = Some(url);
        Ok(())
    }

    async fn wait_healthy(&mut self, replica: usize, url: &str) -> Result<(), LaunchError> {
        let limit = Duration::from_secs(30);
        let started = std::time::Instant::now();
        loop {
            let process = self.processes[replica].as_mut().expect("a started process");
            if let Ok(Some(status)) = process.child.try_wait() {
                let output = last_lines(&process.log);
                self.processes[replica] = None;
                return Err(LaunchError::Exited { status: status.to_string(), output });
            }
            let health = self.http.get(format!("{url}/health")).timeout(Duration::from_secs(1)).send().await;
            if health.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(LaunchError::NotHealthy(limit, last_lines(&process.log)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every replica (and the database with the launcher's drop).
    pub async fn shutdown(&mut self) {
        for replica in 0..self.processes.len() {
            self.stop(replica).await;
        }
    }
}

fn free_port() -> Result<u16, LaunchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| LaunchError::Spawn(e.to_string()))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| LaunchError::Spawn(e.to_string()))
}

fn last_lines(log: &PathBuf) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
