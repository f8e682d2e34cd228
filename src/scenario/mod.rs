//! Scenarios: what a run is asked to do, read from TOML. Every mistake is
//! refused with `file:line:column` and what was expected — an unknown key, a
//! wrong type, a fraction above 1, a malformed UUID, an unknown fault kind —
//! before anything runs.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use uuid::Uuid;

use crate::contract::canary::{IOT_TIMEOUT_MS_MAX, PSP_TIMEOUT_MS_MAX, TTL_SECONDS_MAX};
use crate::contract::{CanaryMode, Endpoint, StackSettings, validate};
use crate::faults::{FaultKind, FaultSpec, StackFault, StackFaultAction};
use crate::time::{self, Millis};
use crate::world::Fleet;

pub mod inject;
pub mod live;
pub mod load;
pub mod phases;
mod runbook;

pub use crate::judge::Expectation;
use crate::world::fleet::{FixtureCondominium, FleetShape};
use phases::{Phase, Selection};
pub use runbook::{ControllerMode, Criteria, OnInconclusive, OperatorAction, OperatorStep, RollbackTargets};
use runbook::{RawController, RawCriteria, RawOperatorStep, RawTargets};

/// The longest duration a scenario may name.
const DURATION_MAX: Millis = 366 * 24 * time::HOUR;

/// More terminals (or machines) than this at one condominium is a typo, not a fleet.
const TERMINALS_PER_CONDOMINIUM_MAX: u32 = 1_000;
const MACHINES_PER_CONDOMINIUM_MAX: u32 = 1_000;

/// Machines, and terminals, one process simulates at most.
const FLEET_MAX: u64 = 5_000_000;

/// The longest round trip a scenario may name, in milliseconds.
const LATENCY_MAX: Millis = time::HOUR;

/// A validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub source: PathBuf,
    pub seed: u64,
    pub start_unix_seconds: u64,
    pub fleet: Fleet,
    pub traffic: Traffic,
    pub terminals: TerminalPolicy,
    pub stack: StackSpec,
    pub latency: Latency,
    pub phases: Vec<Phase>,
    pub faults: Vec<FaultSpec>,
    pub criteria: Criteria,
    /// The rollout's outcome the run must end with (default: complete).
    pub expect: Expectation,
    pub controller: ControllerMode,
    pub rollback_targets: RollbackTargets,
    /// The game-day operator's script, in time order.
    pub operator: Vec<OperatorStep>,
    /// Pauses, kills and database restarts at planned times, in time order.
    pub stack_faults: Vec<StackFault>,
    /// A game day's sealed script (`[[inject]]`), in time order; its faults
    /// are already in `faults`, after the scenario's own.
    pub inject: Vec<inject::Injection>,
    /// What a live game day's facilitator may set off when they choose
    /// (`[[inject]]` without `at`); its faults wait dormant in `faults`.
    pub armed: Vec<crate::incident::Armed>,
    /// After the last phase: no new purchases, sweeps go on, then the audit.
    pub drain: Millis,
    /// What `posim load` stops at and is gated on (`[load]`).
    pub load: load::LoadSpec,
    /// `posim live`'s own default time scale and whether a live suite skips it (`[live]`).
    pub live: live::LiveSpec,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Traffic {
    pub washes_per_machine_per_day: f64,
    pub amount_cents: (i64, i64),
    pub cycle_length: (Millis, Millis),
    pub decline_rate: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TerminalPolicy {
    pub request_timeout: Millis,
    pub max_attempts: u8,
    pub backoff: Millis,
    pub duplicate_delay_max: Millis,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StackSpec {
    pub replicas: u16,
    pub settings: StackSettings,
    pub psp_timeout: Millis,
    /// How long one replica takes to restart in a rolling deploy.
    pub restart: Millis,
    pub sweep_interval: Millis,
}

/// Round-trip latencies, uniform in `[low, high]` milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Latency {
    pub terminal_stack: (Millis, Millis),
    pub stack_psp: (Millis, Millis),
    pub stack_iot: (Millis, Millis),
    pub card: (Millis, Millis),
}

/// A refused scenario: where, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub file: String,
    /// 1-based line and column, when the mistake has a place.
    pub at: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

// ---- The file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    seed: Option<u64>,
    start: Option<Spanned<String>>,
    drain: Option<Spanned<String>>,
    #[serde(default)]
    expect: Expectation,
    fleet: Spanned<RawFleet>,
    #[serde(default)]
    traffic: RawTraffic,
    #[serde(default)]
    terminals: RawTerminals,
    #[serde(default)]
    stack: RawStack,
    #[serde(default)]
    latency: RawLatency,
    phases: Spanned<Vec<RawPhase>>,
    #[serde(default)]
    faults: Vec<RawFault>,
    #[serde(default)]
    criteria: RawCriteria,
    #[serde(default)]
    controller: RawController,
    #[serde(default)]
    rollback_targets: RawTargets,
    #[serde(default)]
    operator: Vec<RawOperatorStep>,
    #[serde(default)]
    stack_faults: Vec<RawStackFault>,
    #[serde(default)]
    inject: Vec<inject::RawInject>,
    #[serde(default)]
    load: load::RawLoad,
    #[serde(default)]
    live: live::RawLive,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    file: Option<Spanned<String>>,
    seed: Option<u64>,
    condominiums: Option<Spanned<u32>>,
    machines_per_condominium: Option<Spanned<u32>>,
    terminals_per_condominium: Option<Spanned<u32>>,
    naive_share: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    condominiums: Vec<FixtureCondominium>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTraffic {
    washes_per_machine_per_day: Spanned<f64>,
    amount_cents: Spanned<[i64; 2]>,
    cycle_length: Spanned<[String; 2]>,
    decline_rate: Spanned<f64>,
}

impl Default for RawTraffic {
    fn default() -> Self {
        RawTraffic {
            washes_per_machine_per_day: Spanned::new(0..0, 10.0),
            amount_cents: Spanned::new(0..0, [1200, 2200]),
            cycle_length: Spanned::new(0..0, ["35m".into(), "50m".into()]),
            decline_rate: Spanned::new(0..0, 0.02),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTerminals {
    request_timeout: Spanned<String>,
    max_attempts: Spanned<u8>,
    backoff: Spanned<String>,
    duplicate_delay_max: Spanned<String>,
}

impl Default for RawTerminals {
    fn default() -> Self {
        RawTerminals {
            request_timeout: Spanned::new(0..0, "10s".into()),
            max_attempts: Spanned::new(0..0, 4),
            backoff: Spanned::new(0..0, "2s".into()),
            duplicate_delay_max: Spanned::new(0..0, "20s".into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStack {
    replicas: Spanned<u16>,
    cycle_ttl: Spanned<String>,
    iot_timeout: Spanned<String>,
    psp_timeout: Spanned<String>,
    restart: Spanned<String>,
    sweep_interval: Spanned<String>,
}

impl Default for RawStack {
    fn default() -> Self {
        RawStack {
            replicas: Spanned::new(0..0, 3),
            cycle_ttl: Spanned::new(0..0, "15m".into()),
            iot_timeout: Spanned::new(0..0, "5s".into()),
            psp_timeout: Spanned::new(0..0, "3s".into()),
            restart: Spanned::new(0..0, "20s".into()),
            sweep_interval: Spanned::new(0..0, "5m".into()),
        }
    }
}

/// Latencies in milliseconds, `[low, high]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLatency {
    terminal_stack: Spanned<[u64; 2]>,
    stack_psp: Spanned<[u64; 2]>,
    stack_iot: Spanned<[u64; 2]>,
    card: Spanned<[u64; 2]>,
}

impl Default for RawLatency {
    fn default() -> Self {
        RawLatency {
            terminal_stack: Spanned::new(0..0, [20, 120]),
            stack_psp: Spanned::new(0..0, [40, 400]),
            stack_iot: Spanned::new(0..0, [150, 1500]),
            card: Spanned::new(0..0, [1500, 4000]),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: Spanned<String>,
    mode: CanaryMode,
    fraction: Option<Spanned<f64>>,
    allowlist: Option<Vec<Spanned<String>>>,
    blocklist: Option<Vec<Spanned<String>>>,
    hold: Spanned<String>,
    hold_max: Option<Spanned<String>>,
    bad_build_error_rate: Option<Spanned<f64>>,
    bad_build_confirm_failure_rate: Option<Spanned<f64>>,
    bad_build_execute_failure_rate: Option<Spanned<f64>>,
    bad_build_duplicate_rate: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStackFault {
    at: Spanned<String>,
    action: StackFaultAction,
    replica: Option<Spanned<u16>>,
    duration: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: FaultKind,
    probability: Spanned<f64>,
    from: Option<Spanned<String>>,
    until: Option<Spanned<String>>,
    #[serde(default)]
    phases: Vec<Spanned<String>>,
    #[serde(default)]
    condominiums: Vec<Spanned<String>>,
    #[serde(default)]
    endpoints: Vec<Spanned<String>>,
    duration: Option<Spanned<String>>,
}

// ---- Reading and validating ----

/// Turns byte spans into `file:line:column` errors.
pub(super) struct Source<'a> {
    file: String,
    text: &'a str,
}

impl Source<'_> {
    /// A mistake without a place of its own (a missing top-level key, an
    /// empty file) is placed at the start of the document it is missing from.
    pub(super) fn error(&self, span: Range<usize>, message: impl Into<String>) -> ScenarioError {
        let at = Some(line_column(self.text, span.start));
        ScenarioError { file: self.file.clone(), at, message: message.into() }
    }

    /// A duration of the scenario, bounded: a year is beyond any rehearsal,
    /// and the bound keeps every sum of durations far from overflowing.
    pub(super) fn duration(&self, value: &Spanned<String>) -> Result<Millis, ScenarioError> {
        self.duration_at(value.get_ref(), value.span())
    }

    /// A bounded duration written at `span` (one of an array's, say).
    fn duration_at(&self, text: &str, span: Range<usize>) -> Result<Millis, ScenarioError> {
        let duration = time::parse_duration(text).map_err(|message| self.error(span.clone(), message))?;
        if duration > DURATION_MAX {
            let message = format!("`{text}` is longer than a scenario allows ({})", time::human(DURATION_MAX));
            return Err(self.error(span, message));
        }
        Ok(duration)
    }

    /// A duration of at most `max`, for a value the stack's env bounds.
    fn duration_up_to(&self, value: &Spanned<String>, max: Millis, what: &str) -> Result<Millis, ScenarioError> {
        match self.duration(value)? {
            0 => Err(self.error(value.span(), format!("{what} must be above zero"))),
            duration if duration > max => {
                Err(self.error(value.span(), format!("{what} must be at most {}", time::human(max))))
            }
            duration => Ok(duration),
        }
    }

    pub(super) fn share(&self, value: &Spanned<f64>, what: &str) -> Result<f64, ScenarioError> {
        let share = *value.get_ref();
        if (0.0..=1.0).contains(&share) {
            Ok(share)
        } else {
            Err(self.error(value.span(), format!("{what} must be between 0 and 1, got {share}")))
        }
    }

    fn uuid(&self, value: &Spanned<String>) -> Result<Uuid, ScenarioError> {
        validate::uuid("a condominium", value.get_ref()).map_err(|message| self.error(value.span(), message))
    }

    fn range(&self, value: &Spanned<[u64; 2]>, what: &str) -> Result<(Millis, Millis), ScenarioError> {
        let [low, high] = *value.get_ref();
        if low <= high && high <= LATENCY_MAX {
            Ok((low, high))
        } else {
            Err(self
                .error(value.span(), format!("{what} must be [low, high] milliseconds, low ≤ high ≤ {LATENCY_MAX}")))
        }
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |tail| tail.chars().count()) + 1;
    (line, column)
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError {
            file: file.clone(),
            at: None,
            message: format!("cannot read: {error}"),
        })?;
        Scenario::parse(&text, &file, path.parent().unwrap_or(Path::new(".")))
    }

    /// Validates scenario text; `base` is where relative fixture paths start.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Scenario, ScenarioError> {
        let source = Source { file: file.to_string(), text };
        let raw: RawScenario = toml::from_str(text)
            .map_err(|error| source.error(error.span().unwrap_or(0..0), error.message().to_string()))?;
        let fleet = load_fleet(&source, raw.fleet.get_ref(), raw.fleet.span(), base)?;
        let stack = stack_spec(&source, &raw.stack)?;
        let phases = phases(&source, raw.phases, &fleet)?;
        let mut faults: Vec<FaultSpec> =
            raw.faults.iter().map(|fault| fault_spec(&source, fault, &phases, &fleet)).collect::<Result<_, _>>()?;
        let start = raw.start.as_ref().map_or(Ok(1_796_112_000), |start| {
            time::parse_instant(start.get_ref()).map_err(|message| source.error(start.span(), message))
        })?;
        let drain = match &raw.drain {
            Some(drain) => source.duration(drain)?,
            None => default_drain(&source, &stack, &raw.faults, &faults)?,
        };
        let end = phases::phase_starts(&phases).1.saturating_add(drain);
        let (inject, armed) = inject::injections(&source, &raw.inject, end, &mut faults)?;
        Ok(Scenario {
            name: raw.name,
            description: raw.description,
            source: PathBuf::from(file),
            seed: raw.seed.unwrap_or(1),
            start_unix_seconds: start,
            traffic: traffic(&source, &raw.traffic)?,
            terminals: terminals(&source, &raw.terminals)?,
            latency: latency(&source, &raw.latency)?,
            criteria: runbook::criteria(&source, &raw.criteria)?,
            expect: raw.expect,
            controller: runbook::controller(&raw.controller),
            rollback_targets: runbook::targets(&source, &raw.rollback_targets)?,
            operator: runbook::operator_steps(&source, &raw.operator)?,
            stack_faults: stack_faults(&source, &raw.stack_faults, &stack, end)?,
            inject,
            armed,
            fleet,
            stack,
            phases,
            faults,
            drain,
            load: load::load_spec(&source, &raw.load)?,
            live: live::live_spec(&source, &raw.live)?,
        })
    }

    /// The rollout's end: the sum of the phases' holds.
    pub fn horizon(&self) -> Millis {
        phases::phase_starts(&self.phases).1
    }

    /// Where a run ends: the rollout, then the drain (what progress and a
    /// live member's expected wall time are measured against).
    pub fn end(&self) -> Millis {
        self.horizon() + self.drain
    }
}

/// The TTL, a few sweeps and the latest late delivery; bounded as a
/// written drain is (a late fault of months would drain for months).
fn default_drain(
    source: &Source,
    stack: &StackSpec,
    raw: &[RawFault],
    faults: &[FaultSpec],
) -> Result<Millis, ScenarioError> {
    let late = raw.iter().zip(faults).filter(|(_, f)| f.kind.delays()).max_by_key(|(_, f)| f.duration);
    let sweeps = runbook::default_drain(stack.settings.cycle_ttl, stack.sweep_interval);
    let drain = sweeps.saturating_add(late.map_or(0, |(_, f)| f.duration));
    match late {
        Some((raw, _)) if drain > DURATION_MAX => {
            let span = raw.duration.as_ref().map_or(raw.probability.span(), |d| d.span());
            let message =
                format!("this delay makes the drain longer than a scenario allows ({})", time::human(DURATION_MAX));
            Err(source.error(span, message))
        }
        _ => Ok(drain),
    }
}

fn load_fleet(source: &Source, raw: &RawFleet, span: Range<usize>, base: &Path) -> Result<Fleet, ScenarioError> {
    if let Some(file) = &raw.file {
        let path = base.join(file.get_ref());
        let text = std::fs::read_to_string(&path).map_err(|error| {
            source.error(file.span(), format!("cannot read fleet file {}: {error}", path.display()))
        })?;
        let fixture = Source { file: path.display().to_string(), text: &text };
        let parsed: FleetFile = toml::from_str(&text)
            .map_err(|error| fixture.error(error.span().unwrap_or(0..0), error.message().to_string()))?;
        let mut entries = Vec::new();
        for entry in parsed.condominiums {
            let id = fixture.uuid(&entry.id)?;
            // Checked before anything is built: a huge count must not abort on allocation.
            if entry.machines > MACHINES_PER_CONDOMINIUM_MAX || entry.terminals > TERMINALS_PER_CONDOMINIUM_MAX {
                let limit = MACHINES_PER_CONDOMINIUM_MAX.min(TERMINALS_PER_CONDOMINIUM_MAX);
                let message = format!("condominium {id}: machines and terminals must be at most {limit} each");
                return Err(fixture.error(entry.id.span(), message));
            }
            if entries.iter().any(|(seen, _)| *seen == id) {
                return Err(fixture.error(entry.id.span(), format!("condominium {id} is listed twice")));
            }
            entries.push((id, entry));
        }
        if entries.is_empty() {
            return Err(fixture.error(0..0, "a fleet needs at least one condominium"));
        }
        return Ok(Fleet::from_fixture(&entries));
    }
    let count = |value: &Option<Spanned<u32>>, default: u32, what: &str| match value {
        Some(value) if *value.get_ref() == 0 => Err(source.error(value.span(), format!("{what} must be at least 1"))),
        Some(value) => Ok(*value.get_ref()),
        None => Ok(default),
    };
    let shape = FleetShape {
        seed: raw.seed.unwrap_or(1),
        condominiums: count(&raw.condominiums, 20, "condominiums")?,
        machines_per_condominium: count(&raw.machines_per_condominium, 4, "machines_per_condominium")?,
        terminals_per_condominium: count(&raw.terminals_per_condominium, 2, "terminals_per_condominium")?,
        naive_share: raw.naive_share.as_ref().map_or(Ok(0.0), |share| source.share(share, "naive_share"))?,
    };
    for (value, max, what) in [
        (&raw.machines_per_condominium, MACHINES_PER_CONDOMINIUM_MAX, "machines_per_condominium"),
        (&raw.terminals_per_condominium, TERMINALS_PER_CONDOMINIUM_MAX, "terminals_per_condominium"),
    ] {
        if let Some(value) = value
            && *value.get_ref() > max
        {
            return Err(source.error(value.span(), format!("{what} must be at most {max}")));
        }
    }
    let most = shape.machines_per_condominium.max(shape.terminals_per_condominium);
    if u64::from(shape.condominiums) * u64::from(most) > FLEET_MAX {
        return Err(source.error(span, "a fleet of more than 5,000,000 machines or terminals is beyond one process"));
    }
    Ok(Fleet::generate(&shape))
}

fn traffic(source: &Source, raw: &RawTraffic) -> Result<Traffic, ScenarioError> {
    let rate = *raw.washes_per_machine_per_day.get_ref();
    if !(0.0..=500.0).contains(&rate) {
        return Err(
            source.error(raw.washes_per_machine_per_day.span(), "washes_per_machine_per_day must be between 0 and 500")
        );
    }
    let [low, high] = *raw.amount_cents.get_ref();
    if validate::amount(low).is_err() || validate::amount(high).is_err() || low > high {
        return Err(source.error(raw.amount_cents.span(), "amount_cents must be [low, high] within 1..=100000000"));
    }
    let [shortest, longest] = raw.cycle_length.get_ref();
    let span = raw.cycle_length.span();
    let cycle_length = (source.duration_at(shortest, span.clone())?, source.duration_at(longest, span)?);
    if cycle_length.0 > cycle_length.1 || cycle_length.0 == 0 {
        return Err(source.error(raw.cycle_length.span(), "cycle_length must be [shortest, longest], both above zero"));
    }
    Ok(Traffic {
        washes_per_machine_per_day: rate,
        amount_cents: (low, high),
        cycle_length,
        decline_rate: source.share(&raw.decline_rate, "decline_rate")?,
    })
}

fn terminals(source: &Source, raw: &RawTerminals) -> Result<TerminalPolicy, ScenarioError> {
    let max_attempts = *raw.max_attempts.get_ref();
    if !(1..=20).contains(&max_attempts) {
        return Err(source.error(raw.max_attempts.span(), "max_attempts must be between 1 and 20"));
    }
    let request_timeout = source.duration(&raw.request_timeout)?;
    if request_timeout == 0 {
        return Err(source.error(raw.request_timeout.span(), "request_timeout must be above zero"));
    }
    Ok(TerminalPolicy {
        request_timeout,
        max_attempts,
        backoff: source.duration(&raw.backoff)?,
        duplicate_delay_max: source.duration(&raw.duplicate_delay_max)?,
    })
}

fn stack_spec(source: &Source, raw: &RawStack) -> Result<StackSpec, ScenarioError> {
    let replicas = *raw.replicas.get_ref();
    if !(1..=64).contains(&replicas) {
        return Err(source.error(raw.replicas.span(), "replicas must be between 1 and 64"));
    }
    let positive = |value: &Spanned<String>| match source.duration(value)? {
        0 => Err(source.error(value.span(), "must be above zero")),
        duration => Ok(duration),
    };
    // A live run deploys these as the stack's env: within its bounds (CONTRACT.md §2).
    let settings = StackSettings {
        cycle_ttl: source.duration_up_to(&raw.cycle_ttl, TTL_SECONDS_MAX * time::SECOND, "cycle_ttl")?,
        iot_timeout: source.duration_up_to(&raw.iot_timeout, IOT_TIMEOUT_MS_MAX, "iot_timeout")?,
    };
    Ok(StackSpec {
        replicas,
        settings,
        psp_timeout: source.duration_up_to(&raw.psp_timeout, PSP_TIMEOUT_MS_MAX, "psp_timeout")?,
        restart: positive(&raw.restart)?,
        // The default drain is three sweeps: a week apart at most keeps it bounded.
        sweep_interval: source.duration_up_to(&raw.sweep_interval, TTL_SECONDS_MAX * time::SECOND, "sweep_interval")?,
    })
}

fn latency(source: &Source, raw: &RawLatency) -> Result<Latency, ScenarioError> {
    Ok(Latency {
        terminal_stack: source.range(&raw.terminal_stack, "terminal_stack")?,
        stack_psp: source.range(&raw.stack_psp, "stack_psp")?,
        stack_iot: source.range(&raw.stack_iot, "stack_iot")?,
        card: source.range(&raw.card, "card")?,
    })
}

fn phases(source: &Source, raw: Spanned<Vec<RawPhase>>, fleet: &Fleet) -> Result<Vec<Phase>, ScenarioError> {
    let span = raw.span();
    let raw = raw.into_inner();
    if raw.is_empty() {
        return Err(source.error(span, "a scenario needs at least one [[phases]] entry"));
    }
    let mut phases: Vec<Phase> = Vec::new();
    for phase in raw {
        if phases.iter().any(|seen| seen.name == *phase.name.get_ref()) {
            return Err(source.error(phase.name.span(), format!("phase `{}` is named twice", phase.name.get_ref())));
        }
        phases.push(one_phase(source, phase, fleet)?);
    }
    Ok(phases)
}

fn one_phase(source: &Source, raw: RawPhase, fleet: &Fleet) -> Result<Phase, ScenarioError> {
    let hold = source.duration(&raw.hold)?;
    if hold == 0 {
        return Err(source.error(raw.hold.span(), "hold must be above zero"));
    }
    let list = match raw.mode {
        CanaryMode::Allowlist => &raw.allowlist,
        CanaryMode::Blocklist => &raw.blocklist,
        CanaryMode::Off => &None,
    };
    let wrong_list = match raw.mode {
        CanaryMode::Allowlist => raw.blocklist.as_ref().map(|_| "blocklist"),
        CanaryMode::Blocklist => raw.allowlist.as_ref().map(|_| "allowlist"),
        CanaryMode::Off => raw.allowlist.as_ref().or(raw.blocklist.as_ref()).map(|_| "a list"),
    };
    if let Some(wrong) = wrong_list {
        let message = format!("mode `{}` takes no {wrong}", raw.mode);
        return Err(source.error(raw.name.span(), message));
    }
    let selection = match (raw.mode, &raw.fraction, list) {
        (CanaryMode::Off, None, _) => Selection::Everyone,
        (CanaryMode::Off, Some(fraction), _) => {
            return Err(source.error(fraction.span(), "mode `off` takes no fraction"));
        }
        (_, Some(fraction), None) => Selection::Fraction(source.share(fraction, "fraction")?),
        (_, None, Some(ids)) => Selection::Listed(known_condominiums(source, ids, fleet)?),
        (_, Some(fraction), Some(_)) => {
            return Err(source.error(fraction.span(), "give either a fraction or a list of UUIDs, not both"));
        }
        (mode, None, None) => {
            let message = format!("mode `{mode}` needs a fraction or a list of UUIDs");
            return Err(source.error(raw.name.span(), message));
        }
    };
    let canary = phases::canary_for(fleet, raw.mode, &selection);
    let hold_max = match &raw.hold_max {
        Some(value) if source.duration(value)? < hold => {
            return Err(source.error(value.span(), "hold_max must be at least hold"));
        }
        Some(value) => source.duration(value)?,
        None => hold,
    };
    let bad_build_error_rate =
        raw.bad_build_error_rate.as_ref().map_or(Ok(0.0), |rate| source.share(rate, "bad_build_error_rate"))?;
    let rate = |value: &Option<Spanned<f64>>, what| value.as_ref().map_or(Ok(0.0), |rate| source.share(rate, what));
    let bad_build = phases::BadBuild {
        confirm_failure_rate: rate(&raw.bad_build_confirm_failure_rate, "bad_build_confirm_failure_rate")?,
        execute_failure_rate: rate(&raw.bad_build_execute_failure_rate, "bad_build_execute_failure_rate")?,
        duplicate_rate: rate(&raw.bad_build_duplicate_rate, "bad_build_duplicate_rate")?,
    };
    let name = raw.name.into_inner();
    Ok(Phase { name, mode: raw.mode, selection, hold, hold_max, canary, bad_build_error_rate, bad_build })
}

fn known_condominiums(source: &Source, ids: &[Spanned<String>], fleet: &Fleet) -> Result<Vec<Uuid>, ScenarioError> {
    ids.iter()
        .map(|id| {
            let uuid = source.uuid(id)?;
            match fleet.condominium_index(uuid) {
                Some(_) => Ok(uuid),
                None => Err(source.error(id.span(), format!("condominium {uuid} is not in the fleet"))),
            }
        })
        .collect()
}

fn stack_faults(
    source: &Source,
    raw: &[RawStackFault],
    stack: &StackSpec,
    end: Millis,
) -> Result<Vec<StackFault>, ScenarioError> {
    let mut faults = raw.iter().map(|fault| stack_fault(source, fault, stack)).collect::<Result<Vec<_>, _>>()?;
    if let Some((raw, late)) = raw.iter().zip(&faults).find(|(_, fault)| fault.at >= end) {
        let message = format!("at {} is past the run's end ({})", time::human(late.at), time::human(end));
        return Err(source.error(raw.at.span(), message));
    }
    faults.sort_by_key(|fault| fault.at);
    Ok(faults)
}

fn stack_fault(source: &Source, raw: &RawStackFault, stack: &StackSpec) -> Result<StackFault, ScenarioError> {
    let replica = match (&raw.replica, raw.action.targets_replica()) {
        (Some(replica), false) => return Err(source.error(replica.span(), "restart_database takes no `replica`")),
        (Some(replica), true) if *replica.get_ref() >= stack.replicas => {
            let message = format!(
                "replica {} does not exist: the stack has {} replicas, numbered from 0",
                replica.get_ref(),
                stack.replicas
            );
            return Err(source.error(replica.span(), message));
        }
        (replica, _) => replica.as_ref().map_or(0, |r| *r.get_ref()),
    };
    let duration = raw.duration.as_ref().map(|d| source.duration(d)).transpose()?;
    let duration = match (duration, raw.action) {
        (None | Some(0), StackFaultAction::PauseReplica | StackFaultAction::KillReplica) => {
            let span = raw.duration.as_ref().map_or(raw.at.span(), |d| d.span());
            return Err(source.error(span, format!("{} needs a `duration` above zero", raw.action)));
        }
        (duration, _) => duration.unwrap_or(0),
    };
    Ok(StackFault { at: source.duration(&raw.at)?, action: raw.action, replica, duration })
}

fn fault_spec(source: &Source, raw: &RawFault, phases: &[Phase], fleet: &Fleet) -> Result<FaultSpec, ScenarioError> {
    let probability = source.share(&raw.probability, "probability")?;
    let from = raw.from.as_ref().map_or(Ok(0), |from| source.duration(from))?;
    let until = raw.until.as_ref().map_or(Ok(Millis::MAX), |until| source.duration(until))?;
    if from >= until {
        let span = raw.until.as_ref().map_or(raw.probability.span(), |until| until.span());
        return Err(source.error(span, "`until` must come after `from`"));
    }
    let phase_indices = raw
        .phases
        .iter()
        .map(|name| match phases.iter().position(|phase| phase.name == *name.get_ref()) {
            Some(index) => Ok(index as u16),
            None => Err(source.error(name.span(), format!("no phase is named `{}`", name.get_ref()))),
        })
        .collect::<Result<_, _>>()?;
    let condominiums = known_condominiums(source, &raw.condominiums, fleet)?
        .into_iter()
        .filter_map(|id| fleet.condominium_index(id))
        .collect();
    let endpoints = raw
        .endpoints
        .iter()
        .map(|name| {
            Endpoint::parse(name.get_ref()).ok().filter(|e| Endpoint::TERMINAL.contains(e)).ok_or_else(|| {
                source.error(name.span(), "expected an endpoint: `authorize`, `confirm` or `execute-cycle`")
            })
        })
        .collect::<Result<_, _>>()?;
    let duration = match (&raw.duration, raw.kind) {
        (Some(duration), _) => source.duration(duration)?,
        (None, FaultKind::MachineOffline) => 10 * time::MINUTE,
        (None, _) => 30 * time::SECOND,
    };
    Ok(FaultSpec { kind: raw.kind, probability, from, until, phases: phase_indices, condominiums, endpoints, duration })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
[fleet]
condominiums = 4
[[phases]]
name = "5%"
mode = "allowlist"
fraction = 0.05
hold = "30m"
"#;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, "t.toml", Path::new("."))
    }

    #[test]
    fn a_minimal_scenario_gets_defaults() {
        let scenario = parse(MINIMAL).expect("valid");
        assert_eq!(scenario.phases[0].canary.allowlist.len(), 1);
        assert_eq!(scenario.horizon(), 30 * time::MINUTE);
        assert_eq!(scenario.stack.replicas, 3);
    }

    #[test]
    fn mistakes_have_a_place() {
        let error = parse(&MINIMAL.replace("fraction = 0.05", "fraction = 1.5")).unwrap_err();
        assert_eq!(error.at, Some((8, 12)), "{error}");
        assert!(error.message.contains("between 0 and 1"));
        let error = parse(&MINIMAL.replace("[fleet]", "colour = \"blue\"\n[fleet]")).unwrap_err();
        assert!(error.message.contains("unknown field"), "{error}");
        assert_eq!(error.at.map(|(line, _)| line), Some(3));
        let error = parse(&MINIMAL.replace("hold = \"30m\"", "hold = 30")).unwrap_err();
        assert!(error.to_string().starts_with("t.toml:9:8:"), "{error}");
    }
}
