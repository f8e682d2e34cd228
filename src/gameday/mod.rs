//! Game days with people in the loop, the sans-IO part: what the operators'
//! console and the facilitator's page show ([`console`]), the actions
//! people send ([`action`]), and the scorecard the run ends with
//! ([`scorecard`]). The live engine's shell serves them (`posim gameday`,
//! `posim op`); nothing here does I/O or reads a clock.

pub mod action;
pub mod console;
pub mod scorecard;
