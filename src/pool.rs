//! A few worker threads for independent, CPU-bound jobs (a swarm's seeds, a
//! suite's scenarios): each thread takes the next job's index off a shared
//! counter, and the results come back to the calling thread as they finish.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

/// Runs `work(0)`, …, `work(count - 1)` on `threads` threads (at least one);
/// `done` sees each result on the calling thread in finishing order and
/// returns whether to go on (false: no job is started after it).
pub fn run<T: Send>(count: u64, threads: usize, work: impl Fn(u64) -> T + Sync, mut done: impl FnMut(T) -> bool) {
    let next = AtomicU64::new(0);
    let (sender, receiver) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            let (sender, next, work) = (sender.clone(), &next, &work);
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count || sender.send(work(index)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(sender);
        for result in receiver {
            if !done(result) {
                next.store(count, Ordering::Relaxed);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_and_a_stop_starts_no_more() {
        let mut seen = Vec::new();
        run(
            7,
            3,
            |index| index * 10,
            |result| {
                seen.push(result);
                true
            },
        );
        seen.sort_unstable();
        assert_eq!(seen, [0, 10, 20, 30, 40, 50, 60]);
        // A job takes a while, so the one thread is at most a job or two ahead.
        let mut taken = 0;
        let slow = |index| std::thread::sleep(std::time::Duration::from_millis(1 + index % 2));
        run(1000, 1, slow, |()| {
            taken += 1;
            taken < 3
        });
        assert!(taken < 100, "no job is started after a stop: {taken} ran");
    }
}
