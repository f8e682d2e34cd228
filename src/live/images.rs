//! Container images for the live engine, built on a machine that has a Docker
//! engine but no registry: nothing can be pulled, so both images are
//! `FROM scratch` and carry the host's own binaries with the shared libraries
//! `ldd` reports for them.
//!
//! - the reference stack: the running posim executable, served by `posim stack serve`;
//! - PostgreSQL: the host's server binary, its lib and share trees, and a data
//!   directory initialised on the host at build time, so the container starts
//!   in about a second.
//!
//! Each image is a `rootfs.tar` written here with owners and modes set in the
//! tar headers (no host chown), sent with a small Dockerfile to the classic
//! builder (the engine may predate BuildKit sessions).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use testcontainers::bollard::models::ImageInspect;
use testcontainers::bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion, RemoveImageOptions};
use testcontainers::bollard::{self, Docker};

use super::postgres::find_binaries;

/// The reference stack's image.
pub const STACK_IMAGE: &str = "posim-stack:local";
/// The PostgreSQL image.
pub const POSTGRES_IMAGE: &str = "posim-postgres:15";
/// The command that builds the images, for error messages.
pub const BUILD_COMMAND: &str = "posim images build";

/// The label that ties the stack image to the bytes of the binary inside it.
const BINARY_LABEL: &str = "posim.binary";
/// The label that names the PostgreSQL major version and posim's settings inside the image.
const POSTGRES_LABEL: &str = "posim.postgres";
const STACK_UID: u32 = 10001;
const POSTGRES_UID: u32 = 999;
const DATA_DIR: &str = "/var/lib/postgresql/data";
/// The dynamic loader every glibc binary names; shipped even if `ldd` omitted it.
const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// A bound on directory nesting when copying host trees (a symlink loop stops here).
const TREE_DEPTH_MAX: usize = 16;
/// A fixed timestamp: identical inputs give an identical rootfs.tar, so the builder's cache can hit.
const MTIME: u64 = 946_684_800;

/// Appended to the host-initialised postgresql.conf: reachable from other
/// containers, UTC, and durable like a production server — a database
/// restart must not lose a commit the stack was told of (posim would blame
/// the stack for it, D6), and capacity figures must not be inflated.
const SERVER_SETTINGS: &str = "
# posim: a throwaway server in a container
listen_addresses = '*'
unix_socket_directories = '/tmp'
max_connections = 300
shared_buffers = 32MB
timezone = 'UTC'
log_timezone = 'UTC'
";

/// Appended to pg_hba.conf: clients on the container network, with a password.
const HBA_RULES: &str = "
# posim: any client on the container network, by password
host all all 0.0.0.0/0 scram-sha-256
host all all ::/0 scram-sha-256
";

/// The password the image is built with. It is no secret (it is in the
/// image): a run replaces it with its own before any replica starts
/// (`Containers::wait_for_database`), and the port is on loopback only.
pub const BOOTSTRAP_PASSWORD: &str = "posim-image-bootstrap";

/// Why an image could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "cannot reach Docker (tried {tried}): {detail}; start the Docker engine, or set DOCKER_HOST to where it listens"
    )]
    DockerUnreachable { tried: String, detail: String },
    #[error("{what} is missing on this machine: {install}")]
    MissingBinary { what: String, install: String },
    #[error("ldd {}: {detail}", path.display())]
    Ldd { path: PathBuf, detail: String },
    #[error("initdb (to prepare the image's data directory) failed: {detail}")]
    Initdb { detail: String },
    #[error("building image {image} failed: {message}")]
    Build { image: String, message: String },
    #[error("Docker: {action}: {source}")]
    Docker {
        action: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Io { context, source }
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct Built {
    pub image: String,
    /// The image was already there and current: nothing was built.
    pub up_to_date: bool,
    /// The image's size as the engine reports it.
    pub bytes: u64,
    pub seconds: f64,
}

/// A Docker client that answered a ping within 5 s.
pub async fn docker() -> Result<Docker, ImageError> {
    let tried = match std::env::var("DOCKER_HOST") {
        Ok(host) => format!("DOCKER_HOST={host}"),
        Err(_) => "the default socket unix:///var/run/docker.sock, as DOCKER_HOST is unset".to_string(),
    };
    let unreachable = |detail: String| ImageError::DockerUnreachable { tried: tried.clone(), detail };
    let client =
        testcontainers::core::client::docker_client_instance().await.map_err(|e| unreachable(e.to_string()))?;
    match tokio::time::timeout(PING_TIMEOUT, client.ping()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(error)) => Err(unreachable(error.to_string())),
        Err(_) => Err(unreachable(format!("no answer to a ping within {} s", PING_TIMEOUT.as_secs()))),
    }
}

/// Whether an image of that name (or id) is in the engine.
pub async fn image_exists(docker: &Docker, name: &str) -> Result<bool, ImageError> {
    Ok(inspect(docker, name).await?.is_some())
}

/// Builds the reference stack's image from the running posim executable;
/// skipped when the image already holds these exact bytes, unless `force`.
pub async fn build_stack_image(docker: &Docker, name: &str, force: bool) -> Result<Built, ImageError> {
    let started = Instant::now();
    let exe = std::env::current_exe().map_err(io_error("finding the running posim executable"))?;
    let read_from = exe.clone();
    let binary = blocking(move || read(&read_from)).await?;
    let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&binary));
    let previous = inspect(docker, name).await?;
    if !force && label(previous.as_ref(), BINARY_LABEL) == Some(hash.as_str()) {
        return Ok(report(name, previous.as_ref(), true, started));
    }
    let context = blocking(move || stack_context(&exe, &binary, hash)).await?;
    build(docker, name, context, previous).await?;
    Ok(report(name, inspect(docker, name).await?.as_ref(), false, started))
}

/// Builds the PostgreSQL image from the host's server; skipped when an image
/// of that name already holds the same major version and settings, unless `force`.
pub async fn build_postgres_image(docker: &Docker, name: &str, force: bool) -> Result<Built, ImageError> {
    let started = Instant::now();
    let layout = PostgresLayout::find()?;
    let previous = inspect(docker, name).await?;
    if !force && label(previous.as_ref(), POSTGRES_LABEL) == Some(postgres_identity(&layout).as_str()) {
        return Ok(report(name, previous.as_ref(), true, started));
    }
    let context = blocking(move || postgres_context(&layout)).await?;
    build(docker, name, context, previous).await?;
    Ok(report(name, inspect(docker, name).await?.as_ref(), false, started))
}

/// What makes a PostgreSQL image the same: the server's major version and
/// the settings posim writes into it (a changed setting rebuilds it).
fn postgres_identity(layout: &PostgresLayout) -> String {
    let settings = xxhash_rust::xxh3::xxh3_64(format!("{SERVER_SETTINGS}{HBA_RULES}").as_bytes());
    format!("{}-{settings:016x}", layout.version)
}

/// Runs file-system and subprocess work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| io_error("a background task")(std::io::Error::other(e)))?
}

async fn inspect(docker: &Docker, name: &str) -> Result<Option<ImageInspect>, ImageError> {
    match docker.inspect_image(name).await {
        Ok(image) => Ok(Some(image)),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(source) => Err(ImageError::Docker { action: format!("inspecting image {name}"), source }),
    }
}

fn label<'a>(image: Option<&'a ImageInspect>, key: &str) -> Option<&'a str> {
    let labels = image?.config.as_ref()?.labels.as_ref()?;
    labels.get(key).map(String::as_str)
}

fn report(name: &str, image: Option<&ImageInspect>, up_to_date: bool, started: Instant) -> Built {
    let bytes = image.and_then(|image| image.size).and_then(|size| u64::try_from(size).ok()).unwrap_or(0);
    Built { image: name.to_string(), up_to_date, bytes, seconds: started.elapsed().as_secs_f64() }
}

/// Sends the context to the classic builder and fails on the first error in its progress stream.
async fn build(
    docker: &Docker,
    name: &str,
    context: Vec<u8>,
    previous: Option<ImageInspect>,
) -> Result<(), ImageError> {
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(name)
        .rm(true)
        .forcerm(true)
        .version(BuilderVersion::BuilderV1)
        .build();
    let failed = |message: String| ImageError::Build { image: name.to_string(), message };
    let mut progress = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = progress.next().await {
        let info = item.map_err(|error| match error {
            bollard::errors::Error::DockerStreamError { error } => failed(error),
            other => failed(other.to_string()),
        })?;
        if let Some(detail) = info.error_detail {
            return Err(failed(detail.message.unwrap_or_else(|| "the engine reported an error".to_string())));
        }
    }
    remove_replaced(docker, name, previous.and_then(|image| image.id)).await;
    Ok(())
}

/// A rebuild moves the tag, and the old image would linger untagged. Best
/// effort: the old image may still back a container, and then it stays.
async fn remove_replaced(docker: &Docker, name: &str, previous_id: Option<String>) {
    let Some(previous_id) = previous_id else { return };
    let current_id = inspect(docker, name).await.ok().flatten().and_then(|image| image.id);
    if current_id.as_deref() != Some(previous_id.as_str()) {
        let _ = docker.remove_image(&previous_id, None::<RemoveImageOptions>, None).await;
    }
}

fn stack_context(exe: &Path, binary: &[u8], hash: String) -> Result<Vec<u8>, ImageError> {
    let mut rootfs = Rootfs::new();
    rootfs.file(Path::new("/posim"), binary, 0o755, 0)?;
    rootfs.libraries(&libraries(exe)?)?;
    rootfs.accounts("posim", STACK_UID)?;
    rootfs.dir(Path::new("/tmp"), 0o1777, 0)?;
    let spec = ImageSpec {
        user: STACK_UID,
        // In its container the stack listens on every interface of the
        // container, so that its published port reaches it.
        env: vec![("PORT", "8080".to_string()), ("BIND_ADDRESS", "0.0.0.0".to_string())],
        expose: 8080,
        labels: vec![(BINARY_LABEL, hash)],
        stop_signal: None,
        entrypoint: vec!["/posim".to_string()],
        cmd: vec!["stack".to_string(), "serve".to_string()],
    };
    build_context(&dockerfile(&spec), rootfs.finish()?)
}

/// Where the host's PostgreSQL lives (Debian's layout: /usr/lib/postgresql/<version>/{bin,lib}).
struct PostgresLayout {
    bin: PathBuf,
    lib: PathBuf,
    share: PathBuf,
    version: String,
}

impl PostgresLayout {
    fn find() -> Result<PostgresLayout, ImageError> {
        let missing = |what: &str| ImageError::MissingBinary {
            what: what.to_string(),
            install: "install PostgreSQL's server (Debian: apt-get install postgresql), which puts it under \
                      /usr/lib/postgresql/<version>/bin"
                .to_string(),
        };
        let found = find_binaries().ok_or_else(|| missing("PostgreSQL's server (initdb, postgres)"))?;
        // PATH may hold symlinks (/usr/local/bin/initdb): the version folder is where they point.
        let initdb =
            std::fs::canonicalize(found.join("initdb")).map_err(io_error(format!("resolving {}", found.display())))?;
        let bin = initdb.parent().ok_or_else(|| missing("PostgreSQL's bin folder"))?.to_path_buf();
        let root = bin.parent().ok_or_else(|| missing("PostgreSQL's installation folder"))?;
        let version = root.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_string();
        let layout = PostgresLayout {
            lib: root.join("lib"),
            share: Path::new("/usr/share/postgresql").join(&version),
            bin,
            version,
        };
        for needed in [layout.bin.join("postgres"), layout.lib.join("plpgsql.so"), layout.share.join("postgres.bki")] {
            if !needed.is_file() {
                return Err(missing(&needed.display().to_string()));
            }
        }
        Ok(layout)
    }
}

fn postgres_context(layout: &PostgresLayout) -> Result<Vec<u8>, ImageError> {
    let folder = tempfile::Builder::new().prefix("posim-image-pg-").tempdir().map_err(io_error("creating a folder"))?;
    let data = initdb(layout, folder.path())?;
    let postgres = layout.bin.join("postgres");
    let mut rootfs = Rootfs::new();
    rootfs.host_file(&postgres, &postgres, 0)?;
    rootfs.host_tree(&layout.lib, &layout.lib, 0, None)?;
    rootfs.host_tree(&layout.share, &layout.share, 0, None)?;
    for zone in ["/usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/Etc/UTC"].map(Path::new) {
        if zone.is_file() {
            rootfs.host_file(zone, zone, 0)?;
        }
    }
    // The modules loaded by default; other extensions bring their own needs (keep it simple).
    let mut libs = libraries(&postgres)?;
    libs.extend(libraries(&layout.lib.join("plpgsql.so"))?);
    rootfs.libraries(&libs)?;
    rootfs.accounts("postgres", POSTGRES_UID)?;
    rootfs.dir(Path::new("/tmp"), 0o1777, 0)?;
    rootfs.host_tree(&data, Path::new(DATA_DIR), POSTGRES_UID, Some(0o700))?;
    let spec = ImageSpec {
        user: POSTGRES_UID,
        env: Vec::new(),
        expose: 5432,
        labels: vec![(POSTGRES_LABEL, postgres_identity(layout))],
        // A fast shutdown: the default SIGTERM waits for every client to leave.
        stop_signal: Some("SIGINT"),
        entrypoint: vec![postgres.display().to_string(), "-D".to_string(), DATA_DIR.to_string()],
        cmd: Vec::new(),
    };
    build_context(&dockerfile(&spec), rootfs.finish()?)
}

/// Initialises a data directory in `folder` with the host's initdb and
/// configures it for a container; returns its path.
fn initdb(layout: &PostgresLayout, folder: &Path) -> Result<PathBuf, ImageError> {
    let data = folder.join("data");
    let mut command = initdb_command(&layout.bin.join("initdb"), folder)?;
    let password_file = folder.join("bootstrap-password");
    std::fs::write(&password_file, BOOTSTRAP_PASSWORD).map_err(io_error("writing the bootstrap password"))?;
    // --no-sync: the files are read into the image right away; durability on the host is moot.
    command.arg("-D").arg(&data).args(["-U", "posim", "--auth-host=scram-sha-256", "--auth-local=trust"]);
    command.arg("--pwfile").arg(&password_file).args(["-E", "UTF8", "--locale=C", "--no-sync"]);
    let output = command.output().map_err(|e| ImageError::Initdb { detail: e.to_string() });
    let _ = std::fs::remove_file(&password_file);
    let output = output?;
    if !output.status.success() {
        let detail = format!("{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
        return Err(ImageError::Initdb { detail });
    }
    append(&data.join("postgresql.conf"), SERVER_SETTINGS)?;
    append(&data.join("pg_hba.conf"), HBA_RULES)?;
    Ok(data)
}

/// initdb refuses to run as root: as root, it runs as the `postgres` user in a
/// folder handed to that user (as for `ThrowawayPostgres`).
fn initdb_command(initdb: &Path, folder: &Path) -> Result<Command, ImageError> {
    super::postgres::hand_over(folder).map_err(|error| ImageError::Initdb { detail: error.to_string() })?;
    Ok(super::postgres::postgres_command(initdb))
}

fn append(file: &Path, text: &str) -> Result<(), ImageError> {
    use std::io::Write;
    let context = || format!("appending to {}", file.display());
    let mut opened = std::fs::OpenOptions::new().append(true).open(file).map_err(io_error(context()))?;
    opened.write_all(text.as_bytes()).map_err(io_error(context()))
}

/// The shared libraries `ldd` reports for `binary`, the loader included.
fn libraries(binary: &Path) -> Result<BTreeSet<PathBuf>, ImageError> {
    let failed = |detail: String| ImageError::Ldd { path: binary.to_path_buf(), detail };
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| failed(format!("cannot run ldd ({e}); install it (Debian: apt-get install libc-bin)")))?;
    if !output.status.success() {
        return Err(failed(String::from_utf8_lossy(&output.stderr).trim().to_string()));
    }
    let mut libraries = parse_ldd(&String::from_utf8_lossy(&output.stdout)).map_err(failed)?;
    libraries.insert(PathBuf::from(LOADER));
    Ok(libraries)
}

/// The paths in `ldd`'s output; an error names the libraries it did not find.
/// Lines without a path (the vDSO) are skipped.
fn parse_ldd(text: &str) -> Result<BTreeSet<PathBuf>, String> {
    let mut libraries = BTreeSet::new();
    let mut missing = Vec::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let (name, target) = line.split_once("=>").map_or((line, line), |(name, target)| (name.trim(), target.trim()));
        if target.starts_with("not found") {
            missing.push(name);
            continue;
        }
        let path = target.split_once(" (").map_or(target, |(path, _address)| path).trim();
        if path.starts_with('/') {
            libraries.insert(PathBuf::from(path));
        }
    }
    if missing.is_empty() { Ok(libraries) } else { Err(format!("libraries not found: {}", missing.join(", "))) }
}

/// The image's instructions after `FROM scratch` and `ADD rootfs.tar /`.
struct ImageSpec {
    user: u32,
    env: Vec<(&'static str, String)>,
    expose: u16,
    labels: Vec<(&'static str, String)>,
    stop_signal: Option<&'static str>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

fn dockerfile(spec: &ImageSpec) -> String {
    let mut lines = vec!["FROM scratch".to_string(), "ADD rootfs.tar /".to_string(), format!("USER {}", spec.user)];
    lines.extend(spec.env.iter().map(|(key, value)| format!("ENV {key}={}", quoted(value))));
    lines.push(format!("EXPOSE {}", spec.expose));
    lines.extend(spec.labels.iter().map(|(key, value)| format!("LABEL {key}={}", quoted(value))));
    lines.extend(spec.stop_signal.map(|signal| format!("STOPSIGNAL {signal}")));
    lines.push(format!("ENTRYPOINT {}", json_array(&spec.entrypoint)));
    if !spec.cmd.is_empty() {
        lines.push(format!("CMD {}", json_array(&spec.cmd)));
    }
    lines.join("\n") + "\n"
}

/// A double-quoted string, escaped as JSON (which the Dockerfile parser accepts).
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

fn json_array(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|item| quoted(item)).collect::<Vec<_>>().join(","))
}

/// The build context: the Dockerfile and the root file system it adds.
fn build_context(dockerfile: &str, rootfs: Vec<u8>) -> Result<Vec<u8>, ImageError> {
    let mut context = Rootfs::new();
    context.file(Path::new("Dockerfile"), dockerfile.as_bytes(), 0o644, 0)?;
    context.file(Path::new("rootfs.tar"), &rootfs, 0o644, 0)?;
    context.finish()
}

/// A tar assembled in memory; every entry's owner and mode are set here,
/// and missing parent directories are added as root's, mode 0755.
struct Rootfs {
    tar: tar::Builder<Vec<u8>>,
    dirs: BTreeSet<PathBuf>,
}

impl Rootfs {
    fn new() -> Rootfs {
        Rootfs { tar: tar::Builder::new(Vec::new()), dirs: BTreeSet::new() }
    }

    fn finish(self) -> Result<Vec<u8>, ImageError> {
        self.tar.into_inner().map_err(io_error("finishing a tar"))
    }

    fn file(&mut self, at: &Path, data: &[u8], mode: u32, owner: u32) -> Result<(), ImageError> {
        let at = relative(at);
        self.parents(&at)?;
        self.entry(&at, tar::EntryType::Regular, data, mode, owner)
    }

    fn dir(&mut self, at: &Path, mode: u32, owner: u32) -> Result<(), ImageError> {
        let at = relative(at);
        self.parents(&at)?;
        if self.dirs.insert(at.clone()) {
            self.entry(&at, tar::EntryType::Directory, &[], mode, owner)?;
        }
        Ok(())
    }

    fn parents(&mut self, at: &Path) -> Result<(), ImageError> {
        let mut missing: Vec<PathBuf> = at
            .ancestors()
            .skip(1)
            .filter(|dir| !dir.as_os_str().is_empty() && !self.dirs.contains(*dir))
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        for dir in missing {
            self.entry(&dir, tar::EntryType::Directory, &[], 0o755, 0)?;
            self.dirs.insert(dir);
        }
        Ok(())
    }

    fn entry(&mut self, at: &Path, kind: tar::EntryType, data: &[u8], mode: u32, owner: u32) -> Result<(), ImageError> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(owner.into());
        header.set_gid(owner.into());
        header.set_mtime(MTIME);
        self.tar.append_data(&mut header, at, data).map_err(io_error(format!("adding {} to a tar", at.display())))
    }

    /// A host file's content (symlinks followed) and permission bits, at `at`.
    fn host_file(&mut self, host: &Path, at: &Path, owner: u32) -> Result<(), ImageError> {
        let data = read(host)?;
        let mode =
            std::fs::metadata(host).map_err(io_error(format!("reading {}", host.display())))?.permissions().mode();
        self.file(at, &data, mode & 0o7777, owner)
    }

    /// A host directory and everything under it, at `at`; `mode` overrides the top directory's.
    fn host_tree(&mut self, host: &Path, at: &Path, owner: u32, mode: Option<u32>) -> Result<(), ImageError> {
        self.host_tree_within(host, at, owner, mode, 0)
    }

    fn host_tree_within(
        &mut self,
        host: &Path,
        at: &Path,
        owner: u32,
        mode: Option<u32>,
        depth: usize,
    ) -> Result<(), ImageError> {
        let reading = || format!("reading {}", host.display());
        if depth > TREE_DEPTH_MAX {
            return Err(io_error(reading())(std::io::Error::other("folders nested too deep (a symlink loop?)")));
        }
        let host_mode = std::fs::metadata(host).map_err(io_error(reading()))?.permissions().mode() & 0o7777;
        self.dir(at, mode.unwrap_or(host_mode), owner)?;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(host)
            .map_err(io_error(reading()))?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<_, _>>()
            .map_err(io_error(reading()))?;
        // Sorted, so the same tree gives the same tar.
        entries.sort();
        for entry in entries {
            let Some(name) = entry.file_name() else { continue };
            let metadata = std::fs::metadata(&entry).map_err(io_error(format!("reading {}", entry.display())))?;
            if metadata.is_dir() {
                self.host_tree_within(&entry, &at.join(name), owner, None, depth + 1)?;
            } else if metadata.is_file() {
                self.host_file(&entry, &at.join(name), owner)?;
            }
        }
        Ok(())
    }

    /// The shared libraries' real contents (not their symlinks), under the paths `ldd` printed.
    fn libraries(&mut self, libraries: &BTreeSet<PathBuf>) -> Result<(), ImageError> {
        libraries.iter().try_for_each(|library| self.host_file(library, library, 0))
    }

    /// /etc/passwd and /etc/group with root and one service account; and an
    /// nsswitch.conf, so that glibc looks up names in those files and hosts in DNS.
    fn accounts(&mut self, user: &str, id: u32) -> Result<(), ImageError> {
        let passwd = format!("root:x:0:0:root:/root:/sbin/nologin\n{user}:x:{id}:{id}:{user}:/tmp:/sbin/nologin\n");
        let group = format!("root:x:0:\n{user}:x:{id}:\n");
        let nsswitch = "passwd: files\ngroup: files\nhosts: files dns\n";
        let files = [("/etc/passwd", passwd.as_str()), ("/etc/group", &group), ("/etc/nsswitch.conf", nsswitch)];
        files.iter().try_for_each(|(at, text)| self.file(Path::new(at), text.as_bytes(), 0o644, 0))
    }
}

fn read(file: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(file).map_err(io_error(format!("reading {}", file.display())))
}

/// A path inside the image, relative to its root as tar entries are.
fn relative(at: &Path) -> PathBuf {
    at.strip_prefix("/").unwrap_or(at).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LDD_OUTPUT: &str = "\tlinux-vdso.so.1 (0x00007ffd1a5f2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f729ccfa000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f729c13e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f729cd2d000)
";

    #[test]
    fn ldd_output_gives_the_paths_and_skips_the_vdso() {
        let paths: Vec<PathBuf> = parse_ldd(LDD_OUTPUT).into_iter().flatten().collect();
        let expected = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libgcc_s.so.1", LOADER];
        assert_eq!(paths, expected.map(PathBuf::from));
    }

    #[test]
    fn a_library_ldd_cannot_find_is_an_error_that_names_it() {
        let output = format!("{LDD_OUTPUT}\tlibpq.so.5 => not found\n");
        assert_eq!(parse_ldd(&output), Err("libraries not found: libpq.so.5".to_string()));
    }

    #[test]
    fn a_static_binary_has_no_libraries() {
        assert_eq!(parse_ldd("\tstatically linked\n"), Ok(BTreeSet::new()));
    }

    #[test]
    fn the_dockerfile_lists_the_instructions_in_order() {
        let spec = ImageSpec {
            user: 999,
            env: vec![("PORT", "8080".to_string())],
            expose: 5432,
            labels: vec![("posim.postgres", "15".to_string())],
            stop_signal: Some("SIGINT"),
            entrypoint: vec!["/bin/postgres".to_string(), "-D".to_string(), "/data".to_string()],
            cmd: Vec::new(),
        };
        let expected = "FROM scratch\nADD rootfs.tar /\nUSER 999\nENV PORT=\"8080\"\nEXPOSE 5432\n\
                        LABEL posim.postgres=\"15\"\nSTOPSIGNAL SIGINT\nENTRYPOINT [\"/bin/postgres\",\"-D\",\"/data\"]\n";
        assert_eq!(dockerfile(&spec), expected);
    }

    #[test]
    fn the_rootfs_sets_owners_and_modes_and_adds_parents_once() -> Result<(), Box<dyn std::error::Error>> {
        let mut rootfs = Rootfs::new();
        rootfs.dir(Path::new("/var/lib/postgresql/data"), 0o700, 999)?;
        rootfs.file(Path::new("/var/lib/postgresql/data/PG_VERSION"), b"15\n", 0o600, 999)?;
        rootfs.dir(Path::new("/tmp"), 0o1777, 0)?;
        let bytes = rootfs.finish()?;
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entries = Vec::new();
        for entry in archive.entries()? {
            let header = entry?.header().clone();
            entries.push((header.path()?.display().to_string(), header.mode()?, header.uid()?));
        }
        let expected = [
            ("var", 0o755, 0),
            ("var/lib", 0o755, 0),
            ("var/lib/postgresql", 0o755, 0),
            ("var/lib/postgresql/data", 0o700, 999),
            ("var/lib/postgresql/data/PG_VERSION", 0o600, 999),
            ("tmp", 0o1777, 0),
        ];
        assert_eq!(entries, expected.map(|(path, mode, uid)| (path.to_string(), mode, uid)));
        Ok(())
    }
}
