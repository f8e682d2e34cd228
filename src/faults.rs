//! Faults on every boundary, as a scenario plans them: each with a
//! probability, a time window and a scope (phases, condominiums, endpoints).
//! A decision is a keyed roll (see [`crate::seed::KeyedRoll`]): the same
//! seed and the same stable ids give the same fault, whatever else happens.
//! Faults on one boundary share one roll, split by their probabilities in
//! plan order, so adding a fault at the end leaves the earlier ones alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::contract::Endpoint;
use crate::seed::KeyedRoll;
use crate::time::Millis;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum FaultKind {
    /// Terminal → stack: the request never arrives.
    RequestLost,
    /// Stack → terminal: the stack acted, the response is lost.
    ResponseLost,
    /// Terminal → stack: the request is sent twice (double tap, concurrent retry).
    DuplicateRequest,
    /// Stack → PSP: no answer before the stack's PSP timeout.
    PspTimeout,
    /// Stack → PSP: a 5xx.
    PspError,
    /// Stack → gateway: the command never reaches the machine; no answer.
    IotCommandLost,
    /// Gateway → stack: the machine started, the answer is lost.
    IotAckLost,
    /// The gateway answers 504 after the machine started.
    #[serde(rename = "gateway_504")]
    #[strum(serialize = "gateway_504")]
    Gateway504,
    /// The machine goes offline for `duration`.
    MachineOffline,
    /// A replica crashes between two effects and is down for `duration`.
    ReplicaCrash,
    /// The customer walks away after a failed attempt.
    CustomerWalksAway,
    /// A replica stops between two effects for `duration` (a long GC pause,
    /// `docker pause`): its operations and the requests queued on it wait.
    ReplicaPause,
    /// A replica's clock runs ahead or behind by up to `duration` (drawn per
    /// replica process).
    ClockSkew,
    /// A store operation answers `duration` late (its write has landed).
    StoreSlow,
    /// A store operation fails (connection lost): the request is answered 503.
    StoreError,
    /// The gateway answers 504 and the command reaches the machine later,
    /// within `duration` and the gateway's command expiry.
    CommandLate,
    /// The PSP times out on a refund that lands later, within `duration`.
    RefundLate,
    /// Terminal → stack: the request leaves two more times within a few
    /// milliseconds (a retry storm, a proxy retrying on its own), so that
    /// replicas race on one payment.
    ConcurrentDuplicates,
    /// A terminal goes offline between two steps of a purchase for
    /// `duration` and resumes with the same keys (store-and-forward).
    TerminalOffline,
    /// The card's capture lands at the PSP up to `duration` late (the
    /// terminal waits for it).
    CaptureLate,
}

/// Where a fault is rolled: each boundary crossing rolls once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Boundary {
    TerminalToStack,
    StackToTerminal,
    StackToPsp,
    StackToIot,
    /// Between two effects inside a replica (store operations).
    Replica,
    Customer,
    /// Before any effect of an operation (pauses).
    Pause,
    /// When a replica process starts (its clock).
    Clock,
    /// Before a purchase's next step at the terminal.
    TerminalStep,
    /// The terminal's card charge at the PSP.
    Card,
}

/// Every boundary, in the order of their roll streams.
const BOUNDARIES: [Boundary; 10] = [
    Boundary::TerminalToStack,
    Boundary::StackToTerminal,
    Boundary::StackToPsp,
    Boundary::StackToIot,
    Boundary::Replica,
    Boundary::Customer,
    Boundary::Pause,
    Boundary::Clock,
    Boundary::TerminalStep,
    Boundary::Card,
];

/// How long after a `start_cycle` command reached the gateway it may still
/// reach its machine (CONTRACT.md §4.2, "command expiry"); a command that
/// carries `not_after` never reaches it after that instant.
pub const COMMAND_EXPIRY: Millis = 30 * crate::time::SECOND;

/// How far apart the copies of a concurrent duplicate leave, at most.
pub const CONCURRENT_SPREAD: Millis = 5;

impl FaultKind {
    /// Late deliveries are about one call each: a late refund is no answer
    /// to a charge lookup. Every other fault plays at any call of its boundary.
    fn applies_at(self, world: Option<WorldEndpoint>) -> bool {
        match self {
            FaultKind::RefundLate => world == Some(WorldEndpoint::Refund),
            FaultKind::CommandLate => world == Some(WorldEndpoint::StartCycle),
            _ => true,
        }
    }

    /// Is this fault rolled between two effects inside a replica, where only
    /// the simulator reaches (a live run plays pauses, kills and outages at
    /// planned times instead)?
    pub fn between_effects(self) -> bool {
        matches!(self, FaultKind::ReplicaCrash | FaultKind::ReplicaPause | FaultKind::StoreSlow | FaultKind::StoreError)
    }

    /// Does this fault hold something back for its `duration` (so that a
    /// run's drain must last that much longer for its effects to settle)?
    pub fn delays(self) -> bool {
        matches!(
            self,
            FaultKind::ReplicaPause
                | FaultKind::StoreSlow
                | FaultKind::CommandLate
                | FaultKind::RefundLate
                | FaultKind::TerminalOffline
                | FaultKind::CaptureLate
        )
    }

    pub fn boundary(self) -> Boundary {
        match self {
            FaultKind::RequestLost | FaultKind::DuplicateRequest | FaultKind::ConcurrentDuplicates => {
                Boundary::TerminalToStack
            }
            FaultKind::ResponseLost => Boundary::StackToTerminal,
            FaultKind::PspTimeout | FaultKind::PspError | FaultKind::RefundLate => Boundary::StackToPsp,
            FaultKind::IotCommandLost
            | FaultKind::IotAckLost
            | FaultKind::Gateway504
            | FaultKind::MachineOffline
            | FaultKind::CommandLate => Boundary::StackToIot,
            FaultKind::ReplicaCrash | FaultKind::StoreSlow | FaultKind::StoreError => Boundary::Replica,
            FaultKind::CustomerWalksAway => Boundary::Customer,
            FaultKind::ReplicaPause => Boundary::Pause,
            FaultKind::ClockSkew => Boundary::Clock,
            FaultKind::TerminalOffline => Boundary::TerminalStep,
            FaultKind::CaptureLate => Boundary::Card,
        }
    }
}

/// One planned fault, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub probability: f64,
    /// Active in `[from, until)` of run time.
    pub from: Millis,
    pub until: Millis,
    /// Phase indices; empty means every phase.
    pub phases: Vec<u16>,
    /// Condominium indices; empty means all.
    pub condominiums: Vec<u32>,
    /// Endpoints (terminal boundaries only); empty means all.
    pub endpoints: Vec<Endpoint>,
    /// How long an offline machine or a crashed replica stays down.
    pub duration: Millis,
}

impl FaultSpec {
    /// A fault with no scope: every phase, condominium, endpoint and time.
    pub fn everywhere(kind: FaultKind, probability: f64, duration: Millis) -> FaultSpec {
        FaultSpec {
            kind,
            probability,
            from: 0,
            until: Millis::MAX,
            phases: vec![],
            condominiums: vec![],
            endpoints: vec![],
            duration,
        }
    }
}

/// A fault on the stack's own infrastructure at a planned time (a game-day
/// action rather than a roll): the live engine carries it out on the
/// replica's process or container, or on the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum StackFaultAction {
    /// The replica is frozen (SIGSTOP, `docker pause`): connections queue, nothing answers.
    PauseReplica,
    /// The replica dies (SIGKILL, `docker kill`); a fresh one starts after `duration`.
    KillReplica,
    /// The database stops and starts again after `duration` (zero: a plain restart).
    RestartDatabase,
}

impl StackFaultAction {
    pub fn targets_replica(self) -> bool {
        !matches!(self, StackFaultAction::RestartDatabase)
    }
}

/// One scheduled stack fault, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct StackFault {
    pub at: Millis,
    pub action: StackFaultAction,
    /// The replica slot (ignored by `restart_database`).
    pub replica: u16,
    /// How long the replica stays paused or dead, or the database down.
    pub duration: Millis,
}

/// Where and when a boundary is crossed, to match a fault's scope.
#[derive(Clone, Copy, Debug)]
pub struct Crossing {
    pub now: Millis,
    pub phase: u16,
    pub condominium: Option<u32>,
    pub endpoint: Option<Endpoint>,
    /// The world's endpoint called (world boundaries only).
    pub world: Option<WorldEndpoint>,
}

impl Crossing {
    /// A crossing that concerns a whole replica (its clock, its pauses):
    /// no condominium, no endpoint.
    pub fn replica_wide(now: Millis, phase: u16) -> Crossing {
        Crossing { now, phase, condominium: None, endpoint: None, world: None }
    }
}

/// The world's endpoints the stack calls: the PSP's and the IoT gateway's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorldEndpoint {
    GetCharge,
    ListCharges,
    Refund,
    StartCycle,
    FindCycles,
}

/// Which way a terminal's roll goes along one of its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    Request,
    Response,
    /// The answer to a duplicate of the request.
    TwinResponse,
    /// The customer's decision after a failure.
    Customer,
    /// The terminal's state before it starts this step (offline spells,
    /// late captures; attempt 0).
    Step,
}

/// Where along a purchase a fault is rolled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultSite {
    Terminal { endpoint: Endpoint, lane: Lane },
    World(WorldEndpoint),
}

/// What a fault roll is keyed on: stable ids that both engines name alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKey {
    /// The `attempt`-th call of a purchase at a site (counted by whoever
    /// makes or serves the call: the terminal, or the world).
    Call { purchase: u32, site: FaultSite, attempt: u32 },
    /// A step of one stack operation (replica crashes: the simulator only).
    Operation { serial: u64, step: u32 },
    /// A replica process (its clock).
    Replica { replica: u16, incarnation: u32 },
}

impl FaultKey {
    /// A terminal's roll on its `attempt`-th request at `endpoint`.
    pub fn at_terminal(purchase: u32, endpoint: Endpoint, lane: Lane, attempt: u8) -> FaultKey {
        FaultKey::Call { purchase, site: FaultSite::Terminal { endpoint, lane }, attempt: u32::from(attempt) }
    }

    pub fn ids(self) -> [u64; 3] {
        match self {
            FaultKey::Call { purchase, site, attempt } => roll_ids(purchase, site, attempt),
            FaultKey::Operation { serial, step } => [serial, u64::from(step), 0],
            FaultKey::Replica { replica, incarnation } => [u64::from(replica), u64::from(incarnation), 1],
        }
    }
}

/// The one place a call's fault roll ids are built. The layout keeps a
/// terminal's first 255 attempts where they always were; a larger attempt
/// spills into the lane word, so no two keys share ids.
pub fn roll_ids(purchase: u32, site: FaultSite, attempt: u32) -> [u64; 3] {
    let (code, lane) = match site {
        FaultSite::Terminal { endpoint, lane } => (endpoint as u64, lane as u64),
        FaultSite::World(endpoint) => (endpoint as u64, 4),
    };
    [u64::from(purchase), code << 8 | u64::from(attempt & 0xff), lane | u64::from(attempt >> 8) << 8]
}

/// The faults of a run, ready to roll.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    faults: Vec<FaultSpec>,
    rolls: Vec<KeyedRoll>,
    extent: KeyedRoll,
    /// Each fault's window `[from, until)`, shared by every clone of the
    /// plan: a live game day's facilitator arms a dormant fault by moving
    /// its window to now (the simulator never moves one).
    windows: Arc<[(AtomicU64, AtomicU64)]>,
}

impl FaultPlan {
    pub fn new(seed: u64, faults: Vec<FaultSpec>) -> Self {
        let rolls = BOUNDARIES.iter().map(|boundary| KeyedRoll::new(seed, &format!("faults:{boundary:?}"))).collect();
        let extent = KeyedRoll::new(seed, "faults:extent");
        let windows = faults.iter().map(|f| (AtomicU64::new(f.from), AtomicU64::new(f.until))).collect();
        FaultPlan { faults, rolls, extent, windows }
    }

    /// Arms the fault at `index` for `[from, until)` (a facilitator's choice).
    pub fn arm(&self, index: usize, from: Millis, until: Millis) {
        assert!(from < until, "an armed fault's window is not empty");
        let (start, end) = &self.windows[index];
        end.store(until, Ordering::Relaxed);
        start.store(from, Ordering::Relaxed);
    }

    /// How far a fault that fired on `key` goes, in `(0, bound]` (a late
    /// delivery's delay) — its own stream, so it changes no other roll.
    pub fn extent(&self, key: FaultKey, bound: Millis) -> Millis {
        let unit = self.extent.unit(key.ids());
        ((unit * bound as f64) as Millis).clamp(1, bound.max(1))
    }

    /// A signed offset in `[-bound, bound]` for `key` (a skewed clock).
    pub fn offset(&self, key: FaultKey, bound: Millis) -> i64 {
        let unit = self.extent.unit(key.ids());
        let bound = i64::try_from(bound).unwrap_or(i64::MAX / 2);
        ((unit * 2.0 - 1.0) * bound as f64) as i64
    }

    pub fn faults(&self) -> &[FaultSpec] {
        &self.faults
    }

    /// A replica process's clock: the fault that skews it (its index and
    /// key) and the offset in milliseconds, if `clock_skew` fires for this
    /// start of the replica.
    pub fn clock_skew(&self, crossing: &Crossing, replica: u16, incarnation: u32) -> Option<(u16, FaultKey, i64)> {
        let key = FaultKey::Replica { replica, incarnation };
        let (fault, spec) = self.roll(Boundary::Clock, crossing, key)?;
        Some((fault, key, self.offset(key, spec.duration)))
    }

    /// Rolls the boundary once for the crossing named by `key`; returns the
    /// index and spec of the fault that fires, if any.
    pub fn roll(&self, boundary: Boundary, crossing: &Crossing, key: FaultKey) -> Option<(u16, &FaultSpec)> {
        let mut candidates = self
            .faults
            .iter()
            .enumerate()
            .filter(|(index, fault)| fault.kind.boundary() == boundary && self.in_window(*index, crossing.now))
            .filter(|(_, fault)| in_scope(fault, crossing))
            .peekable();
        candidates.peek()?;
        let roll = self.rolls[boundary as usize].unit(key.ids());
        let mut threshold = 0.0;
        for (index, fault) in candidates {
            threshold += fault.probability;
            if roll < threshold {
                return Some((index as u16, fault));
            }
        }
        None
    }
}

impl FaultPlan {
    fn in_window(&self, index: usize, now: Millis) -> bool {
        let (from, until) = &self.windows[index];
        from.load(Ordering::Relaxed) <= now && now < until.load(Ordering::Relaxed)
    }
}

/// The fault's scope (its window is the plan's: [`FaultPlan::arm`] moves it).
fn in_scope(fault: &FaultSpec, crossing: &Crossing) -> bool {
    let in_phase = fault.phases.is_empty() || fault.phases.contains(&crossing.phase);
    let in_condominium = fault.condominiums.is_empty()
        || crossing.condominium.is_some_and(|condominium| fault.condominiums.contains(&condominium));
    let on_endpoint =
        fault.endpoints.is_empty() || crossing.endpoint.is_some_and(|endpoint| fault.endpoints.contains(&endpoint));
    in_phase && in_condominium && on_endpoint && fault.kind.applies_at(crossing.world)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(kind: FaultKind, probability: f64) -> FaultSpec {
        FaultSpec::everywhere(kind, probability, 0)
    }

    fn key(serial: u64) -> FaultKey {
        FaultKey::Operation { serial, step: 1 }
    }

    fn crossing(now: Millis) -> Crossing {
        Crossing { now, phase: 0, condominium: Some(3), endpoint: Some(Endpoint::Confirm), world: None }
    }

    #[test]
    fn rolls_follow_probabilities_and_scope() {
        let mut scoped = fault(FaultKind::ResponseLost, 0.5);
        scoped.endpoints = vec![Endpoint::Authorize];
        let plan = FaultPlan::new(1, vec![fault(FaultKind::RequestLost, 0.2), scoped]);
        let hits =
            (0..10_000u64).filter(|n| plan.roll(Boundary::TerminalToStack, &crossing(0), key(*n)).is_some()).count();
        assert!((1_700..2_300).contains(&hits), "{hits}");
        let none = (0..1_000u64).all(|n| plan.roll(Boundary::StackToTerminal, &crossing(0), key(n)).is_none());
        assert!(none, "a fault scoped to authorize never fires on confirm");
    }

    #[test]
    fn adding_a_fault_keeps_earlier_decisions() {
        let one = FaultPlan::new(9, vec![fault(FaultKind::PspTimeout, 0.1)]);
        let two = FaultPlan::new(9, vec![fault(FaultKind::PspTimeout, 0.1), fault(FaultKind::PspError, 0.1)]);
        for n in 0..2_000u64 {
            let first = one.roll(Boundary::StackToPsp, &crossing(0), key(n)).map(|(i, _)| i);
            let second = two.roll(Boundary::StackToPsp, &crossing(0), key(n)).map(|(i, _)| i);
            if first.is_some() {
                assert_eq!(first, second);
            }
        }
    }

    #[test]
    fn roll_ids_keep_terminal_layout_and_never_collide() {
        let site = FaultSite::Terminal { endpoint: Endpoint::Confirm, lane: Lane::Response };
        assert_eq!(roll_ids(7, site, 3), [7, (Endpoint::Confirm as u64) << 8 | 3, 1]);
        let refund = FaultSite::World(WorldEndpoint::Refund);
        let mut seen: Vec<[u64; 3]> = (0..600).map(|attempt| roll_ids(7, refund, attempt)).collect();
        seen.push(roll_ids(7, FaultSite::World(WorldEndpoint::GetCharge), 1));
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 601, "every attempt and site has its own ids");
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;
    use crate::contract::names;

    #[test]
    fn fault_names_are_the_scenarios_words() {
        names::assert_round_trip::<FaultKind>();
        names::assert_round_trip::<StackFaultAction>();
        assert_eq!(FaultKind::Gateway504.to_string(), "gateway_504");
    }
}
