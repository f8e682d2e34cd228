//! Starting, redeploying and breaking the stack under test, whatever runs
//! it: local processes (the embedded reference stack or a team's command),
//! containers (`--stack-image`), or a stack already running (`--stack-url`,
//! which posim cannot redeploy). A deploy replaces one replica and waits
//! for `/health`; a replica that exits instead is an error that carries its
//! exit status and the last lines it printed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::backend::{Backend, GivenUrl};
use super::clock_skew::{ReplicaClocks, find_libfaketime};
use super::containers::{self, ContainerImages, Containers};
pub use super::launch_error::LaunchError;
use super::processes::{Processes, Program};
use super::runs::Run;
use crate::contract::canary::{COMMAND_EXPIRY_VAR, IOT_TIMEOUT_VAR, TTL_VAR};
use crate::contract::{CanaryConfig, StackSettings};
use crate::faults::{Crossing, FaultPlan};
use crate::world::outcomes::Fired;

/// How the stack under test is started.
#[derive(Clone, Debug)]
pub enum StackChoice {
    /// posim's reference stack (`posim stack serve`) on a throwaway
    /// PostgreSQL, or on `database` (a URL) shared with other runs (shards).
    Embedded { bugs: Vec<String>, database: Option<String> },
    /// A command run with `sh -c`, one process per replica.
    Command(String),
    /// Already running; posim cannot redeploy it.
    Url(String),
    /// Containers of `images` on a network of their own; `bugs` go in
    /// `POSIM_STACK_BUG` (the reference image reads it).
    Image { images: ContainerImages, bugs: Vec<String> },
}

impl StackChoice {
    /// Containers reach posim's world through the host's bridge, not loopback.
    pub fn world_must_face_containers(&self) -> bool {
        matches!(self, StackChoice::Image { .. })
    }
}

pub struct Launcher {
    backend: Box<dyn Backend>,
    bugs: Vec<String>,
    world_url: String,
    settings: StackSettings,
    psp_timeout: u64,
    /// The gateway's command expiry in the stack's wall time (ms).
    command_expiry: u64,
    urls: Vec<Option<String>>,
    /// Per replica, how many times it was started: a late restart after a
    /// kill must not replace a replica that a deploy already replaced.
    generations: Vec<u32>,
    http: reqwest::Client,
    /// Whether replicas are local processes (libfaketime can skew them).
    processes: bool,
    clocks: Option<ReplicaClocks>,
    run: Arc<Run>,
}

impl Launcher {
    /// Prepares the launcher (and the database for the embedded stack, a
    /// command or containers). `settings` and `psp_timeout` are wall-clock
    /// values (already scaled); posim's PSP and gateway listen on
    /// `world_port` under `world_path`.
    pub async fn new(
        choice: StackChoice,
        replicas: usize,
        (world_port, world_path): (u16, String),
        (settings, psp_timeout): (StackSettings, u64),
        logs: PathBuf,
        run: Arc<Run>,
    ) -> Result<Launcher, LaunchError> {
        std::fs::create_dir_all(&logs).map_err(|e| LaunchError::Spawn(format!("{}: {e}", logs.display())))?;
        let mut world_url = format!("http://127.0.0.1:{world_port}{world_path}");
        let mut urls = vec![None; replicas];
        let processes = matches!(choice, StackChoice::Embedded { .. } | StackChoice::Command(_));
        let own = Arc::clone(&run);
        let (backend, bugs) = match choice {
            StackChoice::Embedded { bugs, database: Some(url) } => (
                Box::new(Processes::on_database(Program::Embedded, replicas, &logs, run, url)) as Box<dyn Backend>,
                bugs,
            ),
            StackChoice::Embedded { bugs, database: None } => {
                let processes =
                    tokio::task::block_in_place(|| Processes::new(Program::Embedded, replicas, &logs, run))?;
                (Box::new(processes) as Box<dyn Backend>, bugs)
            }
            StackChoice::Command(text) => {
                let processes =
                    tokio::task::block_in_place(|| Processes::new(Program::Shell(text), replicas, &logs, run))?;
                (Box::new(processes) as Box<dyn Backend>, vec![])
            }
            StackChoice::Url(url) => {
                urls = vec![Some(url.trim_end_matches('/').to_string()); replicas];
                (Box::new(GivenUrl) as Box<dyn Backend>, vec![])
            }
            StackChoice::Image { images, bugs } => {
                world_url = format!("http://{}:{world_port}{world_path}", containers::HOST_ALIAS);
                (Box::new(Containers::open(images, replicas, &logs, &run).await?) as Box<dyn Backend>, bugs)
            }
        };
        Ok(Launcher {
            backend,
            bugs,
            world_url,
            settings,
            psp_timeout,
            command_expiry: crate::faults::COMMAND_EXPIRY,
            urls,
            generations: vec![0; replicas],
            http: reqwest::Client::new(),
            processes,
            clocks: None,
            run: own,
        })
    }

    /// Plays `clock_skew` on every replica start; says why not when it cannot.
    pub fn skew_clocks(&mut self, plan: FaultPlan, time_scale: f64) -> Result<(), String> {
        if !self.processes {
            return Err(format!(
                "clock_skew is not played on this stack ({}): only local processes can be started under libfaketime",
                self.kind()
            ));
        }
        let library = find_libfaketime().ok_or_else(|| {
            "clock_skew is not played: libfaketime is not installed (Debian: apt-get install libfaketime)".to_string()
        })?;
        self.clocks = Some(ReplicaClocks { plan, time_scale, library });
        Ok(())
    }

    /// Whether the run is being torn down (Ctrl-C): replicas only stop.
    pub fn ending(&self) -> bool {
        self.run.is_ending()
    }

    pub fn can_redeploy(&self) -> bool {
        self.backend.can_redeploy()
    }

    /// What runs the replicas, for the report.
    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    pub fn url(&self, replica: usize) -> Option<String> {
        self.urls[replica].clone()
    }

    pub fn generation(&self, replica: usize) -> u32 {
        self.generations[replica]
    }

    /// The env of CONTRACT.md for one replica.
    fn env(&self, port: u16, database_url: Option<String>, canary: &CanaryConfig) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = canary.env().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        env.insert("PORT".into(), port.to_string());
        env.insert("PSP_BASE_URL".into(), self.world_url.clone());
        env.insert("IOT_GATEWAY_URL".into(), self.world_url.clone());
        env.insert(TTL_VAR.into(), (self.settings.cycle_ttl / 1000).max(1).to_string());
        env.insert(IOT_TIMEOUT_VAR.into(), self.settings.iot_timeout.max(1).to_string());
        env.insert("PAYMENTS_PSP_TIMEOUT_MS".into(), self.psp_timeout.max(1).to_string());
        env.insert(COMMAND_EXPIRY_VAR.into(), self.command_expiry.max(1).to_string());
        if let Some(url) = database_url {
            env.insert("DATABASE_URL".into(), url);
        }
        if !self.bugs.is_empty() {
            env.insert("POSIM_STACK_BUG".into(), self.bugs.join(","));
        }
        env
    }

    /// The gateway's command expiry as the stack's wall time (scaled).
    pub fn set_command_expiry(&mut self, wall_ms: u64) {
        self.command_expiry = wall_ms;
    }

    /// Stops the replica (its process or container).
    pub async fn stop(&mut self, replica: usize) {
        if self.can_redeploy() {
            self.urls[replica] = None;
        }
        self.backend.stop(replica).await
    }

    /// (Re)starts a replica with `canary`; returns once it answers `/health`,
    /// with the `clock_skew` it started under, if any (`crossing`: when and
    /// in which phase, for the fault's scope).
    pub async fn deploy(
        &mut self,
        replica: usize,
        canary: &CanaryConfig,
        crossing: &Crossing,
    ) -> Result<Option<Fired>, LaunchError> {
        if !self.can_redeploy() {
            return Ok(None);
        }
        if self.ending() {
            return Err(LaunchError::Spawn("the run is ending: no replica is started".into()));
        }
        self.stop(replica).await;
        self.generations[replica] += 1;
        let (port, database_url) = self.backend.placement()?;
        let mut env = self.env(port, database_url, canary);
        let start = self.generations[replica];
        let skewed = self.clocks.as_ref().and_then(|clocks| clocks.env(crossing, replica as u16, start));
        let fired = skewed.map(|(fired, skew)| {
            env.extend(skew);
            fired
        });
        let url = self.backend.start(replica, port, env).await?;
        self.wait_healthy(replica, &url).await?;
        self.urls[replica] = Some(url);
        Ok(fired)
    }

    async fn wait_healthy(&mut self, replica: usize, url: &str) -> Result<(), LaunchError> {
        let limit = Duration::from_secs(30);
        let started = std::time::Instant::now();
        loop {
            if let Some(error) = self.backend.exited(replica).await {
                return Err(error);
            }
            let health = self.http.get(format!("{url}/health")).timeout(Duration::from_secs(1)).send().await;
            if health.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(LaunchError::NotHealthy(limit, self.backend.last_output(replica).await));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Why a replica that was started will never answer again: it exited
    /// (not by posim's hand: what posim stops or kills it forgets first).
    pub async fn exited(&mut self, replica: usize) -> Option<LaunchError> {
        self.backend.exited(replica).await
    }

    /// Freezes (or thaws) a replica: it keeps its connections and answers nothing.
    pub async fn pause(&mut self, replica: usize, paused: bool) -> Result<(), LaunchError> {
        self.backend.pause(replica, paused).await
    }

    /// Kills a replica as a crash would (no graceful shutdown).
    pub async fn kill(&mut self, replica: usize) -> Result<(), LaunchError> {
        self.urls[replica] = None;
        self.backend.kill(replica).await
    }

    /// Stops or starts the database (started: once it accepts connections).
    pub async fn database_running(&mut self, running: bool) -> Result<(), LaunchError> {
        self.backend.database_running(running).await
    }

    /// The replicas' database as posim reaches it from the host, or why posim knows none.
    pub async fn host_database_url(&self) -> Result<String, String> {
        self.backend.host_database_url().await
    }

    /// Stops every replica and removes the database (and containers).
    pub async fn shutdown(&mut self) {
        for replica in 0..self.urls.len() {
            self.stop(replica).await;
        }
        self.backend.shutdown().await;
    }
}
