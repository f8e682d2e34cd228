//! A throwaway PostgreSQL: `initdb` and `pg_ctl` from the machine's own
//! binaries, in a temporary folder, on a free loopback port, stopped and
//! removed when dropped. Over TCP it asks for a password made for this run
//! (scram-sha-256); only its Unix socket, in a folder nobody else may enter,
//! trusts. PostgreSQL refuses to run as root, so as root the
//! server runs as the `postgres` user. It keeps production durability
//! (fsync and synchronous commit on): a database restart must not lose a
//! commit the stack was told of, or posim would blame the stack (D6).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why a throwaway database could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "PostgreSQL's server binaries (initdb, pg_ctl) are not on PATH nor under /usr/lib/postgresql/*/bin: \
         install them (Debian: apt-get install postgresql)"
    )]
    NotInstalled,
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
}

fn step(step: &'static str, detail: impl ToString) -> PostgresError {
    PostgresError::Step { step, detail: detail.to_string() }
}

/// A running throwaway server; stopped and removed on drop.
pub struct ThrowawayPostgres {
    bin: PathBuf,
    folder: tempfile::TempDir,
    port: u16,
    /// The `posim` superuser's password, new for every server.
    password: String,
}

/// Where `initdb` and `pg_ctl` live.
pub fn find_binaries() -> Option<PathBuf> {
    let on_path =
        std::env::var_os("PATH").into_iter().flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>());
    let debian =
        std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten().map(|entry| entry.path().join("bin"));
    let mut candidates: Vec<PathBuf> = on_path.chain(debian).collect();
    candidates.retain(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    candidates.into_iter().next()
}

/// The user PostgreSQL's programs run as: they refuse root, so as root,
/// `postgres` (asked once: it does not change while posim runs).
fn run_as() -> Option<&'static str> {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let root = *ROOT.get_or_init(|| {
        Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
    });
    root.then_some("postgres")
}

/// Hands `folder` to the user PostgreSQL runs as (nothing to do unless root).
pub(super) fn hand_over(folder: &Path) -> Result<(), PostgresError> {
    let Some(user) = run_as() else { return Ok(()) };
    let status = Command::new("chown").args(["-R", &format!("{user}:")]).arg(folder).status();
    if !status.is_ok_and(|s| s.success()) {
        return Err(step("chown to the postgres user", "chown failed (is there a `postgres` user?)"));
    }
    Ok(())
}

/// A command for one of PostgreSQL's programs, as the user it must run as.
pub(super) fn postgres_command(program: &Path) -> Command {
    match run_as() {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

impl ThrowawayPostgres {
    /// Initialises and starts a server; waits until it accepts connections.
    pub fn start() -> Result<ThrowawayPostgres, PostgresError> {
        let folder =
            tempfile::Builder::new().prefix("posim-pg-").tempdir().map_err(|e| step("creating a folder", e))?;
        ThrowawayPostgres::start_in(folder)
    }

    /// As [`ThrowawayPostgres::start`], in `folder` (its data in [`data_of`] it).
    pub fn start_in(folder: tempfile::TempDir) -> Result<ThrowawayPostgres, PostgresError> {
        let bin = find_binaries().ok_or(PostgresError::NotInstalled)?;
        hand_over(folder.path())?;
        let port = super::free_port().map_err(|e| step("finding a free port", e))?;
        let password = uuid::Uuid::new_v4().simple().to_string();
        let server = ThrowawayPostgres { bin, port, folder, password };
        let data = server.data();
        let password_file = server.folder.path().join("password");
        std::fs::write(&password_file, &server.password).map_err(|e| step("writing the password file", e))?;
        let initdb = server.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "posim",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--pwfile",
                path(&password_file),
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let _ = std::fs::remove_file(&password_file);
        let initdb = initdb?;
        if !initdb.status.success() {
            return Err(step("initdb", String::from_utf8_lossy(&initdb.stderr)));
        }
        server.start_server()?;
        Ok(server)
    }

    /// Starts the initialised server (also after [`ThrowawayPostgres::stop_server`]).
    pub fn start_server(&self) -> Result<(), PostgresError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            self.port,
            path(self.folder.path())
        );
        let log = self.folder.path().join("postgres.log");
        let data = self.data();
        let started =
            self.run("pg_ctl", &["-D", path(&data), "-l", path(&log), "-o", &options, "-w", "-t", "60", "start"])?;
        if !started.status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(step("pg_ctl start", format!("{}{log}", String::from_utf8_lossy(&started.stderr))));
        }
        Ok(())
    }

    /// A fast shutdown, as a restart by an operator would do.
    pub fn stop_server(&self) -> Result<(), PostgresError> {
        let data = self.data();
        let stopped = self.run("pg_ctl", &["-D", path(&data), "-m", "fast", "-w", "stop"])?;
        if !stopped.status.success() {
            return Err(step("pg_ctl stop", String::from_utf8_lossy(&stopped.stderr)));
        }
        Ok(())
    }

    fn data(&self) -> PathBuf {
        data_of(self.folder.path())
    }

    fn run(&self, program: &'static str, args: &[&str]) -> Result<Output, PostgresError> {
        postgres_command(&self.bin.join(program))
            .args(args)
            .current_dir(self.folder.path())
            .output()
            .map_err(|e| step(program, e))
    }

    /// A connection URL for the `postgres` database as the `posim` superuser
    /// (it holds the run's password: never print it unredacted).
    pub fn url(&self) -> String {
        format!("postgres://posim:{}@127.0.0.1:{}/postgres", self.password, self.port)
    }

    /// The same server, as someone without the password would reach it.
    pub fn url_without_password(&self) -> String {
        format!("postgres://posim@127.0.0.1:{}/postgres", self.port)
    }
}

/// The data folder of a server started in `folder`.
pub fn data_of(folder: &Path) -> PathBuf {
    folder.join("data")
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        // Immediate: nothing in a throwaway database is worth a checkpoint.
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", path(&data), "-m", "immediate", "-w", "stop"]);
    }
}
