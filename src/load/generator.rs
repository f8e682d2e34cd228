//! `posim generator`: how efficient posim's load generator is, side by
//! side with wrk on the same endpoint. One reference-stack replica is
//! started through the live launcher (a throwaway PostgreSQL, `posim stack
//! serve` as a process on 127.0.0.1), then, one after the other on its
//! `GET /health` (answered from memory): posim's generator — N tokio tasks
//! in a closed loop on the live engine's HTTP client — and `wrk -t2 -cN`.
//! The report gives both rates, both p99s and the ratio posim ÷ wrk.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use super::meter::{histogram, micros, percentiles};
use super::wrk;
use crate::contract::{CanaryConfig, StackSettings};
use crate::faults::Crossing;
use crate::live::launcher::{LaunchError, Launcher, StackChoice};
use crate::live::runs::Run;
use crate::report::generator::{GeneratorLine, GeneratorReport, NoRatio};

pub const DURATION_MIN: Duration = Duration::from_secs(1);
pub const DURATION_MAX: Duration = Duration::from_secs(300);
/// As many as the shared client keeps idle (none is closed and reopened).
pub const CONNECTIONS_MAX: u32 = crate::live::http_client::POOL_IDLE_MAX as u32;
/// Far above what one loopback connection answers in a second: the count
/// bound of each connection's loop, beside its deadline.
const REQUESTS_PER_CONNECTION_SECOND_MAX: u64 = 1_000_000;
/// How long after its deadline a generator may take to hear its last answers.
const GRACE: Duration = Duration::from_secs(10);
const ENDPOINT: &str = "GET /health";

/// What was asked, checked: whole seconds, and connections in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asked {
    pub seconds: u64,
    pub connections: u32,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AskedError {
    #[error("--duration must be whole seconds from 1s to 5m, got {0:?}")]
    Duration(Duration),
    #[error("--connections must be 1 to {CONNECTIONS_MAX}, got {0}")]
    Connections(u32),
}

impl Asked {
    pub fn check(duration: Duration, connections: u32) -> Result<Asked, AskedError> {
        let whole = duration.subsec_nanos() == 0;
        if !whole || !(DURATION_MIN..=DURATION_MAX).contains(&duration) {
            return Err(AskedError::Duration(duration));
        }
        if !(1..=CONNECTIONS_MAX).contains(&connections) {
            return Err(AskedError::Connections(connections));
        }
        Ok(Asked { seconds: duration.as_secs(), connections })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    #[error("the stack: {0}")]
    Launch(#[from] LaunchError),
    #[error("posim's generator: {0}")]
    Posim(String),
    #[error("wrk: {0}")]
    Wrk(String),
    #[error("{0}")]
    NoRatio(#[from] NoRatio),
}

/// wrk on PATH, if installed.
pub fn find_wrk() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("wrk")).find(|file| file.is_file())
}

/// Starts the replica, runs both generators on its `/health`, stops it.
pub async fn run(
    asked: Asked,
    wrk_bin: PathBuf,
    logs: PathBuf,
    run: Arc<Run>,
) -> Result<GeneratorReport, GeneratorError> {
    // `/health` calls neither the PSP nor the gateway: no world is served,
    // the replica is only told a free loopback port for them.
    let world_port = crate::live::free_port().map_err(|e| LaunchError::Spawn(format!("finding a free port: {e}")))?;
    let choice = StackChoice::Embedded { bugs: Vec::new(), database: None };
    let settings = (StackSettings::default(), 1000);
    let mut launcher = Launcher::new(choice, 1, (world_port, String::new()), settings, logs, run).await?;
    let measured = measure(&mut launcher, asked, wrk_bin).await;
    launcher.shutdown().await;
    measured
}

async fn measure(launcher: &mut Launcher, asked: Asked, wrk_bin: PathBuf) -> Result<GeneratorReport, GeneratorError> {
    launcher.deploy(0, &CanaryConfig::off(), &Crossing::replica_wide(0, 0)).await?;
    let base = launcher.url(0).ok_or_else(|| GeneratorError::Posim("the replica has no URL".into()))?;
    let url = format!("{base}/health");
    eprintln!("posim generator: {} connections for {} s on {url}", asked.connections, asked.seconds);
    let posim = posim_line(&url, asked).await?;
    eprintln!("wrk: {} connections for {} s on {url}", asked.connections, asked.seconds);
    let wrk = wrk_line(&wrk_bin, &url, asked).await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(GeneratorReport::new((ENDPOINT.into(), asked.connections, asked.seconds), cores, posim, wrk)?)
}

/// What one connection's loop (or several, added) counted.
struct Tally {
    latency: Histogram<u64>,
    answered: u64,
    errors: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally { latency: histogram(), answered: 0, errors: 0 }
    }
}

impl Tally {
    fn add(&mut self, other: Tally) -> Result<(), String> {
        self.latency.add(&other.latency).map_err(|e| e.to_string())?;
        self.answered = self.answered.saturating_add(other.answered);
        self.errors = self.errors.saturating_add(other.errors);
        Ok(())
    }
}

/// posim's generator: `connections` tasks, each sending the next request
/// when the last was answered, until the deadline (or the count bound). The
/// tasks are spread over as many threads as wrk is given, each a
/// current-thread runtime with its own client, as wrk runs an event loop per
/// thread: a response then wakes its task on the thread that reads it
/// (measured ≈ 10–20% above the same client on one multi-threaded runtime).
async fn posim_line(url: &str, asked: Asked) -> Result<GeneratorLine, GeneratorError> {
    let url = reqwest::Url::parse(url).map_err(|e| GeneratorError::Posim(format!("{url}: {e}")))?;
    let threads = wrk::threads(asked.connections);
    let began = Instant::now();
    let deadline = began + Duration::from_secs(asked.seconds);
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let share = asked.connections / threads + u32::from(thread < asked.connections % threads);
            let url = url.clone();
            std::thread::spawn(move || on_own_runtime(url, share, asked.seconds, deadline))
        })
        .collect();
    let joined = tokio::task::spawn_blocking(move || {
        let mut total = Tally::default();
        for handle in handles {
            total.add(handle.join().map_err(|_| "a generator thread panicked".to_string())??)?;
        }
        Ok::<_, String>(total)
    });
    let total = joined.await.map_err(|e| GeneratorError::Posim(e.to_string()))?.map_err(GeneratorError::Posim)?;
    let seconds = began.elapsed().as_secs_f64();
    let shown = percentiles(&total.latency);
    Ok(GeneratorLine {
        generator: "posim".into(),
        threads,
        requests: total.answered,
        seconds,
        requests_per_second: total.answered as f64 / seconds,
        p50_ms: shown.p50_ms,
        p99_ms: shown.p99_ms,
        max_ms: shown.max_ms,
        errors: total.errors,
    })
}

/// One generator thread: `connections` closed loops on a current-thread runtime.
fn on_own_runtime(url: reqwest::Url, connections: u32, seconds: u64, deadline: Instant) -> Result<Tally, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = crate::live::http_client::client().map_err(|e| e.to_string())?;
        let bound = seconds.saturating_mul(REQUESTS_PER_CONNECTION_SECOND_MAX);
        let mut tasks = JoinSet::new();
        for _ in 0..connections {
            tasks.spawn(connection(client.clone(), url.clone(), deadline, bound));
        }
        let mut total = Tally::default();
        let joined = tokio::time::timeout(Duration::from_secs(seconds) + GRACE, async {
            while let Some(tally) = tasks.join_next().await {
                total.add(tally.map_err(|e| format!("a connection's task: {e}"))?)?;
            }
            Ok::<_, String>(())
        });
        joined.await.map_err(|_| format!("answers still awaited {GRACE:?} after the end"))??;
        Ok(total)
    })
}

/// One connection's closed loop: a request, its whole body, the next.
async fn connection(client: reqwest::Client, url: reqwest::Url, deadline: Instant, bound: u64) -> Tally {
    let mut tally = Tally::default();
    for _ in 0..bound {
        let sent = Instant::now();
        if sent >= deadline {
            break;
        }
        let answer = client.get(url.clone()).send().await;
        // The body is read to its end so that the connection is kept alive.
        let ok = match answer {
            Ok(response) => response.status() == reqwest::StatusCode::OK && response.bytes().await.is_ok(),
            Err(_) => false,
        };
        if ok {
            tally.answered += 1;
            let _ = tally.latency.record(micros(sent.elapsed()).max(1)); // saturates above an hour: never here
        } else {
            tally.errors += 1;
        }
    }
    tally
}

/// wrk on the same URL, parsed.
async fn wrk_line(bin: &std::path::Path, url: &str, asked: Asked) -> Result<GeneratorLine, GeneratorError> {
    let run = tokio::process::Command::new(bin)
        .args(wrk::args(asked.connections, asked.seconds, url))
        .kill_on_drop(true)
        .output();
    let length = Duration::from_secs(asked.seconds);
    let output = tokio::time::timeout(length + GRACE, run)
        .await
        .map_err(|_| GeneratorError::Wrk(format!("still running {GRACE:?} after its duration")))?
        .map_err(|e| GeneratorError::Wrk(format!("{}: {e}", bin.display())))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        return Err(GeneratorError::Wrk(format!("exited with {}:\n{text}", output.status)));
    }
    let parsed = wrk::parse(&text).map_err(|e| GeneratorError::Wrk(format!("{e}:\n{text}")))?;
    Ok(GeneratorLine {
        generator: "wrk".into(),
        threads: wrk::threads(asked.connections),
        requests: parsed.requests,
        seconds: parsed.seconds,
        requests_per_second: parsed.requests_per_second,
        p50_ms: parsed.p50_ms,
        p99_ms: parsed.p99_ms,
        max_ms: parsed.max_ms,
        errors: parsed.non_2xx.saturating_add(parsed.socket_errors),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_name_the_flag_that_is_out_of_range() {
        let secs = Duration::from_secs;
        assert_eq!(Asked::check(secs(10), 64), Ok(Asked { seconds: 10, connections: 64 }));
        assert_eq!(Asked::check(secs(1), 1).map(|a| a.seconds), Ok(1));
        assert_eq!(Asked::check(secs(300), 1024).map(|a| a.connections), Ok(1024));
        for bad in [secs(0), secs(301), Duration::from_millis(1500)] {
            let refused = Asked::check(bad, 64).expect_err("out of range");
            assert!(refused.to_string().starts_with("--duration"), "{refused}");
        }
        for bad in [0, 1025] {
            let refused = Asked::check(secs(10), bad).expect_err("out of range");
            assert!(refused.to_string().starts_with("--connections"), "{refused}");
        }
    }
}
