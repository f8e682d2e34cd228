//! Capacity testing. `posim load`: a live run whose traffic is load —
//! purchases at a chosen rate (open model, posim's own scheduler) or goose
//! users (closed model) — against a stack deployed once, measured per step,
//! then audited and judged with the live engine's checkers (D1–D8) and gated
//! on thresholds; and the database's own ceiling for the same flow
//! (pgbench), to read the stack's knee against; and the generator's own
//! efficiency beside wrk's on the same endpoint (`posim generator`).

pub mod closed;
pub mod cpu;
pub mod customer;
pub mod gate;
pub mod generator;
pub mod knee;
pub mod limit;
pub mod merge;
pub mod meter;
pub mod open;
pub mod pgbench;
pub mod run;
pub mod shape;
pub mod shard;
pub mod wrk;
