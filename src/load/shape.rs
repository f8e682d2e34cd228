//! The load's shape as asked on the command line: the model (open: a rate
//! of purchases per second; closed: goose users), its steps, and the hard
//! caps every loop of a load run is bounded by.

use std::time::Duration;

use super::shard::Shard;

/// At most this many steps.
pub const STEPS_MAX: u32 = 40;
/// At most this many goose users.
pub const USERS_MAX: u32 = 2_000;
/// At most this many purchases per second.
pub const RATE_MAX: f64 = 5_000.0;
/// A step lasts between 1 s and 10 min.
pub const STEP_SECONDS: (u64, u64) = (1, 600);
/// A whole run lasts at most an hour.
pub const TOTAL_SECONDS_MAX: u64 = 3_600;
/// At most this many purchases in flight (the open model sheds beyond it).
pub const IN_FLIGHT_MAX: usize = 4_096;

/// How the load is offered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Model {
    /// Purchases started at `rate` per second, independent of the answers.
    Open { rate: f64, step_rate: f64 },
    /// `users` goose users, each running purchases back to back.
    Closed { users: u32, step_users: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub model: Model,
    pub steps: u32,
    pub step: Duration,
    /// Stop at the first step past the knee.
    pub find_knee: bool,
    /// The slice of the plan this run plays (`--shard i/n`).
    pub shard: Shard,
}

/// The flags as given (`None`: not given).
#[derive(Clone, Copy, Debug, Default)]
pub struct Asked {
    pub users: Option<u32>,
    pub step_users: Option<u32>,
    pub rate: Option<f64>,
    pub step_rate: Option<f64>,
    pub steps: Option<u32>,
    pub step_seconds: u64,
    pub find_knee: bool,
    pub shard: Shard,
}

impl Shape {
    /// Checks the flags against the caps; the message says which is out of range.
    pub fn from_asked(asked: Asked) -> Result<Shape, String> {
        let (low, high) = STEP_SECONDS;
        if !(low..=high).contains(&asked.step_seconds) {
            return Err(format!("--step-duration must be between {low}s and {high}s"));
        }
        let default_steps = if asked.find_knee { 10 } else { 1 };
        let steps = asked.steps.unwrap_or(default_steps);
        if !(1..=STEPS_MAX).contains(&steps) {
            return Err(format!("--steps must be between 1 and {STEPS_MAX}"));
        }
        let total = asked.step_seconds.saturating_mul(u64::from(steps));
        if total > TOTAL_SECONDS_MAX {
            return Err(format!(
                "--steps × --step-duration is {total}s, more than the {TOTAL_SECONDS_MAX}s a load run may last"
            ));
        }
        let model = match (asked.users, asked.rate) {
            (Some(_), Some(_)) => return Err("give --users (closed model) or --rate (open model), not both".into()),
            (Some(users), None) => {
                let step_users = asked.step_users.unwrap_or(users);
                let top = u64::from(users) + u64::from(step_users) * u64::from(steps - 1);
                if users == 0 || top > u64::from(USERS_MAX) {
                    return Err(format!(
                        "--users must be at least 1, and the last step at most {USERS_MAX} users (it would be {top})"
                    ));
                }
                Model::Closed { users, step_users }
            }
            (None, rate) => {
                let rate = rate.unwrap_or(20.0);
                let step_rate = asked.step_rate.unwrap_or(rate);
                let top = rate + step_rate * f64::from(steps - 1);
                let valid = rate.is_finite() && step_rate.is_finite() && rate > 0.0 && step_rate >= 0.0;
                if !valid || top > RATE_MAX {
                    return Err(format!(
                        "--rate must be above 0 and the last step at most {RATE_MAX}/s (it would be {top})"
                    ));
                }
                Model::Open { rate, step_rate }
            }
        };
        if asked.step_users.is_some() && asked.users.is_none() {
            return Err("--step-users needs --users".into());
        }
        if asked.step_rate.is_some() && asked.users.is_some() {
            return Err("--step-rate needs --rate".into());
        }
        let step = Duration::from_secs(asked.step_seconds);
        Ok(Shape { model, steps, step, find_knee: asked.find_knee, shard: asked.shard })
    }

    /// The target of step `index` (0-based): a rate, or users.
    pub fn target(&self, index: u32) -> f64 {
        match self.model {
            Model::Open { rate, step_rate } => rate + step_rate * f64::from(index),
            Model::Closed { users, step_users } => f64::from(users) + f64::from(step_users) * f64::from(index),
        }
    }

    pub fn model_name(&self) -> &'static str {
        match self.model {
            Model::Open { .. } => "open",
            Model::Closed { .. } => "closed (goose)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked() -> Asked {
        Asked { step_seconds: 5, ..Asked::default() }
    }

    #[test]
    fn steps_rise_by_the_step() {
        let shape = Shape::from_asked(Asked { rate: Some(50.0), step_rate: Some(25.0), steps: Some(4), ..asked() });
        let shape = shape.expect("in range");
        assert_eq!((0..4).map(|i| shape.target(i)).collect::<Vec<_>>(), vec![50.0, 75.0, 100.0, 125.0]);
        let closed = Shape::from_asked(Asked { users: Some(4), steps: Some(3), ..asked() }).expect("in range");
        assert_eq!(closed.model, Model::Closed { users: 4, step_users: 4 });
        assert_eq!(closed.target(2), 12.0);
    }

    #[test]
    fn out_of_range_flags_are_refused_naming_the_flag() {
        let refused = |a: Asked, flag: &str| {
            let error = Shape::from_asked(a).expect_err("out of range");
            assert!(error.contains(flag), "{error}");
        };
        refused(Asked { rate: Some(0.0), ..asked() }, "--rate");
        refused(Asked { rate: Some(f64::NAN), ..asked() }, "--rate");
        refused(Asked { rate: Some(100.0), step_rate: Some(1000.0), steps: Some(10), ..asked() }, "--rate");
        refused(Asked { users: Some(3000), ..asked() }, "--users");
        refused(Asked { users: Some(1), rate: Some(1.0), ..asked() }, "not both");
        refused(Asked { steps: Some(0), ..asked() }, "--steps");
        refused(Asked { steps: Some(41), ..asked() }, "--steps");
        refused(Asked { step_seconds: 0, ..asked() }, "--step-duration");
        refused(Asked { step_seconds: 600, steps: Some(7), ..asked() }, "more than");
        refused(Asked { step_users: Some(2), ..asked() }, "--step-users");
    }
}
