//! A replica that exits on its own (posim neither stopped nor killed it) is
//! noticed within a poll, not at the next deploy: taken out of the load
//! balancer at once (its failures are not the stack timing out), recorded
//! (`ReplicaExited`), and restarted with the config it ran, as the
//! runbook's orchestrator would — or, if it cannot be, reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::launcher::LaunchError;
use super::shared::Shared;
use super::stack_faults;
use crate::history::Event;

/// How often the replicas are looked at (wall time).
const POLL: Duration = Duration::from_millis(150);

/// Watches the serving replicas until `done`; returns what the report must say.
pub(super) async fn replicas(shared: Arc<Shared>, done: Arc<AtomicBool>) -> Vec<String> {
    let mut notes = Vec::new();
    while !done.load(Ordering::SeqCst) {
        tokio::time::sleep(POLL).await;
        for replica in serving(&shared) {
            // A deploy or a stack fault holds the launcher: it watches its replica itself.
            let Ok(mut launcher) = shared.launcher.try_lock() else { break };
            if launcher.ending() {
                return notes; // what exits now, posim stopped
            }
            let Some(error) = launcher.exited(replica).await else { continue };
            let generation = launcher.generation(replica);
            drop(launcher);
            notes.push(exited(&shared, replica as u16, generation, &error).await);
        }
    }
    notes
}

/// Replicas the balancer sends requests to.
fn serving(shared: &Shared) -> Vec<usize> {
    let slots = shared.slots.lock().expect("slots lock");
    slots.iter().enumerate().filter(|(_, slot)| slot.serving && slot.url.is_some()).map(|(i, _)| i).collect()
}

async fn exited(shared: &Shared, replica: u16, generation: u32, error: &LaunchError) -> String {
    let deploy = shared.take_out(replica);
    let status = match error {
        LaunchError::Exited { status, .. } => status.clone(),
        other => other.to_string(),
    };
    let at = crate::time::clock(shared.clock().now());
    shared.record(Event::ReplicaExited { replica, status: status.clone() });
    let note = match stack_faults::restart(shared, replica, generation, deploy).await {
        Ok(()) => format!("replica {replica} exited on its own at {at} ({status}); restarted with deploy {deploy}"),
        Err(why) => format!("replica {replica} exited on its own at {at} ({status}) and could not be restarted: {why}"),
    };
    eprintln!("posim live: {note}");
    note
}
