//! posim rehearses the Meta-Lav POS rollout of the runbook before it happens
//! for real: it plays the world around a payments stack (terminals, the card
//! acquirer, the IoT gateway and the laundry machines), drives the stack
//! through the runbook's canary phases, injects faults, and checks the
//! invariants D1–D9 on the recorded history.
//!
//! The modules follow the architecture of `DESIGN.md`:
//! - [`contract`]: the wire contract (requests, replies, errors, canary config);
//! - [`stack`]: the reference stack, a sans-IO core over a [`stack::store`];
//! - [`world`]: the fleet, the PSP and the gateway with their fault outcomes
//!   (sans-IO, driven by both engines), the customers' purchase flow;
//! - [`traffic`]: who buys when, where, how much — keyed on stable ids;
//! - [`scenario`], [`faults`]: what a run is asked to do;
//! - [`criteria`], [`judge`]: the advance criteria and their one judge, the
//!   one history index, the rollout's outcome;
//! - [`rollout`]: the controller that decides on them;
//! - [`sim`], [`live`]: the two engines, thin shells around the above;
//! - [`history`], [`check`], [`verdict`], [`report`]: what happened, what it
//!   proves, and how it is shown;
//! - [`swarm`]: many seeds with a fault mix each, the failing seeds'
//!   artifacts, their replay and shrinking;
//! - [`calibrate`]: the canary gate's quality over many seeds (false
//!   rollbacks, false promotes, time to detect) and settings that reach a target;
//! - [`suite`]: several scenarios as one gate, on the threads of [`pool`];
//! - [`harness`]: posim's own limits (its lag), so a verdict never blames the stack for them;
//! - [`progress`]: a long run's progress on stderr (a bar, or lines in CI logs);
//! - [`cli`]: parsing and dispatch only.

pub mod calibrate;
pub mod check;
pub mod cli;
pub mod contract;
pub mod criteria;
pub mod faults;
pub mod gameday;
pub mod harness;
pub mod history;
pub mod incident;
pub mod judge;
pub mod live;
pub mod load;
pub mod operator;
pub mod pool;
pub mod progress;
pub mod report;
pub mod rollout;
pub mod scenario;
pub mod seed;
pub mod sim;
pub mod stack;
pub mod suite;
pub mod swarm;
pub mod time;
pub mod traffic;
pub mod verdict;
pub mod world;
