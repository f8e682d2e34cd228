//! The reference payments stack: a sans-IO domain [`core`] that answers
//! requests with effects, over a [`store`] that enforces the uniqueness a
//! payments system needs. The simulator and (later) the HTTP server drive the
//! same core; the bug switches re-create classic failures on purpose, so that
//! the checkers are shown to catch them.

pub mod core;
pub mod http;
pub mod pg;
pub mod store;

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::contract::names;

pub use self::core::{Effect, Input, IotCall, IotOutcome, Operation, PspCall, PspOutcome, Stack};

/// A deliberate defect of the reference stack, off by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::EnumIter, strum::EnumCount)]
#[strum(serialize_all = "kebab-case")]
pub enum StackBug {
    /// Confirm mints a fresh `execute_key` on every call and resets the payment to confirmed.
    NonidempotentConfirm,
    /// After a gateway 504 or timeout the command is sent again without asking the machine.
    ResendAfterTimeout,
    /// The sweep refunds a confirmed payment without asking the machine or honouring the execution lease.
    RefundRacesCycle,
    /// The canary gate also refuses confirm and execute-cycle.
    GateBlocksInflight,
    /// A restarted replica starts from an empty store (state kept in memory).
    StateLostOnRedeploy,
    /// The allowlist is read as a blocklist.
    InvertedAllowlist,
    /// A replayed authorize (same key, same request) creates and returns a second payment.
    AuthorizeReplayNewPayment,
    /// The start command carries no `not_after` and any attempt may release
    /// the lease: a replica paused past its lease sends anyway.
    UnfencedStart,
    /// The execution lease ends by the replica's clock, not the database's:
    /// a replica whose clock is behind takes a lease that is already over.
    LeaseOnReplicaClock,
    /// A confirm for an expired payment is refused without looking at its
    /// charge: a card captured after the sweep expired it is never refunded.
    LateCaptureKept,
}

impl FromStr for StackBug {
    type Err = String;

    /// `--stack-bug` and `POSIM_STACK_BUG` name bugs; an unknown one lists the names.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        names::parse("stack bug", text)
    }
}

/// The set of bug switches a stack runs with (a bit set: small and `Copy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BugSet(u16);

impl BugSet {
    pub fn new(bugs: &[StackBug]) -> Self {
        const { assert!(<StackBug as strum::EnumCount>::COUNT <= u16::BITS as usize, "one bit per bug") };
        BugSet(bugs.iter().fold(0, |bits, bug| bits | (1 << *bug as u8)))
    }

    pub fn has(self, bug: StackBug) -> bool {
        self.0 & (1 << bug as u8) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bugs_are_named_in_kebab_case_and_unknown_names_are_listed() {
        names::assert_round_trip::<StackBug>();
        assert_eq!(StackBug::NonidempotentConfirm.to_string(), "nonidempotent-confirm");
        let error = "gremlins".parse::<StackBug>().expect_err("no such bug");
        assert!(error.starts_with("unknown stack bug `gremlins`; expected one of: nonidempotent-confirm, "), "{error}");
        assert!("authorize-replay-new-payment".parse::<StackBug>().is_ok());
        for bug in <StackBug as strum::IntoEnumIterator>::iter() {
            let alone = BugSet::new(&[bug]);
            let others = <StackBug as strum::IntoEnumIterator>::iter();
            assert!(others.into_iter().all(|other| alone.has(other) == (other == bug)), "{bug} has its own bit");
        }
    }
}
