//! The scenario's stack faults, carried out on the real stack at their
//! planned runbook times: a replica paused and thawed, a replica killed and
//! a fresh one started with the config it ran, the database stopped and
//! started again. Each is recorded as it begins and ends; what could not be
//! done becomes a note in the report rather than a silent skip.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::shared::Shared;
use crate::faults::{StackFault, StackFaultAction};
use crate::history::{DownCause, Event};

/// Plays every stack fault of the scenario; returns what could not be done.
pub(super) async fn play(shared: Arc<Shared>) -> Vec<String> {
    let mut tasks = JoinSet::new();
    for (index, fault) in shared.scenario.stack_faults.iter().enumerate() {
        shared.clock().sleep_until(fault.at).await;
        let shared = Arc::clone(&shared);
        let fault = fault.clone();
        tasks.spawn(async move { carry_out(&shared, index as u16, &fault).await });
    }
    let mut notes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(note)) = done {
            eprintln!("posim live: {note}");
            notes.push(note);
        }
    }
    notes
}

async fn carry_out(shared: &Shared, index: u16, fault: &StackFault) -> Result<(), String> {
    let replica = fault.replica;
    let began = Event::StackFault { fault: index, action: fault.action, replica, ended: false };
    let failed = |error: super::launcher::LaunchError| format!("stack fault {}: {error}", describe(fault));
    match fault.action {
        StackFaultAction::PauseReplica => {
            shared.launcher.lock().await.pause(usize::from(replica), true).await.map_err(failed)?;
            shared.record(began);
            shared.clock().sleep(fault.duration).await;
            // A deploy may have replaced the paused replica meanwhile: nothing left to thaw.
            let _ = shared.launcher.lock().await.pause(usize::from(replica), false).await;
        }
        StackFaultAction::KillReplica => {
            let (generation, deploy) = kill(shared, replica).await.map_err(failed)?;
            shared.record(began);
            shared.clock().sleep(fault.duration).await;
            restart(shared, replica, generation, deploy).await.map_err(failed)?;
        }
        StackFaultAction::RestartDatabase => {
            shared.launcher.lock().await.database_running(false).await.map_err(failed)?;
            shared.record(began);
            shared.clock().sleep(fault.duration).await;
            shared.launcher.lock().await.database_running(true).await.map_err(failed)?;
        }
    }
    shared.record(Event::StackFault { fault: index, action: fault.action, replica, ended: true });
    Ok(())
}

/// Kills the replica and takes it out of the balancer; returns its
/// generation and the deploy it ran.
async fn kill(shared: &Shared, replica: u16) -> Result<(u32, u16), super::launcher::LaunchError> {
    let mut launcher = shared.launcher.lock().await;
    launcher.kill(usize::from(replica)).await?;
    let deploy = shared.take_out(replica);
    shared.record(Event::ReplicaDown { replica, cause: DownCause::Crash });
    Ok((launcher.generation(usize::from(replica)), deploy))
}

/// A fresh replica with the config the killed one ran, unless a deploy
/// already replaced it.
pub(super) async fn restart(
    shared: &Shared,
    replica: u16,
    generation: u32,
    deploy: u16,
) -> Result<(), super::launcher::LaunchError> {
    let mut launcher = shared.launcher.lock().await;
    if launcher.generation(usize::from(replica)) != generation {
        return Ok(());
    }
    let canary = shared.recorder.with(|h| h.deploys[usize::from(deploy)].canary.clone());
    let skewed = launcher.deploy(usize::from(replica), &canary, &shared.crossing()).await?;
    let url = launcher.url(usize::from(replica));
    shared.put_back(replica, url, deploy);
    shared.record(Event::ReplicaUp { replica, config: deploy });
    if let Some(fired) = skewed {
        shared.record(fired.into());
    }
    Ok(())
}

fn describe(fault: &StackFault) -> String {
    let at = crate::time::human(fault.at);
    match fault.action.targets_replica() {
        true => format!("{} of replica {} at {at}", fault.action, fault.replica),
        false => format!("{} at {at}", fault.action),
    }
}
