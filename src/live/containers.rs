//! The stack as containers, through testcontainers: a PostgreSQL container
//! and one container per replica on a network of the run's own; the
//! replicas reach posim's PSP and gateway on the host through
//! `host.docker.internal`. A deploy replaces a replica's container; stack
//! faults are `docker pause`, `docker kill` and a stop/start of the
//! database. Ports are published on 127.0.0.1 only, and the database asks
//! for a password made for the run. Every container carries posim's labels, so that a run that was
//! killed leaves nothing the next run does not sweep; container logs are
//! kept in the report's `stack-logs/`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use testcontainers::bollard::Docker;
use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::bollard::query_parameters::{
    CreateImageOptions, KillContainerOptions, ListContainersOptions, ListNetworksOptions, RemoveContainerOptions,
};
use testcontainers::core::{Host, IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::images;
use super::launch_error::{LaunchError, last_lines};
use super::runs::Run;

/// The label that names the run a container belongs to (its run id).
pub const RUN_LABEL: &str = "posim.run";
/// The stack's port inside its container (CONTRACT.md's `PORT`).
pub const STACK_PORT: u16 = 8080;
/// How replicas reach posim's world servers on the host.
pub const HOST_ALIAS: &str = "host.docker.internal";

/// Which images to run.
#[derive(Clone, Debug)]
pub struct ContainerImages {
    pub stack: String,
    pub postgres: String,
}

struct Replica {
    container: ContainerAsync<GenericImage>,
    name: String,
}

pub struct Containers {
    docker: Docker,
    run: String,
    network: String,
    images: ContainerImages,
    postgres: Option<ContainerAsync<GenericImage>>,
    replicas: Vec<Option<Replica>>,
    logs: PathBuf,
    serial: u32,
    /// The database's password for this run (never printed).
    password: String,
}

fn container_error(what: impl std::fmt::Display) -> impl FnOnce(testcontainers::TestcontainersError) -> LaunchError {
    move |error| LaunchError::Container(format!("{what}: {error}"))
}

impl Containers {
    /// Reaches the engine, checks both images and starts the database;
    /// returns once it accepts connections. Everything is named and
    /// labelled after `run`, whose record says Docker may hold some of it.
    pub async fn open(
        images: ContainerImages,
        replicas: usize,
        logs: &Path,
        run: &Run,
    ) -> Result<Containers, LaunchError> {
        let docker = images::docker().await.map_err(|error| LaunchError::Docker(error.to_string()))?;
        for (image, flag) in [(&images.stack, "--stack-image"), (&images.postgres, "--postgres-image")] {
            let present = images::image_exists(&docker, image).await;
            if !present.map_err(|error| LaunchError::Docker(error.to_string()))? {
                pull(&docker, image).await.map_err(|why| LaunchError::MissingImage {
                    image: image.clone(),
                    why,
                    build: format!("{} {flag} {image}", images::BUILD_COMMAND),
                })?;
            }
        }
        run.update(|record| record.docker = true);
        let run = run.id();
        let mut containers = Containers {
            docker,
            network: run.clone(),
            run,
            images,
            postgres: None,
            replicas: (0..replicas).map(|_| None).collect(),
            logs: logs.to_path_buf(),
            serial: 0,
            password: uuid::Uuid::new_v4().simple().to_string(),
        };
        let started = std::time::Instant::now();
        containers.start_database().await?;
        let (image, seconds) = (&containers.images.postgres, started.elapsed().as_secs_f64());
        println!("posim live: database container of {image} ready in {seconds:.1} s on network {}", containers.network);
        Ok(containers)
    }

    fn request(&self, image: &str, port: u16, name: &str) -> testcontainers::core::ContainerRequest<GenericImage> {
        let (repository, tag) = split_image(image);
        GenericImage::new(repository, tag)
            .with_exposed_port(port.tcp())
            .with_wait_for(WaitFor::Nothing)
            .with_network(&self.network)
            .with_container_name(name)
            .with_label(RUN_LABEL, &self.run)
            .with_host_config_modifier(move |config| publish_on_loopback(config, port))
    }

    fn database_host(&self) -> String {
        format!("{}-postgres", self.run)
    }

    /// The database as the replicas reach it, on the run's network.
    pub fn database_url(&self) -> String {
        format!("postgres://posim:{}@{}:5432/postgres", self.password, self.database_host())
    }

    /// The database as posim reaches it from the host: its port published on loopback.
    pub async fn host_database_url(&self) -> Result<String, LaunchError> {
        let postgres = self.postgres.as_ref().ok_or(LaunchError::NoDatabase)?;
        let port = postgres.get_host_port_ipv4(5432.tcp()).await.map_err(container_error("the database's port"))?;
        Ok(format!("postgres://posim:{}@127.0.0.1:{port}/postgres", self.password))
    }

    async fn start_database(&mut self) -> Result<(), LaunchError> {
        let request = self
            .request(&self.images.postgres, 5432, &self.database_host())
            // What registry images of PostgreSQL read; posim's own image ignores them.
            .with_env_var("POSTGRES_USER", "posim")
            .with_env_var("POSTGRES_DB", "postgres")
            .with_env_var("POSTGRES_PASSWORD", &self.password)
            .with_env_var("POSTGRES_HOST_AUTH_METHOD", "scram-sha-256")
            .with_shm_size(256 << 20);
        let image = self.images.postgres.clone();
        let container = request.start().await.map_err(|error| start_error(&image, error))?;
        self.postgres = Some(container);
        self.wait_for_database().await
    }

    /// Polls a real connection: a log line can be printed twice (registry
    /// images start a temporary server first) and says nothing after a restart.
    /// posim's own image starts with its bootstrap password: the first
    /// connection replaces it with the run's.
    async fn wait_for_database(&self) -> Result<(), LaunchError> {
        let postgres = self.postgres.as_ref().ok_or(LaunchError::NoDatabase)?;
        let limit = Duration::from_secs(60);
        let started = std::time::Instant::now();
        loop {
            if let Ok(port) = postgres.get_host_port_ipv4(5432.tcp()).await {
                if connect(port, &self.password).await.is_some() {
                    return Ok(());
                }
                if let Some(client) = connect(port, images::BOOTSTRAP_PASSWORD).await {
                    let set = format!("ALTER ROLE posim PASSWORD '{}'", self.password);
                    let refused = |e| LaunchError::Container(format!("setting the run's database password: {e}"));
                    client.simple_query(&set).await.map_err(refused)?;
                    continue;
                }
            }
            if let Ok(Some(code)) = postgres.exit_code().await {
                let output = last_lines(&container_output(postgres).await);
                let status = format!("the database container {} exited with code {code}", self.images.postgres);
                return Err(LaunchError::Exited { status, output });
            }
            if started.elapsed() > limit {
                let output = last_lines(&container_output(postgres).await);
                return Err(LaunchError::DatabaseNotReady(limit, output));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts a replica's container with `env`; returns the URL posim reaches it at.
    pub async fn start(&mut self, replica: usize, env: BTreeMap<String, String>) -> Result<String, LaunchError> {
        self.serial += 1;
        let name = format!("{}-replica-{replica}-{}", self.run, self.serial);
        let mut request = self.request(&self.images.stack, STACK_PORT, &name).with_host(HOST_ALIAS, Host::HostGateway);
        for (key, value) in env {
            request = request.with_env_var(key, value);
        }
        let image = self.images.stack.clone();
        let container = request.start().await.map_err(|error| start_error(&image, error))?;
        let port = container.get_host_port_ipv4(STACK_PORT.tcp()).await.map_err(container_error(&name))?;
        self.replicas[replica] = Some(Replica { container, name });
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// Why a starting replica will never answer: its container exited.
    pub async fn exited(&mut self, replica: usize) -> Option<LaunchError> {
        let code = self.replicas[replica].as_ref()?.container.exit_code().await.ok().flatten()?;
        let output = self.last_output(replica).await;
        self.stop(replica).await;
        Some(LaunchError::Exited { status: format!("container exit code {code}"), output })
    }

    pub async fn last_output(&self, replica: usize) -> String {
        match &self.replicas[replica] {
            Some(replica) => last_lines(&container_output(&replica.container).await),
            None => String::new(),
        }
    }

    /// Keeps the replica's logs, then removes its container (paused or not).
    pub async fn stop(&mut self, replica: usize) {
        let Some(Replica { container, name }) = self.replicas[replica].take() else { return };
        let _ = container.unpause().await;
        let _ = container.stop_with_timeout(Some(5)).await;
        self.keep_logs(&format!("replica-{replica}.log"), &name, &container).await;
        let _ = container.rm().await;
    }

    pub async fn pause(&mut self, replica: usize, paused: bool) -> Result<(), LaunchError> {
        let Some(Replica { container, name }) = &self.replicas[replica] else { return Err(not_running(replica)) };
        let done = if paused { container.pause().await } else { container.unpause().await };
        done.map_err(container_error(format!("{} {name}", if paused { "pause" } else { "unpause" })))
    }

    /// SIGKILL, as a crash; the container is kept for its logs, then removed.
    pub async fn kill(&mut self, replica: usize) -> Result<(), LaunchError> {
        let Some(Replica { container, name }) = self.replicas[replica].take() else { return Err(not_running(replica)) };
        let killed = self.docker.kill_container(container.id(), None::<KillContainerOptions>).await;
        self.keep_logs(&format!("replica-{replica}.log"), &name, &container).await;
        let _ = container.rm().await;
        killed.map_err(|error| LaunchError::Container(format!("kill {name}: {error}")))
    }

    /// Stops (SIGINT: a fast shutdown) or starts the database container.
    pub async fn database_running(&mut self, running: bool) -> Result<(), LaunchError> {
        let postgres = self.postgres.as_ref().ok_or(LaunchError::NoDatabase)?;
        if !running {
            return postgres.stop_with_timeout(Some(10)).await.map_err(container_error("stop the database"));
        }
        postgres.start().await.map_err(container_error("start the database"))?;
        self.wait_for_database().await
    }

    async fn keep_logs(&self, file: &str, name: &str, container: &ContainerAsync<GenericImage>) {
        use std::io::Write;
        let output = container_output(container).await;
        let path = self.logs.join(file);
        let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut log| {
            writeln!(log, "--- container {name} ---")?;
            log.write_all(output.as_bytes())
        });
        if let Err(error) = written {
            eprintln!("posim live: cannot keep the logs of {name} in {}: {error}", path.display());
        }
    }

    /// Removes every container of the run (keeping the logs) and its network.
    pub async fn shutdown(&mut self) {
        for replica in 0..self.replicas.len() {
            self.stop(replica).await;
        }
        if let Some(postgres) = self.postgres.take() {
            let _ = postgres.stop_with_timeout(Some(5)).await;
            self.keep_logs("postgres.log", &self.database_host(), &postgres).await;
            let _ = postgres.rm().await;
        }
        let _ = self.docker.remove_network(&self.network).await;
    }
}

/// The host's address on Docker's default bridge, which `host-gateway`
/// (and so [`HOST_ALIAS`]) names inside the containers: the bridge's
/// gateway, or when the engine does not list one, the first address of its
/// subnet (where Docker puts it).
pub async fn host_gateway_ip() -> Result<std::net::Ipv4Addr, LaunchError> {
    let docker = images::docker().await.map_err(|error| LaunchError::Docker(error.to_string()))?;
    let bridge =
        docker.inspect_network("bridge", None).await.map_err(|error| LaunchError::Docker(error.to_string()))?;
    let configs = bridge.ipam.and_then(|ipam| ipam.config).unwrap_or_default();
    let gateway = configs.iter().filter_map(|config| config.gateway.as_ref()?.parse().ok()).next();
    let first_of_subnet = || {
        configs.iter().find_map(|config| {
            let (network, _) = config.subnet.as_ref()?.split_once('/')?;
            let network: std::net::Ipv4Addr = network.parse().ok()?;
            Some(std::net::Ipv4Addr::from(u32::from(network).checked_add(1)?))
        })
    };
    gateway.or_else(first_of_subnet).ok_or_else(|| {
        LaunchError::Docker("Docker's bridge network has no IPv4 gateway for the containers to reach posim by".into())
    })
}

/// A registry image (`postgres:16`) is pulled when the engine can reach a
/// registry; posim's own images never are (they exist nowhere but here).
async fn pull(docker: &Docker, image: &str) -> Result<(), String> {
    use futures_util::StreamExt;
    if image == images::STACK_IMAGE || image == images::POSTGRES_IMAGE {
        return Err("posim's images are built, not pulled".into());
    }
    let options = CreateImageOptions { from_image: Some(image.to_string()), ..Default::default() };
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(step) = progress.next().await {
        step.map_err(|error| format!("pulling it failed: {error}"))?;
    }
    Ok(())
}

fn start_error(image: &str, error: testcontainers::TestcontainersError) -> LaunchError {
    LaunchError::Container(format!("cannot start a container of {image}: {error}"))
}

fn not_running(replica: usize) -> LaunchError {
    LaunchError::Container(format!("replica {replica} has no running container"))
}

/// `name:tag`, where a registry host may carry a port (`host:5000/name:tag`).
fn split_image(image: &str) -> (String, String) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(colon) => (image[..slash + colon].to_string(), image[slash + colon + 1..].to_string()),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// A live connection to the database published on loopback `port`.
async fn connect(port: u16, password: &str) -> Option<tokio_postgres::Client> {
    let url = format!("host=127.0.0.1 port={port} user=posim password={password} dbname=postgres connect_timeout=2");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await.ok()?;
    Some(client)
}

/// Publishes the container's `port` on the host's loopback interface only
/// (testcontainers publishes every exposed port on every interface).
fn publish_on_loopback(config: &mut HostConfig, port: u16) {
    let binding = PortBinding { host_ip: Some("127.0.0.1".to_string()), host_port: Some(String::new()) };
    config.publish_all_ports = Some(false);
    config.port_bindings = Some(HashMap::from([(format!("{port}/tcp"), Some(vec![binding]))]));
}

async fn container_output(container: &ContainerAsync<GenericImage>) -> String {
    let stdout = container.stdout_to_vec().await.unwrap_or_default();
    let stderr = container.stderr_to_vec().await.unwrap_or_default();
    format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr))
}

/// Removes the containers labelled with run `id` and its network (`dry_run`:
/// only lists them); says what it removed.
pub async fn remove_run(docker: &Docker, id: &str, dry_run: bool) -> Result<Vec<String>, String> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{RUN_LABEL}={id}")])]);
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let listed = docker.list_containers(Some(options)).await.map_err(|error| format!("listing containers: {error}"))?;
    let mut removed = Vec::new();
    let verb = if dry_run { "would remove" } else { "removed" };
    for container in listed {
        let Some(container_id) = container.id else { continue };
        let name = container.names.and_then(|names| names.first().cloned()).unwrap_or_else(|| container_id.clone());
        if !dry_run {
            let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
            let gone = docker.remove_container(&container_id, Some(options)).await;
            gone.map_err(|error| format!("removing container {name}: {error}"))?;
        }
        removed.push(format!("{verb} container {}", name.trim_start_matches('/')));
    }
    let filters = HashMap::from([("name".to_string(), vec![id.to_string()])]);
    let networks = docker.list_networks(Some(ListNetworksOptions { filters: Some(filters) })).await;
    let networks = networks.map_err(|error| format!("listing networks: {error}"))?;
    // The name filter matches substrings: only the run's own network is removed.
    for name in networks.into_iter().filter_map(|network| network.name).filter(|name| name == id) {
        if !dry_run {
            docker.remove_network(&name).await.map_err(|error| format!("removing network {name}: {error}"))?;
        }
        removed.push(format!("{verb} network {name}"));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::split_image;

    #[test]
    fn image_names_split_into_repository_and_tag() {
        let split = |image| {
            let (repository, tag) = split_image(image);
            format!("{repository} {tag}")
        };
        assert_eq!(split("posim-stack:local"), "posim-stack local");
        assert_eq!(split("postgres"), "postgres latest");
        assert_eq!(split("registry.local:5000/team/stack:1.2"), "registry.local:5000/team/stack 1.2");
        assert_eq!(split("registry.local:5000/team/stack"), "registry.local:5000/team/stack latest");
    }
}
