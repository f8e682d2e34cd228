//! Removing what live runs left: for each registered run whose owner is
//! dead (`posim clean`, and every live run's start), or for this run after
//! Ctrl-C, its replicas' process groups are SIGKILLed, its throwaway
//! PostgreSQL is stopped, its folders removed, its containers and network
//! removed by run label; then its record. A run whose containers could not
//! be reached keeps its record, so that a later clean finishes the job.

use super::postgres::postgres_command;
use super::runs::{self, RunRecord};
use super::{containers, group, images};

/// What a clean removed (or would remove), one line per thing, and what it could not do.
#[derive(Debug, Default)]
pub struct Cleaned {
    pub removed: Vec<String>,
    pub problems: Vec<String>,
    /// Runs whose every trace is gone.
    pub runs: usize,
}

/// Cleans every dead run under the runs root (`dry_run`: only says what it would remove).
pub async fn dead_runs(dry_run: bool) -> Cleaned {
    let mut cleaned = Cleaned::default();
    let root = runs::root();
    let dead = tokio::task::block_in_place(|| runs::dead_runs(&root, &mut cleaned.problems));
    for mut run in dead {
        let complete = clean(&mut run.record, dry_run, &mut cleaned).await;
        if dry_run {
            continue;
        }
        let done = if complete { run.forget() } else { run.keep() };
        match done {
            Ok(()) => cleaned.runs += usize::from(complete),
            Err(error) => cleaned.problems.push(format!("{}: {error}", run.dir.display())),
        }
    }
    cleaned
}

/// Cleans this process's own run (after Ctrl-C), whatever state it was in.
pub async fn own_run(run: &runs::Run) -> Cleaned {
    // The run's tasks live on until the runtime goes: none may start a replica now.
    run.end();
    let mut cleaned = Cleaned::default();
    let mut record = run.record();
    clean(&mut record, false, &mut cleaned).await;
    run.update(|kept| *kept = record);
    cleaned
}

/// Cleans one run's record; returns whether nothing of it is left. What was
/// removed is taken out of `record`.
async fn clean(record: &mut RunRecord, dry_run: bool, cleaned: &mut Cleaned) -> bool {
    tokio::task::block_in_place(|| {
        stop_groups(record, dry_run, cleaned);
        stop_postgres(record, dry_run, cleaned);
        remove_folders(record, dry_run, cleaned);
    });
    if record.docker {
        remove_containers(record, dry_run, cleaned).await;
    }
    !record.docker
}

fn stop_groups(record: &mut RunRecord, dry_run: bool, cleaned: &mut Cleaned) {
    for leader in std::mem::take(&mut record.groups) {
        // A leader that still runs under another start time is a stranger
        // with a reused PID; a gone leader cannot have its group id reused
        // while members of its group live.
        if group::stat(leader.pid).is_some_and(|stat| stat.start_time != leader.start_time) {
            continue;
        }
        let members = group::members(leader.pid);
        if members.is_empty() {
            continue;
        }
        let what = format!("{} process(es) of run {} (group {}: {members:?})", members.len(), record.id, leader.pid);
        if dry_run {
            cleaned.removed.push(format!("would kill {what}"));
        } else if group::signal(leader.pid, libc::SIGKILL) {
            cleaned.removed.push(format!("killed {what}"));
        } else {
            cleaned.problems.push(format!("cannot kill {what}: {}", std::io::Error::last_os_error()));
        }
    }
}

fn stop_postgres(record: &mut RunRecord, dry_run: bool, cleaned: &mut Cleaned) {
    let Some(postgres) = record.postgres.take() else { return };
    if !postgres.data.join("postmaster.pid").exists() {
        return;
    }
    let what = format!("the PostgreSQL of run {} ({})", record.id, postgres.data.display());
    if dry_run {
        return cleaned.removed.push(format!("would stop {what}"));
    }
    // Immediate: nothing in a throwaway database is worth a checkpoint.
    let stopped = postgres_command(&postgres.bin.join("pg_ctl"))
        .arg("-D")
        .arg(&postgres.data)
        .args(["-m", "immediate", "-w", "stop"])
        .output();
    match stopped {
        Ok(output) if output.status.success() => cleaned.removed.push(format!("stopped {what}")),
        Ok(output) => cleaned
            .problems
            .push(format!("cannot stop {what}: pg_ctl: {}", String::from_utf8_lossy(&output.stderr).trim())),
        Err(error) => cleaned.problems.push(format!("cannot stop {what}: pg_ctl: {error}")),
    }
}

fn remove_folders(record: &mut RunRecord, dry_run: bool, cleaned: &mut Cleaned) {
    for folder in std::mem::take(&mut record.folders) {
        // A record names only folders of its own run: never remove another.
        let named = folder.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.contains(&record.id));
        if !named || !folder.exists() {
            continue;
        }
        if dry_run {
            cleaned.removed.push(format!("would remove {}", folder.display()));
            continue;
        }
        match std::fs::remove_dir_all(&folder) {
            Ok(()) => cleaned.removed.push(format!("removed {}", folder.display())),
            Err(error) => cleaned.problems.push(format!("cannot remove {}: {error}", folder.display())),
        }
    }
}

async fn remove_containers(record: &mut RunRecord, dry_run: bool, cleaned: &mut Cleaned) {
    let docker = match images::docker().await {
        Ok(docker) => docker,
        Err(error) => {
            let why = format!("the containers of run {} were not removed (kept for a later clean): {error}", record.id);
            return cleaned.problems.push(why);
        }
    };
    match containers::remove_run(&docker, &record.id, dry_run).await {
        Ok(lines) => {
            cleaned.removed.extend(lines);
            record.docker = dry_run;
        }
        Err(error) => cleaned.problems.push(format!("the containers of run {}: {error}", record.id)),
    }
}
