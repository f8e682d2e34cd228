//! Judging a run, once for both engines and for the controller and the
//! report alike: the one [`index`] over the history, on which the advance
//! criteria are judged (by [`crate::criteria::judge`]), and the rollout's
//! [`outcome`] against what the scenario expects. This layer reads the
//! history only; the controller, the checkers and the report sit above it.

pub mod index;
pub mod outcome;

pub use crate::criteria::{Criteria, CriterionResult, Judgement, OnInconclusive, Rate, WindowRates, judge};
pub use index::HistoryIndex;
pub use outcome::{Expectation, Outcome};
