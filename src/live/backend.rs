//! What runs a stack's replicas — processes, containers, or a stack given by
//! URL — behind one trait, so that the launcher never asks which. Each
//! backend says what it cannot do (a stack given by URL is never
//! redeployed, paused or killed by posim) as an error, not a silent skip.

use std::collections::BTreeMap;

use super::containers::{self, Containers};
use super::launch_error::LaunchError;
use super::processes::Processes;

#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// What runs the replicas, for the report.
    fn kind(&self) -> &'static str;
    /// Whether posim (re)starts the replicas itself.
    fn can_redeploy(&self) -> bool {
        true
    }
    /// Where a new replica listens, and the database it is given.
    fn placement(&self) -> Result<(u16, Option<String>), LaunchError>;
    /// Starts a replica with `env`; returns its base URL.
    async fn start(&mut self, replica: usize, port: u16, env: BTreeMap<String, String>) -> Result<String, LaunchError>;
    async fn stop(&mut self, replica: usize);
    /// The replica's own words if it exited.
    async fn exited(&mut self, replica: usize) -> Option<LaunchError>;
    async fn last_output(&self, replica: usize) -> String;
    /// Freezes (or thaws) a replica: it keeps its connections and answers nothing.
    async fn pause(&mut self, replica: usize, paused: bool) -> Result<(), LaunchError>;
    /// Kills a replica as a crash would (no graceful shutdown).
    async fn kill(&mut self, replica: usize) -> Result<(), LaunchError>;
    /// Stops or starts the database (started: once it accepts connections).
    async fn database_running(&mut self, running: bool) -> Result<(), LaunchError>;
    /// Removes whatever the backend holds beyond its replicas.
    async fn shutdown(&mut self) {}
    /// The replicas' database as posim reaches it from the host (with its
    /// password), or why posim knows none.
    async fn host_database_url(&self) -> Result<String, String>;
}

#[async_trait::async_trait]
impl Backend for Processes {
    fn kind(&self) -> &'static str {
        "processes"
    }

    fn placement(&self) -> Result<(u16, Option<String>), LaunchError> {
        let port = super::free_port().map_err(|e| LaunchError::Spawn(format!("finding a free port: {e}")))?;
        Ok((port, self.database_url()))
    }

    async fn start(&mut self, replica: usize, port: u16, env: BTreeMap<String, String>) -> Result<String, LaunchError> {
        Processes::start(self, replica, port, env)
    }

    async fn stop(&mut self, replica: usize) {
        Processes::stop(self, replica).await
    }

    async fn exited(&mut self, replica: usize) -> Option<LaunchError> {
        Processes::exited(self, replica)
    }

    async fn last_output(&self, replica: usize) -> String {
        Processes::last_output(self, replica)
    }

    async fn pause(&mut self, replica: usize, paused: bool) -> Result<(), LaunchError> {
        Processes::pause(self, replica, paused)
    }

    async fn kill(&mut self, replica: usize) -> Result<(), LaunchError> {
        Processes::kill(self, replica).await
    }

    async fn database_running(&mut self, running: bool) -> Result<(), LaunchError> {
        tokio::task::block_in_place(|| Processes::database_running(self, running))
    }

    async fn host_database_url(&self) -> Result<String, String> {
        self.database_url().ok_or_else(|| "the command's stack ran without posim's throwaway PostgreSQL".into())
    }
}

#[async_trait::async_trait]
impl Backend for Containers {
    fn kind(&self) -> &'static str {
        "containers"
    }

    fn placement(&self) -> Result<(u16, Option<String>), LaunchError> {
        Ok((containers::STACK_PORT, Some(self.database_url())))
    }

    async fn start(
        &mut self,
        replica: usize,
        _port: u16,
        env: BTreeMap<String, String>,
    ) -> Result<String, LaunchError> {
        Containers::start(self, replica, env).await
    }

    async fn stop(&mut self, replica: usize) {
        Containers::stop(self, replica).await
    }

    async fn exited(&mut self, replica: usize) -> Option<LaunchError> {
        Containers::exited(self, replica).await
    }

    async fn last_output(&self, replica: usize) -> String {
        Containers::last_output(self, replica).await
    }

    async fn pause(&mut self, replica: usize, paused: bool) -> Result<(), LaunchError> {
        Containers::pause(self, replica, paused).await
    }

    async fn kill(&mut self, replica: usize) -> Result<(), LaunchError> {
        Containers::kill(self, replica).await
    }

    async fn database_running(&mut self, running: bool) -> Result<(), LaunchError> {
        Containers::database_running(self, running).await
    }

    async fn shutdown(&mut self) {
        Containers::shutdown(self).await
    }

    async fn host_database_url(&self) -> Result<String, String> {
        Containers::host_database_url(self).await.map_err(|error| error.to_string())
    }
}

/// A stack already running at a URL: posim drives it and changes nothing.
pub struct GivenUrl;

#[async_trait::async_trait]
impl Backend for GivenUrl {
    fn kind(&self) -> &'static str {
        "a stack given by URL"
    }

    fn can_redeploy(&self) -> bool {
        false
    }

    fn placement(&self) -> Result<(u16, Option<String>), LaunchError> {
        Err(LaunchError::Spawn("a stack given by URL is never redeployed by posim".into()))
    }

    async fn start(&mut self, _: usize, _: u16, _: BTreeMap<String, String>) -> Result<String, LaunchError> {
        Err(LaunchError::Spawn("a stack given by URL is never redeployed by posim".into()))
    }

    async fn stop(&mut self, _: usize) {}

    async fn exited(&mut self, _: usize) -> Option<LaunchError> {
        None
    }

    async fn last_output(&self, _: usize) -> String {
        String::new()
    }

    async fn pause(&mut self, _: usize, _: bool) -> Result<(), LaunchError> {
        Err(LaunchError::StackFault("a stack given by URL cannot be paused by posim".into()))
    }

    async fn kill(&mut self, _: usize) -> Result<(), LaunchError> {
        Err(LaunchError::StackFault("a stack given by URL cannot be killed by posim".into()))
    }

    async fn database_running(&mut self, _: bool) -> Result<(), LaunchError> {
        Err(LaunchError::NoDatabase)
    }

    async fn host_database_url(&self) -> Result<String, String> {
        Err("the stack was given by URL: posim knows nothing of its database".into())
    }
}
