//! `posim gameday` (a live run with people deciding, its console served on
//! loopback) and `posim op` (the runbook's actions against a running game
//! day, from a shell: the same JSON the console sends).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{EXIT_FAIL, EXIT_HARNESS, EXIT_PASS, Exit, LiveStackArgs, load, suite_config, usage};
use crate::gameday::action::{Action, ActionRequest, InjectRequest};
use crate::incident::{self, DEFAULT_LASTS, Offer};
use crate::live::desk::DeskOptions;
use crate::scenario::ControllerMode;
use crate::suite;

/// The default game-day pace: five runbook minutes a wall minute.
const DEFAULT_TIME_SCALE: f64 = 5.0;
/// Above this, people cannot follow (tests and rehearsals of the tool only).
const HUMAN_TIME_SCALE_MAX: f64 = 10.0;

#[derive(Args)]
pub(super) struct GamedayArgs {
    scenario: PathBuf,
    #[arg(long)]
    seed: Option<u64>,
    /// Runbook time per wall time: 1 to 10 for people (default 5).
    #[arg(long, default_value_t = DEFAULT_TIME_SCALE)]
    time_scale: f64,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    no_trace: bool,
    /// Where the console listens; anything but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Every page and action must carry it (Authorization: Bearer, or ?token=).
    #[arg(long, env = "POSIM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    stack: LiveStackArgs,
}

pub(super) fn gameday(args: GamedayArgs) -> Exit {
    if !crate::suite::live::TIME_SCALES.contains(&args.time_scale) {
        return Err(usage(format!("--time-scale must be between 1 and 10000, got {}", args.time_scale)));
    }
    if !args.listen.ip().is_loopback() && args.token.as_deref().is_none_or(str::is_empty) {
        return Err(usage(format!(
            "--listen {} is beyond loopback: give --token so that only you can act",
            args.listen
        )));
    }
    let mut scenario = load(&args.scenario)?;
    scenario.controller = ControllerMode::Human;
    // Incident A is on every game day's menu (B and C need no fault).
    if !scenario.armed.iter().any(|armed| armed.offer == Offer::PaidNoWash) {
        incident::offer(Offer::PaidNoWash, DEFAULT_LASTS, &mut scenario.faults, &mut scenario.armed);
    }
    if args.time_scale > HUMAN_TIME_SCALE_MAX {
        println!(
            "note: at {}× people cannot follow; 1× to {HUMAN_TIME_SCALE_MAX}× is a game day's pace",
            args.time_scale
        );
    }
    let config = suite_config("posim gameday", (args.seed, args.stack.stack_bugs.clone()), !args.no_trace, 1, None);
    let runner = suite::live::Live {
        config: &config,
        time_scale: Some(args.time_scale),
        stack: args.stack.choice(),
        world_port: args.stack.world_port.unwrap_or(0),
        announce: true,
        desk: Some(DeskOptions { listen: args.listen, token: args.token.clone() }),
    };
    let label = scenario.name.clone();
    let member = suite::Member { label, file: args.scenario.clone(), scenario };
    super::live_one(&member, &runner, args.out, "gameday")
}

#[derive(Args)]
pub(super) struct OpArgs {
    /// The running game day's console (as `posim gameday` printed it).
    #[arg(long, env = "POSIM_CONSOLE", conflicts_with = "run")]
    console: Option<String>,
    /// Or the game day's report folder: its console.json says where the console is.
    #[arg(long)]
    run: Option<PathBuf>,
    #[arg(long, env = "POSIM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    action: OpCommand,
}

/// Who acts and on what evidence (runbook §5): both required.
#[derive(Args)]
struct Signed {
    #[arg(long)]
    who: String,
    #[arg(long)]
    evidence: String,
}

#[derive(Subcommand)]
enum OpCommand {
    /// Deploy a canary config (validated as the stack validates its env at start-up).
    Deploy {
        #[arg(long)]
        mode: String,
        #[arg(long, default_value = "")]
        allowlist: String,
        #[arg(long, default_value = "")]
        blocklist: String,
        #[command(flatten)]
        signed: Signed,
    },
    /// §2: partial rollback to the stable condominiums (or --total: cut the affected ones).
    Rollback {
        #[arg(long)]
        total: bool,
        #[command(flatten)]
        signed: Signed,
    },
    /// Advance to the next phase.
    Advance(Signed),
    /// §4C: freeze on the smallest allowlist and audit the suspects.
    Freeze(Signed),
    /// §4A: reprocess the executions of customers who paid and got no wash.
    Reprocess(Signed),
    /// §4C: audit the suspects by provider_ref and idempotency_key.
    Audit(Signed),
    /// The facilitator: set off now incident A, B (a bad build), C (a
    /// customer's complaint) or a fault the scenario put on the menu.
    Inject {
        #[arg(value_name = "A|B|C|FAULT")]
        incident: String,
        /// Incident B: the share of confirm and execute-cycle the build fails.
        #[arg(long)]
        error_rate: Option<f64>,
    },
}

pub(super) fn op(args: OpArgs) -> Exit {
    let base = console_url(&args)?;
    let (path, body) = match args.action {
        OpCommand::Inject { incident, error_rate } => {
            ("/api/inject", serde_json::to_value(InjectRequest { incident, error_rate }))
        }
        action => ("/api/actions", serde_json::to_value(action_request(action))),
    };
    let body = body.map_err(|error| usage(format!("cannot write the request: {error}")))?;
    let runtime = super::runtime()?;
    let answer = runtime.block_on(send(&format!("{base}{path}"), args.token.as_deref(), &body));
    let (status, answer) = answer.map_err(|error| {
        eprintln!("error: cannot reach the game day at {base}: {error}");
        EXIT_HARNESS
    })?;
    said(status, &answer)
}

fn action_request(command: OpCommand) -> ActionRequest {
    let (action, Signed { who, evidence }) = match command {
        OpCommand::Deploy { mode, allowlist, blocklist, signed } => {
            (Action::Deploy { mode, allowlist, blocklist }, signed)
        }
        OpCommand::Rollback { total, signed } => (Action::Rollback { total }, signed),
        OpCommand::Advance(signed) => (Action::Advance, signed),
        OpCommand::Freeze(signed) => (Action::Freeze, signed),
        OpCommand::Reprocess(signed) => (Action::Reprocess, signed),
        OpCommand::Audit(signed) => (Action::Audit, signed),
        OpCommand::Inject { .. } => unreachable!("an injection is not an operator's action"),
    };
    ActionRequest { who, evidence, action }
}

fn console_url(args: &OpArgs) -> Result<String, u8> {
    if let Some(url) = &args.console {
        return Ok(url.trim_end_matches('/').to_string());
    }
    let Some(dir) = &args.run else {
        return Err(usage("where is the game day? give --console URL (or POSIM_CONSOLE) or --run DIR"));
    };
    let file = dir.join("console.json");
    let text = std::fs::read_to_string(&file).map_err(|error| usage(format!("{}: {error}", file.display())))?;
    let record: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| usage(format!("{}: {error}", file.display())))?;
    match record["url"].as_str() {
        Some(url) => Ok(url.to_string()),
        None => Err(usage(format!("{}: no `url`", file.display()))),
    }
}

async fn send(url: &str, token: Option<&str>, body: &serde_json::Value) -> reqwest::Result<(u16, serde_json::Value)> {
    let client = crate::live::http_client::client()?;
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or_default()))
}

/// Prints what the game day logged; a refused action exits 1, naming why.
fn said(status: u16, answer: &serde_json::Value) -> Exit {
    if let Some(error) = answer["error"].as_str() {
        eprintln!("refused ({status}): {error}");
        return Ok(EXIT_FAIL);
    }
    let logged = answer["logged"].as_array().cloned().unwrap_or_default();
    let mut refused = false;
    for line in &logged {
        let decision = line["decision"].as_str().unwrap_or("?");
        refused |= decision == "refused";
        println!("{} {} by {}", line["at"].as_str().unwrap_or("?"), decision, line["who"].as_str().unwrap_or("?"));
        for evidence in line["evidence"].as_array().into_iter().flatten() {
            println!("    {}", evidence.as_str().unwrap_or_default());
        }
    }
    Ok(if refused { EXIT_FAIL } else { EXIT_PASS })
}
