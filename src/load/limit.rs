//! What limited a load step: the stack (its latency or its errors), its
//! database, posim's generator, the fleet posim plays, or nothing posim can
//! name. A knee is the stack's only when the step past it was limited by the
//! stack or its database; a load stopped by posim's generator or by the
//! fleet says so and suggests the change instead of reporting a knee.
//!
//! The rule, in the order it is applied to a step past the caps:
//! 1. **generator**: more than [`LATE_SHARE_MAX`] of the step's purchases
//!    started late (posim could not keep its own schedule) while posim
//!    itself spent at least [`POSIM_CPU_SHARE`] of the CPU the machine
//!    spent (or nobody knows where the CPU went); a posim that fell behind
//!    on less was starved by the stack beside it, and the rules below apply;
//! 2. **fleet**: the failure rate is above its cap only through purchases
//!    never started (no free machine, the in-flight cap), or throughput
//!    stalled while purchases were turned away;
//! 3. **stack errors**: the failure rate is above its cap through purchases
//!    that started and failed (5xx, timeouts);
//! 4. **stack latency**: p99 is above its cap, or throughput stalled while
//!    p99 at least doubled over the best step's;
//! 5. **unknown**: throughput stalled with none of the above.
//!
//! A stack limit becomes **database** once the run's pgbench ceiling is
//! known (`posim load` measures it on the same database after the steps):
//! when the knee's throughput is at least [`DATABASE_SHARE`] of what the
//! database alone sustains for the flow's transactions, the database is
//! where the stack ran out.

use serde::{Deserialize, Serialize};

use super::knee::Caps;

/// What the rule reads of one step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepFigures {
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub not_started: u64,
    pub late_starts: u64,
    /// (failed + not started) ÷ offered.
    pub error_rate: f64,
    pub p99_ms: f64,
    /// Where the step's CPU went (None: unknown).
    pub cpu: Option<super::cpu::StepCpu>,
}

/// A step with more late starts than this share was limited by posim.
pub const LATE_SHARE_MAX: f64 = 0.05;
/// posim was its own limit only if it spent at least this share of the machine's busy CPU.
pub const POSIM_CPU_SHARE: f64 = 0.5;
/// A knee at this share of the database's own ceiling or above is the database's.
pub const DATABASE_SHARE: f64 = 0.8;

/// What limited a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Limit {
    /// Within the caps, throughput still rising.
    #[default]
    WithinCaps,
    StackLatency,
    StackErrors,
    Database,
    /// posim's own generator fell behind its schedule.
    Generator,
    /// The fleet posim plays ran out of free machines or in-flight room.
    Fleet,
    Unknown,
}

impl Limit {
    /// Whether a knee this step ends is the stack's.
    pub fn is_the_stacks(self) -> bool {
        matches!(self, Limit::StackLatency | Limit::StackErrors | Limit::Database)
    }

    /// What to change when posim, not the stack, was the limit.
    pub fn suggestion(self) -> Option<&'static str> {
        match self {
            Limit::Generator => Some(
                "posim's generator fell behind: give it more cores, lower --step-rate, or split the load over shards (--shard)",
            ),
            Limit::Fleet => Some(
                "the fleet ran out of free machines or in-flight room: a bigger fleet (more condominiums or machines, shorter cycle_length) in the scenario",
            ),
            Limit::Unknown => Some("throughput stalled with no cause posim can name: look at the stack's own metrics"),
            _ => None,
        }
    }
}

/// What limited `step` (`past`: whether it crossed the caps or stalled;
/// `best_p99_ms`: the p99 of the best step before it).
pub fn classify(step: &StepFigures, caps: Caps, past: bool, best_p99_ms: Option<f64>) -> Limit {
    if !past {
        return Limit::WithinCaps;
    }
    let started = step.started.max(1) as f64;
    let posim_was_the_hog = step.cpu.is_none_or(|cpu| cpu.posim_share() >= POSIM_CPU_SHARE);
    if step.late_starts as f64 / started > LATE_SHARE_MAX && posim_was_the_hog {
        return Limit::Generator;
    }
    let ended = step.succeeded + step.failed;
    let started_failure_rate = if ended > 0 { step.failed as f64 / ended as f64 } else { 0.0 };
    let errors_above = step.error_rate > caps.error_rate;
    if (errors_above && started_failure_rate <= caps.error_rate) || (!errors_above && step.not_started > step.failed) {
        return Limit::Fleet;
    }
    if errors_above {
        return Limit::StackErrors;
    }
    let p99 = step.p99_ms;
    if p99 > caps.p99_ms || best_p99_ms.is_some_and(|best| best > 0.0 && p99 >= 2.0 * best) {
        return Limit::StackLatency;
    }
    Limit::Unknown
}

/// A stack limit is the database's when the knee's throughput reaches
/// [`DATABASE_SHARE`] of the database's own ceiling (flows per second).
pub fn on_the_database(limit: Limit, knee_throughput: f64, ceiling_flows: f64) -> Limit {
    match limit {
        Limit::StackLatency | Limit::StackErrors
            if ceiling_flows > 0.0 && knee_throughput >= DATABASE_SHARE * ceiling_flows =>
        {
            Limit::Database
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps { p99_ms: 300.0, error_rate: 0.01 };

    fn step(started: u64, (failed, not_started, late): (u64, u64, u64), p99_ms: f64) -> StepFigures {
        let offered = started + not_started;
        StepFigures {
            started,
            succeeded: started - failed,
            failed,
            not_started,
            late_starts: late,
            error_rate: (failed + not_started) as f64 / offered as f64,
            p99_ms,
            cpu: None,
        }
    }

    #[test]
    fn each_limit_by_the_rule() {
        assert_eq!(classify(&step(1000, (0, 0, 0), 20.0), CAPS, false, None), Limit::WithinCaps);
        assert_eq!(classify(&step(1000, (2, 30, 0), 20.0), CAPS, true, None), Limit::Fleet);
        assert_eq!(classify(&step(1000, (2, 30, 200), 20.0), CAPS, true, None), Limit::Generator);
        // Late, but the stack beside posim took the CPU: the stack's latency.
        let cpu = |posim_s| Some(crate::load::cpu::StepCpu { posim_s, others_s: 6.0, wall_s: 5.0, cores: 2 });
        let starved = StepFigures { cpu: cpu(2.0), ..step(1000, (0, 0, 200), 900.0) };
        assert_eq!(classify(&starved, CAPS, true, None), Limit::StackLatency);
        let hog = StepFigures { cpu: cpu(7.0), ..starved };
        assert_eq!(classify(&hog, CAPS, true, None), Limit::Generator);
        assert_eq!(classify(&step(1000, (50, 0, 0), 20.0), CAPS, true, None), Limit::StackErrors);
        assert_eq!(classify(&step(1000, (0, 0, 0), 900.0), CAPS, true, None), Limit::StackLatency);
        assert_eq!(classify(&step(1000, (0, 0, 0), 50.0), CAPS, true, Some(20.0)), Limit::StackLatency);
        assert_eq!(classify(&step(1000, (0, 0, 0), 21.0), CAPS, true, Some(20.0)), Limit::Unknown);
        assert_eq!(on_the_database(Limit::StackLatency, 900.0, 1000.0), Limit::Database);
        assert_eq!(on_the_database(Limit::StackLatency, 500.0, 1000.0), Limit::StackLatency);
        assert_eq!(on_the_database(Limit::Fleet, 900.0, 1000.0), Limit::Fleet);
    }

    #[test]
    fn only_the_stacks_limits_make_a_knee() {
        assert!(Limit::StackLatency.is_the_stacks() && Limit::StackErrors.is_the_stacks());
        assert!(Limit::Database.is_the_stacks());
        for limit in [Limit::Fleet, Limit::Generator, Limit::Unknown] {
            assert!(!limit.is_the_stacks() && limit.suggestion().is_some(), "{limit}");
        }
    }
}
