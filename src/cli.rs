//! The command line: argument parsing in one place, one function per
//! subcommand, stable exit codes (0 pass, 1 a criterion or invariant failed,
//! 2 bad usage or scenario, 3 the harness could not run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

mod calibrate;
mod gameday;

use crate::live::containers::ContainerImages;
use crate::live::engine::LiveOptions;
use crate::live::launcher::StackChoice;
use crate::live::runs::{RUNS_DIR_VAR, Run};
use crate::progress::{Measure, Progress};
use crate::report;
use crate::rollout::precheck;
use crate::scenario::Scenario;
use crate::sim::{self, SimOptions};
use crate::stack::http::ServeConfig;
use crate::stack::{BugSet, StackBug};
use crate::suite::{self, SuiteConfig, summary::SuiteSummary};
use crate::swarm::artifact::{Artifact, ArtifactError, ScenarioSource};
use crate::swarm::shrink::{ShrinkError, Target};
use crate::swarm::{self, SwarmConfig};
use crate::verdict::{Recorded, judge, simulate};

pub const EXIT_PASS: u8 = 0;
pub const EXIT_FAIL: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_HARNESS: u8 = 3;

#[derive(Parser)]
#[command(name = "posim", version, about = "Rehearse the POS canary rollout: simulate, break, check.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a scenario on the embedded reference stack and judge it.
    Run(RunArgs),
    /// Run a scenario over many seeds, each with its own fault mix, on
    /// several threads; write an artifact for every seed that fails.
    Swarm(SwarmArgs),
    /// Gate quality: false rollbacks, false promotes and time to detect of
    /// the canary gate over many seeds, and settings that reach a target.
    Calibrate(calibrate::CalibrateArgs),
    /// Play a swarm artifact again; say whether the trace and violations are identical.
    Replay(ReplayArgs),
    /// Make a failing artifact smaller while its D-code keeps failing.
    Shrink(ShrinkArgs),
    /// Run a scenario against a real stack over HTTP (posim plays the PSP,
    /// the IoT gateway and the terminals).
    Live(LiveArgs),
    /// Load the stack (open model: purchases per second; closed: goose
    /// users) in steps; find its knee; gate on thresholds; audit D1–D8.
    Load(LoadArgs),
    /// Generator efficiency: the highest GET /health rate posim's load
    /// generator sustains beside wrk's, on one reference-stack replica.
    Generator(GeneratorArgs),
    /// Pre-check (§1): validate a proposed canary env and run a smoke scenario on it.
    Precheck(PrecheckArgs),
    /// The reference stack as a service.
    #[command(subcommand)]
    Stack(StackCommand),
    /// Container images for `posim live --stack-image`, built locally (no registry needed).
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Merge the results of `posim load --shard i/n` runs exactly
    /// (histograms added, counts summed, each shard's D1–D8 combined).
    Merge(MergeArgs),
    /// Put the rollback times and verdicts of several runs side by side
    /// (e.g. the same scenario with processes and with containers).
    Compare(CompareArgs),
    /// Remove what killed live runs left: their replicas' processes, their
    /// throwaway PostgreSQL and folders, their containers and networks
    /// (runs registered under POSIM_RUNS_DIR whose posim is gone).
    Clean(CleanArgs),
    /// Re-render a run's or a suite's views (summary.md, junit.xml, oplog.jsonl)
    /// from its summary.json or suite.json alone.
    Report(ReportArgs),
    /// A game day: the scenario live at a pace people follow, with people
    /// deciding from a console served on loopback (and a facilitator's page).
    Gameday(gameday::GamedayArgs),
    /// The runbook's actions against a running game day, from a shell.
    Op(gameday::OpArgs),
}

#[derive(Args)]
struct ReportArgs {
    /// A run's report folder (with summary.json) or a suite's (with suite.json).
    dir: PathBuf,
}

#[derive(Args)]
struct MergeArgs {
    /// The shards' report folders (every shard of one load, once each).
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Where the merged summary goes (default: reports/<scenario>-merged-<stamp>/).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct CleanArgs {
    /// Only say what would be removed.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Build the reference stack image (this posim binary, FROM scratch) and
    /// a PostgreSQL image from the machine's own PostgreSQL binaries.
    Build(ImagesArgs),
}

#[derive(Args)]
struct ImagesArgs {
    /// Rebuild even when an image of the same content is present.
    #[arg(long)]
    force: bool,
    /// The name to give the reference stack image.
    #[arg(long, default_value = crate::live::images::STACK_IMAGE)]
    stack_image: String,
    /// The name to give the PostgreSQL image.
    #[arg(long, default_value = crate::live::images::POSTGRES_IMAGE)]
    postgres_image: String,
}

#[derive(Args)]
struct CompareArgs {
    /// Report folders (each with a summary.json).
    #[arg(required = true, num_args = 2..)]
    reports: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum StackCommand {
    /// Serve the reference stack over HTTP on PostgreSQL, configured by the
    /// environment of CONTRACT.md (PORT, DATABASE_URL, PSP_BASE_URL,
    /// IOT_GATEWAY_URL, PAYMENTS_POS_CANARY_*, PAYMENTS_CYCLE_TTL_SECONDS,
    /// PAYMENTS_IOT_TIMEOUT_MS; POSIM_STACK_BUG=name[,name] for bug switches).
    Serve,
}

#[derive(Args)]
struct PrecheckArgs {
    /// The scenario whose fleet and traffic the smoke run uses.
    scenario: PathBuf,
    /// A file of NAME=VALUE lines (the env to deploy).
    #[arg(long)]
    env: Option<PathBuf>,
    /// One NAME=VALUE (repeatable; overrides --env).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    sets: Vec<String>,
    #[command(flatten)]
    stack: StackArgs,
}

#[derive(Args)]
struct StackArgs {
    /// Turn on a bug switch of the reference stack (repeatable).
    #[arg(long = "stack-bug", value_name = "NAME")]
    stack_bugs: Vec<StackBug>,
}

#[derive(Args)]
struct RunArgs {
    /// The scenario file (TOML); several files or folders (every `*.toml`
    /// in it, by name) make a suite: one verdict, a report folder each.
    #[arg(required = true, value_name = "SCENARIO")]
    scenarios: Vec<PathBuf>,
    /// The seed (of every scenario of a suite); defaults to the scenario's.
    #[arg(long)]
    seed: Option<u64>,
    /// Where to write the report (default: a new folder under reports/;
    /// a suite's: reports/suite-<stamp>/, a folder per scenario inside).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A suite's scenarios run at once (default: the machine's available parallelism).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=i64::from(crate::suite::MAX_JOBS)))]
    jobs: Option<u16>,
    /// Do not write trace.jsonl (large runs).
    #[arg(long)]
    no_trace: bool,
    #[command(flatten)]
    stack: StackArgs,
}

#[derive(Args)]
struct LiveArgs {
    /// The scenario file; several files or folders make a suite, as for
    /// `posim run` (a scenario with `[live] skip` is left out of a suite).
    #[arg(required = true, value_name = "SCENARIO")]
    scenarios: Vec<PathBuf>,
    #[arg(long)]
    seed: Option<u64>,
    /// Runbook time per wall time (60: a runbook minute a second); default:
    /// the scenario's `[live] time_scale`, else 60.
    #[arg(long)]
    time_scale: Option<f64>,
    #[arg(long)]
    out: Option<PathBuf>,
    /// A suite's scenarios run at once, each with a stack of its own (default 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=i64::from(crate::suite::MAX_JOBS)))]
    jobs: Option<u16>,
    #[arg(long)]
    no_trace: bool,
    #[command(flatten)]
    stack: LiveStackArgs,
}

#[derive(Args)]
struct LoadArgs {
    scenario: PathBuf,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    no_trace: bool,
    /// Closed model: goose users at the first step.
    #[arg(long)]
    users: Option<u32>,
    /// Closed model: users added at each step (default: --users).
    #[arg(long)]
    step_users: Option<u32>,
    /// Open model: purchases per second at the first step (the default model, 20/s).
    #[arg(long)]
    rate: Option<f64>,
    /// Open model: purchases per second added at each step (default: --rate).
    #[arg(long)]
    step_rate: Option<f64>,
    /// How many steps (default 1; 10 with --find-knee).
    #[arg(long)]
    steps: Option<u32>,
    /// How long each step lasts.
    #[arg(long, default_value = "30s")]
    step_duration: humantime::Duration,
    /// Stop at the first step past the knee (the scenario's `[load]` caps).
    #[arg(long)]
    find_knee: bool,
    /// A gate such as `p99<300ms`, `error_rate<1%`, `knee>3x` (repeatable).
    #[arg(long = "threshold", value_name = "GATE")]
    thresholds: Vec<crate::scenario::load::Threshold>,
    /// Play slice `i/n` of the plan (disjoint keys, machines and
    /// condominiums): n shards run together against one database
    /// (`--database-url`), then `posim merge` makes them one result.
    #[arg(long, value_name = "I/N")]
    shard: Option<crate::load::shard::Shard>,
    /// pgbench's clients for the database's ceiling (default: the stack's
    /// connections, replicas × its pool).
    #[arg(long, value_name = "N")]
    pgbench_clients: Option<u32>,
    /// How long pgbench runs (1 s–10 min).
    #[arg(long, default_value = "10s")]
    pgbench_duration: humantime::Duration,
    /// Skip the database's ceiling (pgbench).
    #[arg(long, conflicts_with_all = ["pgbench_clients", "pgbench_duration"])]
    no_pgbench: bool,
    #[command(flatten)]
    stack: LiveStackArgs,
}

#[derive(Args)]
struct GeneratorArgs {
    /// How long each generator runs (whole seconds, 1s to 5m).
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Concurrent connections of each generator (1 to 1024).
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Where to write generator.json and generator.md (default: reports/generator-<stamp>/).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Which stack a live or load run starts (as `posim live` takes it).
#[derive(Args)]
struct LiveStackArgs {
    /// Run the stack with `sh -c CMD`, one process per replica.
    #[arg(long, conflicts_with_all = ["stack_url", "stack_image"])]
    stack_cmd: Option<String>,
    /// Run the stack as containers of IMAGE with PostgreSQL in a container; needs Docker.
    #[arg(long, conflicts_with = "stack_url")]
    stack_image: Option<String>,
    #[arg(long, default_value = crate::live::images::POSTGRES_IMAGE, requires = "stack_image")]
    postgres_image: String,
    /// A stack already running, started with PSP_BASE_URL and IOT_GATEWAY_URL at http://127.0.0.1:WORLD_PORT.
    #[arg(long, requires = "world_port")]
    stack_url: Option<String>,
    #[arg(long)]
    world_port: Option<u16>,
    /// The embedded reference stack's replicas use this PostgreSQL instead of
    /// a throwaway one (shards share one); posim never stops it.
    #[arg(long, value_name = "URL", conflicts_with_all = ["stack_cmd", "stack_url", "stack_image"])]
    database_url: Option<DatabaseUrl>,
    /// Bug switches of the embedded reference stack (POSIM_STACK_BUG).
    #[arg(long = "stack-bug", value_name = "NAME")]
    stack_bugs: Vec<StackBug>,
}

impl LiveStackArgs {
    fn choice(&self) -> StackChoice {
        let bugs: Vec<String> = self.stack_bugs.iter().map(StackBug::to_string).collect();
        match (&self.stack_cmd, &self.stack_url, &self.stack_image) {
            (Some(command), _, _) => StackChoice::Command(command.clone()),
            (None, Some(url), _) => StackChoice::Url(url.clone()),
            (None, None, Some(image)) => {
                let images = ContainerImages { stack: image.clone(), postgres: self.postgres_image.clone() };
                StackChoice::Image { images, bugs }
            }
            (None, None, None) => {
                StackChoice::Embedded { bugs, database: self.database_url.as_ref().map(|url| url.0.clone()) }
            }
        }
    }
}

/// A PostgreSQL URL, checked when given; never shown with its password.
#[derive(Clone)]
struct DatabaseUrl(String);

impl std::str::FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.parse::<tokio_postgres::Config>() {
            Ok(_) => Ok(DatabaseUrl(text.to_string())),
            Err(error) => Err(format!("{}: {error}", crate::contract::canary::redacted(text))),
        }
    }
}

#[derive(Args)]
struct SwarmArgs {
    scenario: PathBuf,
    /// How many seeds to run.
    #[arg(long, default_value_t = 50)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Threads (default: the machine's available parallelism).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run the scenario's faults as written on every seed (no per-seed fault
    /// mix). The default for an incident rehearsal (`expect` other than
    /// `complete`), whose incident must fire.
    #[arg(long, conflicts_with = "mix")]
    no_mix: bool,
    /// Draw a fault mix per seed even for an incident rehearsal.
    #[arg(long)]
    mix: bool,
    /// Where failing seeds' artifacts go (default: reports/swarm-<scenario>-<stamp>/).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    stack: StackArgs,
}

#[derive(Args)]
struct ReplayArgs {
    /// An artifact written by `posim swarm` or `posim shrink`.
    file: PathBuf,
    /// Replay with these bug switches instead of the artifact's (repeatable).
    #[arg(long = "stack-bug", value_name = "NAME")]
    stack_bugs: Vec<StackBug>,
}

#[derive(Args)]
struct ShrinkArgs {
    /// An artifact written by `posim swarm` (or already shrunk).
    file: PathBuf,
    /// Where to write the shrunk artifact (default: FILE with `.shrunk.json`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// At most this many runs, the replay of the artifact included.
    #[arg(long, default_value_t = 200)]
    max_runs: u32,
    /// The D-code to keep failing (default: the artifact's first).
    #[arg(long)]
    code: Option<String>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => run(args),
        Command::Swarm(args) => swarm(args).unwrap_or_else(|code| code),
        Command::Calibrate(args) => calibrate::calibrate(args).unwrap_or_else(|code| code),
        Command::Replay(args) => replay(args).unwrap_or_else(|code| code),
        Command::Shrink(args) => shrink(args).unwrap_or_else(|code| code),
        Command::Live(args) => live(args).unwrap_or_else(|code| code),
        Command::Load(args) => load_run(args).unwrap_or_else(|code| code),
        Command::Generator(args) => generator(args).unwrap_or_else(|code| code),
        Command::Precheck(args) => precheck(args),
        Command::Stack(StackCommand::Serve) => stack_serve(),
        Command::Images(ImagesCommand::Build(args)) => images_build(args),
        Command::Merge(args) => merge(args),
        Command::Compare(args) => compare(args),
        Command::Clean(args) => clean(args),
        Command::Report(args) => report_again(&args.dir),
        Command::Gameday(args) => gameday::gameday(args).unwrap_or_else(|code| code),
        Command::Op(args) => gameday::op(args).unwrap_or_else(|code| code),
    };
    ExitCode::from(code)
}

fn load(path: &Path) -> Result<Scenario, u8> {
    Scenario::load(path).map_err(usage)
}

fn run(args: RunArgs) -> u8 {
    match args.scenarios.as_slice() {
        [file] if !file.is_dir() => run_one(&file.clone(), args),
        _ => run_suite(args).unwrap_or_else(|code| code),
    }
}

fn run_one(file: &Path, args: RunArgs) -> u8 {
    let scenario = match load(file) {
        Ok(scenario) => scenario,
        Err(code) => return code,
    };
    let seed = args.seed.unwrap_or(scenario.seed);
    let bugs = &args.stack.stack_bugs;
    println!(
        "posim run · scenario {} ({}) · seed {seed} · stack bugs: {}",
        scenario.name,
        file.display(),
        bug_label(bugs)
    );
    let started = Instant::now();
    let label = format!("simulating {}", file_name(file));
    let progress = Progress::new(&label, Measure::Time("simulated time"), &[scenario.end()]);
    let options = SimOptions { seed, bugs: BugSet::new(bugs) };
    let outcome = sim::run_observed(&scenario, options, &mut |now| progress.set(0, now));
    progress.finish();
    let simulation_wall = started.elapsed().as_secs_f64();
    let judged = judge(&scenario, seed, bugs, Recorded::simulated(outcome));
    let wall = started.elapsed().as_secs_f64();
    print!("{}", report::console(&judged.report));
    println!("{}", speed_line(judged.report.stack_requests, judged.report.simulated_ms, simulation_wall, wall));
    let dir = args.out.unwrap_or_else(|| default_dir(&scenario.name, seed));
    if let Err(error) = report::write(&dir, &judged.report, &judged.history, !args.no_trace) {
        eprintln!("error: cannot write the report to {}: {error}", dir.display());
        return EXIT_HARNESS;
    }
    println!("report: {}", dir.display());
    judged.report.verdict.exit_code()
}

fn report_again(dir: &Path) -> u8 {
    match suite::summary::rerender_folder(dir) {
        Ok(line) => println!("{line}"),
        Err(error @ report::views::Rerender::Unreadable(_)) => return usage(error),
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_HARNESS;
        }
    }
    EXIT_PASS
}

/// Several scenarios simulated as one gate (see [`suite`]).
fn run_suite(args: RunArgs) -> Exit {
    let members = suite_members(&args.scenarios)?;
    let available = || std::thread::available_parallelism().map_or(1, |jobs| jobs.get());
    let jobs = args.jobs.map_or_else(available, usize::from);
    let config = suite_config("posim run", (args.seed, args.stack.stack_bugs), !args.no_trace, jobs, args.out);
    gate(&members, &config, &suite::Simulated { config: &config })
}

/// The suite's members, all loaded and checked before any runs (exit 2 naming every problem).
fn suite_members(inputs: &[PathBuf]) -> Result<Vec<suite::Member>, u8> {
    let refused = |refused: suite::inputs::Refused| {
        for line in &refused.lines {
            eprintln!("error: {line}");
        }
        eprintln!("error: the suite is refused ({} problem(s)); nothing ran", refused.lines.len());
        EXIT_USAGE
    };
    let files = suite::inputs::scenario_files(inputs).map_err(refused)?;
    suite::inputs::load_all(&files).map_err(refused)
}

fn suite_config(
    command: &'static str,
    (seed, bugs): (Option<u64>, Vec<StackBug>),
    trace: bool,
    jobs: usize,
    out: Option<PathBuf>,
) -> SuiteConfig {
    SuiteConfig {
        seed,
        bugs,
        trace,
        jobs: jobs.min(usize::from(suite::MAX_JOBS)),
        dir: out.unwrap_or_else(|| PathBuf::from("reports").join(format!("suite-{}", stamp()))),
        command,
    }
}

/// Runs the suite and writes its summaries: one verdict for all (exit 1 if any fails).
fn gate<R: suite::Runner>(members: &[suite::Member], config: &SuiteConfig, runner: &R) -> Exit
where
    R::Error: std::fmt::Display,
{
    println!("{}", suite::summary::header(members, config));
    let ran = suite::run(members, config, runner).map_err(|error| {
        eprintln!("error: {error}");
        EXIT_HARNESS
    })?;
    let summary = SuiteSummary::of(&ran, config);
    if let Err(error) = suite::summary::write(&config.dir, &summary, &ran.labelled()) {
        eprintln!("error: cannot write the suite's summary to {}: {error}", config.dir.display());
        return Err(EXIT_HARNESS);
    }
    print!("{}", suite::summary::console(&summary));
    println!("report: {}", config.dir.display());
    Ok(ran.verdict().exit_code())
}

/// `rollout.toml`: a file's name as progress lines show it.
fn file_name(file: &Path) -> String {
    file.file_name().map_or_else(|| file.display().to_string(), |name| name.to_string_lossy().into_owned())
}

/// How fast the simulator ran: the simulation alone, and with the checks.
fn speed_line(requests: u64, simulated: crate::time::Millis, simulation_wall: f64, wall: f64) -> String {
    let (simulation_wall, wall) = (simulation_wall.max(1e-9), wall.max(1e-9));
    format!(
        "speed: {requests} stack requests, {} simulated; simulation {simulation_wall:.3} s = {:.0} requests/s, \
         {:.0}× real time; with checks and report {wall:.3} s = {:.0} requests/s",
        crate::time::human(simulated),
        requests as f64 / simulation_wall,
        simulated as f64 / 1000.0 / simulation_wall,
        requests as f64 / wall,
    )
}

fn default_dir(scenario: &str, seed: u64) -> PathBuf {
    PathBuf::from("reports").join(format!("{scenario}-seed{seed}-{}", stamp()))
}

/// Now, as letters and digits only (for folder names).
fn stamp() -> String {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    stamp.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// A subcommand's exit code; `Err` once the reason was said on stderr.
type Exit = Result<u8, u8>;

/// Says `error` on stderr: exit 2 (bad usage, a bad scenario or artifact).
fn usage(error: impl std::fmt::Display) -> u8 {
    eprintln!("error: {error}");
    EXIT_USAGE
}

/// Says `error` on stderr: exit 3 if the harness failed, else 2.
fn artifact_error(error: ArtifactError) -> u8 {
    eprintln!("error: {error}");
    if error.is_harness() { EXIT_HARNESS } else { EXIT_USAGE }
}

fn swarm(args: SwarmArgs) -> Exit {
    let (source, scenario) = ScenarioSource::read(&args.scenario).map_err(usage)?;
    let config = swarm_config(&args, &scenario).map_err(usage)?;
    let stamped = || PathBuf::from("reports").join(format!("swarm-{}-{}", scenario.name, stamp()));
    let dir = args.out.clone().unwrap_or_else(stamped);
    println!("{}", swarm_header(&scenario.name, &config));
    let started = Instant::now();
    let swarmed = swarm::run_and_record(&scenario, &source, &config, &dir).map_err(usage)?;
    print!("{}", swarmed.tally.summary(started.elapsed().as_secs_f64(), config.threads()));
    if let Some(error) = swarmed.unwritten {
        return Err(artifact_error(error));
    }
    if swarmed.tally.failed.is_empty() {
        return Ok(EXIT_PASS);
    }
    println!("artifacts: {} (replay one with `posim replay FILE`, shrink it with `posim shrink FILE`)", dir.display());
    Ok(EXIT_FAIL)
}

fn swarm_header(scenario: &str, config: &SwarmConfig) -> String {
    let mix = if config.mix { "a fault mix per seed" } else { "the scenario's faults as written" };
    format!(
        "posim swarm · scenario {scenario} · seeds {}..={} · {} threads · {mix} · stack bugs: {}",
        config.first,
        config.first + (config.seeds - 1),
        config.threads(),
        bug_label(&config.bugs)
    )
}

fn swarm_config(args: &SwarmArgs, scenario: &Scenario) -> Result<SwarmConfig, String> {
    if args.seeds == 0 {
        return Err("--seeds must be at least 1".to_string());
    }
    if args.first.checked_add(args.seeds - 1).is_none() {
        return Err("--first + --seeds is past the last seed (2^64 - 1)".to_string());
    }
    let jobs = match args.jobs {
        Some(0) => return Err("--jobs must be at least 1".to_string()),
        Some(jobs) => jobs,
        None => std::thread::available_parallelism().map_or(1, |jobs| jobs.get()),
    };
    let bugs = args.stack.stack_bugs.clone();
    // An incident rehearsal needs its incident: a mix could turn it off.
    let rehearsal = scenario.expect != crate::judge::outcome::Expectation::Complete;
    let mix = args.mix || (!args.no_mix && !rehearsal);
    Ok(SwarmConfig { first: args.first, seeds: args.seeds, jobs, bugs, mix })
}

fn bug_label(bugs: &[StackBug]) -> String {
    if bugs.is_empty() {
        return "none".to_string();
    }
    bugs.iter().map(|b| b.into()).collect::<Vec<&str>>().join(", ")
}

fn replay(args: ReplayArgs) -> Exit {
    let artifact = Artifact::read(&args.file).map_err(usage)?;
    let bugs = if args.stack_bugs.is_empty() { artifact.stack_bugs.clone() } else { args.stack_bugs };
    let (scenario, seed) = (&artifact.scenario, artifact.seed);
    println!("posim replay · scenario {scenario} · seed {seed} · stack bugs: {}", bug_label(&bugs));
    if artifact.posim_version != env!("CARGO_PKG_VERSION") {
        println!("note: written by posim {}, replayed by {}", artifact.posim_version, env!("CARGO_PKG_VERSION"));
    }
    let now = artifact.rerun(&bugs).map_err(artifact_error)?;
    println!("{}", now.outcome);
    let differences = artifact.result.differences(&now);
    if differences.is_empty() {
        println!("reproduced: same trace hash {} and violations {}", now.trace_hash, now.violations_text());
        return Ok(EXIT_PASS);
    }
    println!("NOT reproduced:");
    for difference in differences {
        println!("  {difference}");
    }
    Ok(EXIT_FAIL)
}

fn shrink(args: ShrinkArgs) -> Exit {
    let artifact = Artifact::read(&args.file).map_err(usage)?;
    if args.max_runs == 0 {
        return Err(usage("--max-runs must be at least 1"));
    }
    let target = Target::of(&artifact, args.code.as_deref()).map_err(usage)?;
    let (scenario, seed, code) = (&artifact.scenario, artifact.seed, target.name());
    println!("posim shrink · scenario {scenario} · seed {seed} · keeping {code} failing");
    let shrunk =
        swarm::shrink::shrink(&artifact, target, args.max_runs, &mut |line| println!("  {line}")).map_err(|error| {
            match error {
                ShrinkError::Artifact(error) => artifact_error(error),
                not_reproduced => {
                    eprintln!("error: {not_reproduced}");
                    EXIT_FAIL
                }
            }
        })?;
    let out = args.out.unwrap_or_else(|| shrunk_path(&args.file));
    shrunk.artifact.write(&out).map_err(artifact_error)?;
    println!("before: {}", shrunk.before.line());
    println!("after:  {}", shrunk.artifact.result.sizes.line());
    println!("{} runs; shrunk artifact: {}", shrunk.runs, out.display());
    Ok(EXIT_PASS)
}

/// `dir/seed-3.json` → `dir/seed-3.shrunk.json`.
fn shrunk_path(file: &Path) -> PathBuf {
    let stem = file.file_stem().map_or_else(|| "artifact".into(), |stem| stem.to_string_lossy());
    file.with_file_name(format!("{stem}.shrunk.json"))
}

/// The env to pre-check: the file, then the `--set`s; without either, phase 1's.
fn proposed_env(args: &PrecheckArgs, scenario: &Scenario) -> Result<BTreeMap<String, String>, String> {
    let mut env = match &args.env {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|error| format!("{}: cannot read: {error}", path.display()))?;
            precheck::parse_env_file(&text).map_err(|error| format!("{}: {error}", path.display()))?
        }
        None if args.sets.is_empty() => {
            scenario.phases[0].canary.env().into_iter().map(|(name, value)| (name.to_string(), value)).collect()
        }
        None => BTreeMap::new(),
    };
    for set in &args.sets {
        let (name, value) = set.split_once('=').ok_or_else(|| format!("--set {set}: expected NAME=VALUE"))?;
        env.insert(name.to_string(), value.to_string());
    }
    Ok(env)
}

fn precheck(args: PrecheckArgs) -> u8 {
    let scenario = match load(&args.scenario) {
        Ok(scenario) => scenario,
        Err(code) => return code,
    };
    let checked = proposed_env(&args, &scenario).and_then(|env| precheck::proposed_config(&env, &scenario.fleet));
    let (canary, warnings) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            eprintln!("error: pre-check refused the env: {error}");
            return EXIT_USAGE;
        }
    };
    println!("env: OK — {}", canary.summary());
    for line in canary.env() {
        println!("  {}={}", line.0, line.1);
    }
    for warning in &warnings {
        println!("warning: {warning}");
    }
    let smoke = precheck::smoke_scenario(&scenario, canary);
    let judged = simulate(&smoke, scenario.seed, &args.stack.stack_bugs);
    let report = &judged.report;
    let washed: u64 = report.phases.iter().map(|phase| phase.washed).sum();
    let passed = report.passed() && (washed > 0 || warnings.iter().any(|w| w.contains("admits no")));
    println!(
        "smoke: {} — {} of {} purchases washed over {}; invariants {}",
        if passed { "OK" } else { "FAILED" },
        washed,
        report.purchases,
        crate::time::human(precheck::SMOKE_HOLD),
        if report.violation_counts.is_empty() {
            "hold".to_string()
        } else {
            format!("broken: {:?}", report.violation_counts)
        }
    );
    if passed { EXIT_PASS } else { EXIT_FAIL }
}

fn stack_serve() -> u8 {
    let config = match ServeConfig::from_env(&|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("posim stack: refusing to start: {error}");
            return EXIT_USAGE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("posim stack: cannot start the runtime: {error}");
            return EXIT_HARNESS;
        }
    };
    match runtime.block_on(crate::stack::http::serve(config)) {
        Ok(()) => EXIT_PASS,
        Err(error) => {
            eprintln!("posim stack: {error:#}");
            EXIT_HARNESS
        }
    }
}

fn live(args: LiveArgs) -> Exit {
    if let Some(scale) = args.time_scale.filter(|scale| !suite::live::TIME_SCALES.contains(scale)) {
        return Err(usage(format!("--time-scale must be between 1 and 10000, got {scale}")));
    }
    let single = matches!(args.scenarios.as_slice(), [file] if !file.is_dir());
    let jobs = usize::from(args.jobs.unwrap_or(1));
    if !single && jobs > 1 && (args.stack.stack_url.is_some() || args.stack.world_port.is_some()) {
        return Err(usage("a suite with --jobs above 1 cannot share one --stack-url or --world-port"));
    }
    let members = suite_members(&args.scenarios)?;
    let (bugs, trace) = (args.stack.stack_bugs.clone(), !args.no_trace);
    let config = suite_config("posim live", (args.seed, bugs), trace, jobs, args.out.clone());
    let (stack, world_port) = (args.stack.choice(), args.stack.world_port.unwrap_or(0));
    let runner = suite::live::Live {
        config: &config,
        time_scale: args.time_scale,
        stack,
        world_port,
        announce: single,
        desk: None,
    };
    match members.as_slice() {
        [member] if single => live_one(member, &runner, args.out, "live"),
        _ => gate(&suite::live::runnable(members), &config, &runner),
    }
}

/// One scenario live, as a suite's member is run, with its report on the
/// console; `what` (`live`, `gameday`) names its progress and report folder.
fn live_one(member: &suite::Member, runner: &suite::live::Live<'_>, out: Option<PathBuf>, what: &str) -> Exit {
    use suite::Runner as _;
    let seed = runner.config.seed.unwrap_or(member.scenario.seed);
    let dir = out.unwrap_or_else(|| default_dir(&format!("{}-{what}", member.scenario.name), seed));
    let label = format!("{what} {}", member.file_name());
    let progress = Progress::new(&label, Measure::Time("runbook time"), &[member.scenario.end()]);
    let ran = runner.run(member, dir, &|at| progress.set(0, at));
    progress.finish();
    let ran = ran.map_err(|error| {
        eprintln!("error: {error}");
        EXIT_HARNESS
    })?;
    print!("{}", report::console(&ran.report));
    println!("report: {}", ran.dir.display());
    Ok(ran.report.verdict.exit_code())
}

fn load_run(args: LoadArgs) -> Exit {
    let scenario = crate::load::run::load_scenario(&load(&args.scenario)?);
    let asked = crate::load::shape::Asked {
        users: args.users,
        step_users: args.step_users,
        rate: args.rate,
        step_rate: args.step_rate,
        steps: args.steps,
        step_seconds: args.step_duration.as_secs(),
        find_knee: args.find_knee,
        shard: args.shard.unwrap_or_default(),
    };
    let shape = crate::load::shape::Shape::from_asked(asked).map_err(usage)?;
    let pgbench = crate::load::pgbench::Asked::new(args.pgbench_clients, *args.pgbench_duration).map_err(usage)?;
    let pgbench = (!args.no_pgbench).then_some(pgbench);
    let seed = args.seed.unwrap_or(scenario.seed);
    if crate::load::customer::Sites::of(&scenario, shape.shard).admitted.is_empty() {
        return Err(usage(format!(
            "--shard {}: the shard owns no condominium the scenario's last phase admits (fewer shards, or a larger fleet)",
            shape.shard
        )));
    }
    let dir = args.out.clone().unwrap_or_else(|| default_dir(&format!("{}-load", scenario.name), seed));
    let shard = if shape.shard.is_whole() { String::new() } else { format!(" · shard {}", shape.shard) };
    println!(
        "posim load · scenario {} · seed {seed} · {} model · {} step(s) of {} s{}{shard}",
        scenario.name,
        shape.model_name(),
        shape.steps,
        shape.step.as_secs(),
        if shape.find_knee { " · finding the knee" } else { "" }
    );
    let run = Run::register().map_err(|error| {
        eprintln!("error: cannot register the run (set {RUNS_DIR_VAR} to a writable folder): {error}");
        EXIT_HARNESS
    })?;
    let options = LiveOptions {
        seed,
        time_scale: 1.0,
        stack: args.stack.choice(),
        logs: dir.join("stack-logs"),
        report_dir: dir.clone(),
        trace: !args.no_trace,
        world_port: args.stack.world_port.unwrap_or(0),
        run: Arc::clone(&run),
        namespace: (!shape.shard.is_whole()).then(|| format!("s{}", shape.shard.index)),
        reached: Arc::default(),
        desk: None,
    };
    let work = crate::load::run::run(&scenario, options, shape, &args.thresholds, pgbench);
    let outcome = until_stopped("posim load", &run, work)?;
    let mut judged = judge(&scenario, seed, &args.stack.stack_bugs, outcome.recorded);
    // A load run has no rollout: it is judged on D1–D8 and its thresholds.
    let breached: Vec<String> =
        outcome.section.breached().map(|t| format!("{} (actual {})", t.threshold, t.actual)).collect();
    let knee_sought = shape.find_knee
        || args
            .thresholds
            .iter()
            .chain(&scenario.load.thresholds)
            .any(|t| matches!(t, crate::scenario::load::Threshold::KneeAbove { .. }));
    judged.report.verdict = outcome.section.verdict(judged.report.violation_counts.is_empty(), knee_sought);
    // The rollout's KPI criteria do not apply (double taps are load, not confirm failures).
    judged.report.failed_criteria.clear();
    judged
        .report
        .notes
        .push("a load run is judged on the invariants (D1–D8) and its thresholds, not on a rollout".into());
    judged.report.load = Some(outcome.section);
    print!("{}", report::console(&judged.report));
    let with_trace = !args.no_trace && !outcome.trace_written;
    let steps = serde_json::to_vec(&outcome.steps).map_err(std::io::Error::other);
    let written = report::write(&dir, &judged.report, &judged.history, with_trace)
        .and_then(|()| std::fs::write(dir.join(crate::load::merge::STEPS_FILE), steps?));
    if let Err(error) = written {
        eprintln!("error: cannot write the report to {}: {error}", dir.display());
        return Err(EXIT_HARNESS);
    }
    println!("report: {}", dir.display());
    for threshold in &breached {
        println!("threshold breached: {threshold}");
    }
    Ok(judged.report.verdict.exit_code())
}

fn generator(args: GeneratorArgs) -> Exit {
    use crate::load::generator::{self, Asked};
    let asked = Asked::check(*args.duration, args.connections).map_err(usage)?;
    let wrk = generator::find_wrk().ok_or_else(|| usage("wrk is not installed (Debian: apt-get install wrk)"))?;
    let dir = args.out.unwrap_or_else(|| PathBuf::from("reports").join(format!("generator-{}", stamp())));
    let run = Run::register().map_err(|error| {
        eprintln!("error: cannot register the run (set {RUNS_DIR_VAR} to a writable folder): {error}");
        EXIT_HARNESS
    })?;
    let work = generator::run(asked, wrk, dir.join("stack-logs"), Arc::clone(&run));
    let report = until_stopped("posim generator", &run, work)?;
    print!("{}", report.console());
    if let Err(error) = report.write(&dir) {
        eprintln!("error: cannot write the report to {}: {error}", dir.display());
        return Err(EXIT_HARNESS);
    }
    println!("report: {}", dir.display());
    Ok(EXIT_PASS)
}

/// Runs a live command's `work` on a multi-threaded runtime until it ends
/// or Ctrl-C / SIGTERM; then what the run started (replicas, database,
/// containers) is removed and it exits 3, as when the work fails.
fn until_stopped<T, E: std::fmt::Display>(
    command: &str,
    run: &Arc<Run>,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, u8> {
    match crate::live::interrupt::until_stopped(runtime()?, run, command, work) {
        Some(Ok(outcome)) => Ok(outcome),
        Some(Err(error)) => {
            eprintln!("error: the harness could not run: {error}");
            Err(EXIT_HARNESS)
        }
        None => {
            eprintln!("interrupted: the stack and its database were stopped");
            Err(EXIT_HARNESS)
        }
    }
}

/// A multi-threaded runtime (containers' clean-up needs one), or exit 3.
fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|error| {
        eprintln!("error: cannot start the runtime: {error}");
        EXIT_HARNESS
    })
}

fn images_build(args: ImagesArgs) -> u8 {
    use crate::live::images;
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let built = runtime.block_on(async {
        let docker = images::docker().await?;
        println!("building {} (this posim binary, FROM scratch)…", args.stack_image);
        let stack = images::build_stack_image(&docker, &args.stack_image, args.force).await?;
        println!("building {} (this machine's PostgreSQL, FROM scratch)…", args.postgres_image);
        let postgres = images::build_postgres_image(&docker, &args.postgres_image, args.force).await?;
        Ok::<_, images::ImageError>([stack, postgres])
    });
    match built {
        Ok(built) => {
            for image in built {
                let state = if image.up_to_date { "up to date" } else { "built" };
                let size = image.bytes as f64 / 1e6;
                println!("{}: {state} ({size:.0} MB, {:.1} s)", image.image, image.seconds);
            }
            EXIT_PASS
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_HARNESS
        }
    }
}

fn clean(args: CleanArgs) -> u8 {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let cleaned = runtime.block_on(crate::live::clean::dead_runs(args.dry_run));
    for line in &cleaned.removed {
        println!("{line}");
    }
    for problem in &cleaned.problems {
        eprintln!("posim clean: {problem}");
    }
    let root = crate::live::runs::root();
    match (args.dry_run, cleaned.removed.is_empty() && cleaned.runs == 0) {
        (_, true) => println!("posim clean: nothing left by dead runs under {}", root.display()),
        (true, false) => println!("posim clean: dry run, nothing removed"),
        (false, false) => println!("posim clean: {} dead run(s) cleaned under {}", cleaned.runs, root.display()),
    }
    EXIT_PASS
}

fn merge(args: MergeArgs) -> u8 {
    use crate::load::merge::{self, ShardResult};
    let read: Result<Vec<ShardResult>, _> = args.shards.iter().map(|dir| ShardResult::read(dir)).collect();
    let merged = match read.and_then(merge::merge) {
        Ok(merged) => merged,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_USAGE;
        }
    };
    let dir = args.out.unwrap_or_else(|| default_dir(&format!("{}-merged", merged.scenario), merged.seed));
    let summary = serde_json::to_vec_pretty(&merged).map_err(std::io::Error::other);
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("summary.json"), summary?))
        .and_then(|()| std::fs::write(dir.join("summary.md"), merged.markdown()));
    if let Err(error) = written {
        eprintln!("error: cannot write the merged report to {}: {error}", dir.display());
        return EXIT_HARNESS;
    }
    print!("{}", merged.markdown());
    println!("report: {}", dir.display());
    if merged.passed() { EXIT_PASS } else { EXIT_FAIL }
}

fn compare(args: CompareArgs) -> u8 {
    match report::compare::load(&args.reports) {
        Ok(runs) => {
            print!("{}", report::compare::markdown(&runs));
            EXIT_PASS
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_USAGE
        }
    }
}
