//! Ctrl-C or SIGTERM during a live command: the work is dropped and what
//! the run started (replicas, the throwaway database, containers) removed.

use std::sync::Arc;

use super::runs::Run;

/// Runs `work` on `runtime` until it ends (`Some`) or Ctrl-C / SIGTERM
/// (`None`, once what `run` started is removed and the problems said on
/// stderr under `command`'s name).
pub fn until_stopped<T>(
    runtime: tokio::runtime::Runtime,
    run: &Arc<Run>,
    command: &str,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let finished = runtime.block_on(async {
        tokio::select! {
            outcome = work => Some(outcome),
            _ = stop_signal() => None,
        }
    });
    if finished.is_none() {
        let cleaned = runtime.block_on(super::clean::own_run(run));
        for problem in cleaned.problems {
            eprintln!("{command}: {problem}");
        }
        // Tasks dropped now may hold containers whose drop waits on a runtime
        // that is going away: they were removed just above, so do not wait.
        runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    }
    finished
}

/// Ctrl-C, or SIGTERM as a CI job's cancellation sends.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
