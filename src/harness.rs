//! posim's own limits, so that a verdict about the stack never rests on
//! posim's lag: the bound beyond which a request counts as lagged by posim,
//! and the figures a live run reports about itself. The live engine measures
//! (its runtime's scheduling delay, each send's lateness, the CPU it waited
//! for); the judge and the reports read what is here.

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// The share of a timeout posim may take for itself: a request posim held
/// up by more than a tenth of the time it gave the stack to answer is
/// *lagged*, and a failure of it says nothing about the stack.
pub const LAG_SHARE_OF_TIMEOUT: u64 = 10;

/// The lag (runbook ms) beyond which a request with `timeout` counts as lagged.
pub fn lag_bound(timeout: Millis) -> Millis {
    (timeout / LAG_SHARE_OF_TIMEOUT).max(1)
}

/// What a live run measured of posim itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HarnessFigures {
    /// How late the runtime woke a timer, sampled every few milliseconds
    /// (wall milliseconds): 0 on an idle machine, high when posim starves.
    pub scheduling_delay_p50_ms: f64,
    pub scheduling_delay_p99_ms: f64,
    pub scheduling_delay_max_ms: f64,
    pub samples: u64,
    /// Time posim's threads waited for a CPU (the kernel's run-queue delay,
    /// summed over its threads), against the run's wall time.
    pub cpu_wait_s: f64,
    pub wall_s: f64,
    /// Requests posim itself held up beyond the bound ([`lag_bound`]).
    pub lagged_requests: u64,
    /// The most posim held one request up, in runbook ms.
    pub max_request_lag_ms: Millis,
    /// The time scale the run was played at (runbook seconds per wall second).
    pub time_scale: f64,
}

impl HarnessFigures {
    /// One line for the console and summary.md.
    pub fn line(&self) -> String {
        format!(
            "posim's own lag: scheduling delay p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (wall, {} samples); \
             CPU wait {:.1} s of {:.1} s; {} request(s) lagged beyond a tenth of their timeout (worst {} runbook)",
            self.scheduling_delay_p50_ms,
            self.scheduling_delay_p99_ms,
            self.scheduling_delay_max_ms,
            self.samples,
            self.cpu_wait_s,
            self.wall_s,
            self.lagged_requests,
            crate::time::human(self.max_request_lag_ms),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_a_tenth_of_the_timeout_and_never_zero() {
        assert_eq!(lag_bound(10_000), 1_000);
        assert_eq!(lag_bound(5), 1);
    }
}
