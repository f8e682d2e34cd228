//! The registry of live runs: one folder per run under a runs root
//! (`POSIM_RUNS_DIR`, else `$XDG_RUNTIME_DIR/posim/runs`, else a per-user
//! folder in the temp dir) holding `run.json`, what the run started as it
//! starts it — its replicas' process groups, its throwaway PostgreSQL, its
//! folders, whether it used Docker — rewritten atomically on every change.
//! A run whose owner is gone (its PID no longer runs with the start time it
//! had) is dead, and what it left can be removed (`posim clean`) by run id,
//! never by PID alone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::group;

/// Names the runs root instead of the default.
pub const RUNS_DIR_VAR: &str = "POSIM_RUNS_DIR";
const RECORD: &str = "run.json";

/// A process that started at a known time (so that a reused PID is not it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub pid: u32,
    pub start_time: u64,
}

impl Started {
    pub fn of(pid: u32) -> Option<Started> {
        group::stat(pid).map(|stat| Started { pid, start_time: stat.start_time })
    }

    pub fn is_running(&self) -> bool {
        group::is_running(self.pid, self.start_time)
    }
}

/// A throwaway PostgreSQL, as `pg_ctl` stops it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresRecord {
    pub bin: PathBuf,
    pub data: PathBuf,
}

/// What one run started (see the module's doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub owner: Started,
    /// Replicas' process groups, by their leader as it started.
    #[serde(default)]
    pub groups: Vec<Started>,
    #[serde(default)]
    pub postgres: Option<PostgresRecord>,
    /// Folders to remove; each name holds the run id.
    #[serde(default)]
    pub folders: Vec<PathBuf>,
    /// Containers and a network labelled with the run id may exist.
    #[serde(default)]
    pub docker: bool,
}

/// This process's registered run; its record is removed when it is dropped
/// (after everything it started was stopped).
#[derive(Debug)]
pub struct Run {
    dir: PathBuf,
    record: Mutex<RunRecord>,
    /// Set when the run is being torn down (Ctrl-C): nothing new may start.
    ending: AtomicBool,
}

/// The runs root, as configured.
pub fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os(RUNS_DIR_VAR).filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        return Path::new(&dir).join("posim").join("runs");
    }
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("posim-runs-{uid}"))
}

impl Run {
    /// Registers a new run of this process under the runs root.
    pub fn register() -> std::io::Result<Arc<Run>> {
        let id = format!("posim-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let owner = Started::of(std::process::id()).ok_or_else(|| std::io::Error::other("cannot read /proc/self"))?;
        let dir = root().join(&id);
        let context = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(context)?;
        let record = RunRecord { id, owner, groups: vec![], postgres: None, folders: vec![], docker: false };
        write(&dir, &record).map_err(context)?;
        Ok(Arc::new(Run { dir, record: Mutex::new(record), ending: AtomicBool::new(false) }))
    }

    /// From now on the run only stops things.
    pub fn end(&self) {
        self.ending.store(true, Ordering::SeqCst);
    }

    pub fn is_ending(&self) -> bool {
        self.ending.load(Ordering::SeqCst)
    }

    pub fn id(&self) -> String {
        self.record().id
    }

    pub fn record(&self) -> RunRecord {
        self.record.lock().expect("run record lock").clone()
    }

    /// Changes the record and writes it. A record that cannot be written
    /// does not stop the run; it only leaves `posim clean` less to go on.
    pub fn update(&self, change: impl FnOnce(&mut RunRecord)) {
        let mut record = self.record.lock().expect("run record lock");
        change(&mut record);
        if let Err(error) = write(&self.dir, &record) {
            eprintln!("posim live: cannot update the run record in {}: {error}", self.dir.display());
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Write to a temporary file, then rename: a reader never sees half a record.
fn write(dir: &Path, record: &RunRecord) -> std::io::Result<()> {
    let temporary = dir.join(format!("{RECORD}.tmp"));
    std::fs::write(&temporary, serde_json::to_vec_pretty(record)?)?;
    std::fs::rename(&temporary, dir.join(RECORD))
}

/// A run found under the root whose owner no longer runs.
pub struct DeadRun {
    pub dir: PathBuf,
    pub record: RunRecord,
}

impl DeadRun {
    /// Rewrites what is left of the record (after a partial clean).
    pub fn keep(&self) -> std::io::Result<()> {
        write(&self.dir, &self.record)
    }

    /// Forgets the run: nothing of it is left.
    pub fn forget(&self) -> std::io::Result<()> {
        std::fs::remove_dir_all(&self.dir)
    }
}

/// Every registered run whose owner is gone; records that cannot be read are named in `unreadable`.
pub fn dead_runs(root: &Path, unreadable: &mut Vec<String>) -> Vec<DeadRun> {
    let mut dead = Vec::new();
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let dir = entry.path();
        let file = dir.join(RECORD);
        let Ok(text) = std::fs::read_to_string(&file) else { continue }; // being registered, or not a run
        match serde_json::from_str::<RunRecord>(&text) {
            Ok(record) if !record.owner.is_running() => dead.push(DeadRun { dir, record }),
            Ok(_) => {}
            Err(error) => unreadable.push(format!("{}: {error}", file.display())),
        }
    }
    dead.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    dead
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_alive_while_its_owner_runs_with_the_same_start_time() {
        let me = Started::of(std::process::id()).expect("this process");
        assert!(me.is_running());
        assert!(!Started { start_time: me.start_time + 1, ..me }.is_running(), "a reused PID is another process");
        let root = tempfile::tempdir().expect("a temp dir");
        let mut unreadable = Vec::new();
        let record = |id: &str, owner| RunRecord {
            id: id.into(),
            owner,
            groups: vec![],
            postgres: None,
            folders: vec![],
            docker: false,
        };
        let dead_owner = Started { start_time: me.start_time + 1, ..me };
        for (id, owner) in [("posim-alive", me), ("posim-dead", dead_owner)] {
            let dir = root.path().join(id);
            std::fs::create_dir(&dir).expect("a run folder");
            write(&dir, &record(id, owner)).expect("written");
        }
        std::fs::create_dir(root.path().join("posim-garbled")).expect("a run folder");
        std::fs::write(root.path().join("posim-garbled").join(RECORD), "{").expect("written");
        let dead = dead_runs(root.path(), &mut unreadable);
        assert_eq!(dead.iter().map(|run| run.record.id.as_str()).collect::<Vec<_>>(), ["posim-dead"]);
        assert_eq!(unreadable.len(), 1, "{unreadable:?}");
        dead[0].forget().expect("forgotten");
        assert!(dead_runs(root.path(), &mut unreadable).is_empty());
    }
}
