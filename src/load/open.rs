//! The open model on posim's own tokio scheduler: purchases start at a
//! fixed rate per step whatever the stack answers (goose's users are a
//! closed loop, so it cannot hold a rate against a slow stack); a start
//! later than planned is counted, and its lateness measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::customer::{Customers, Turn};
use super::shape::IN_FLIGHT_MAX;

/// Offers `rate` purchases per second for `length`; returns the purchases
/// still in flight (the caller waits for them) and whether the plan ran out.
pub async fn step(customers: &Arc<Customers>, index: usize, rate: f64, length: Duration) -> (JoinSet<Turn>, bool) {
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    let count = (rate * length.as_secs_f64()).ceil() as u64;
    let mut spent = false;
    for n in 0..count {
        let planned = start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(planned.into()).await;
        while let Some(done) = tasks.try_join_next() {
            spent |= done.is_ok_and(|turn| turn == Turn::PlanSpent);
        }
        if spent {
            break;
        }
        if tasks.len() >= IN_FLIGHT_MAX {
            customers.meter.not_started(index, "in-flight cap");
            continue;
        }
        let customers = Arc::clone(customers);
        tasks.spawn(async move { customers.one(index, planned, None).await });
    }
    tokio::time::sleep_until((start + length).into()).await;
    (tasks, spent)
}
