//! The traffic plan is keyed, not drawn in event order: adding a fault to a
//! scenario leaves every customer's arrival, condominium, terminal and amount
//! where they were (and the machine wherever it is free), and the simulator
//! and the live engine play the same plan.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use posim::faults::FaultKind;
use posim::history::Event;
use posim::scenario::Scenario;
use posim::sim::{self, SimOptions};
use posim::traffic::{PlannedPurchase, TrafficPlan};

const SEED: u64 = 11;

/// The bundled rollout, with `extra` TOML appended (more faults).
fn rollout_with(extra: &str) -> Scenario {
    let text = std::fs::read_to_string("scenarios/rollout.toml").expect("the bundled rollout");
    Scenario::parse(&format!("{text}\n{extra}"), "rollout.toml", Path::new("scenarios")).expect("a valid scenario")
}

/// Purchase number → (arrival time, condominium, machine) of a simulator run.
type Arrivals = BTreeMap<u32, (u64, u32, u32)>;

/// What a simulator run shows of its customers: their arrivals, when each
/// machine was held (a customer at it, or a cycle running), and the offline
/// spells (which the history does not tie to a machine).
struct Run {
    arrivals: Arrivals,
    held: BTreeMap<u32, Vec<(u64, u64)>>,
    offline: Vec<(u64, u64)>,
}

impl Run {
    fn held_at(&self, machine: u32, at: u64) -> bool {
        let within = |&(from, to): &(u64, u64)| from <= at && at <= to;
        self.held.get(&machine).is_some_and(|spans| spans.iter().any(within)) || self.offline.iter().any(within)
    }
}

fn simulate(scenario: &Scenario) -> Run {
    let outcome = sim::run(scenario, SimOptions { seed: SEED, ..SimOptions::default() });
    let longest_cycle = scenario.traffic.cycle_length.1;
    let (mut arrivals, mut held, mut offline) = (Arrivals::new(), BTreeMap::<u32, Vec<_>>::new(), Vec::new());
    for record in &outcome.history.records {
        match record.event {
            Event::Arrived { purchase, condominium, machine } => {
                arrivals.insert(purchase, (record.at, condominium, machine));
            }
            Event::Ended { purchase, .. } => {
                let machine = arrivals[&purchase].2;
                held.entry(machine).or_default().push((arrivals[&purchase].0, record.at));
            }
            Event::CycleStarted { machine, .. } => {
                held.entry(machine).or_default().push((record.at, record.at + longest_cycle));
            }
            Event::Fault { fault, kind: FaultKind::MachineOffline, .. } => {
                offline.push((record.at, record.at + scenario.faults[fault as usize].duration));
            }
            _ => {}
        }
    }
    Run { arrivals, held, offline }
}

fn plan(scenario: &Scenario) -> BTreeMap<u32, PlannedPurchase> {
    TrafficPlan::new(scenario, SEED).map(|planned| (planned.purchase, planned)).collect()
}

/// Every purchase the run started is the plan's customer, at the planned time and place.
fn assert_follows_the_plan(run: &Arrivals, plan: &BTreeMap<u32, PlannedPurchase>, min_percent: usize) {
    for (number, (at, condominium, _)) in run {
        let planned = &plan[number];
        assert_eq!((*at, *condominium), (planned.at, planned.condominium), "purchase {number}");
    }
    // Gaps are customers who found every machine taken.
    assert!(run.len() * 100 >= plan.len() * min_percent, "{} of {} planned customers started", run.len(), plan.len());
}

/// Compares two runs by purchase number: arrivals alike, and a machine
/// that differs only because the other run held the preferred one. Returns
/// the share of common purchases on the same machine.
fn compare(base: &Run, faulty: &Run, plan: &BTreeMap<u32, PlannedPurchase>, traffic: &TrafficPlan) -> f64 {
    let (left, right) = (&base.arrivals, &faulty.arrivals);
    let common: Vec<u32> = left.keys().filter(|n| right.contains_key(n)).copied().collect();
    assert!(common.len() * 100 >= left.len() * 90, "{} of {} purchases in both runs", common.len(), left.len());
    let mut same_machine = 0;
    for number in &common {
        let ((at, condominium, a), (at2, condominium2, b)) = (left[number], right[number]);
        assert_eq!((at, condominium), (at2, condominium2), "purchase {number} arrives alike");
        if a == b {
            same_machine += 1;
            continue;
        }
        // The run on the less preferred machine found the other one held.
        let preferred = traffic.pick_machine(&plan[number], |m| m == a || m == b);
        let (held_in, machine) = if preferred == Some(a) { (faulty, a) } else { (base, b) };
        assert!(held_in.held_at(machine, at), "purchase {number}: machine {machine} was free and not taken");
    }
    same_machine as f64 / common.len() as f64
}

#[test]
fn adding_a_fault_leaves_every_customer_in_place() {
    let bundled = rollout_with("");
    let base = simulate(&bundled);
    let planned = plan(&bundled);
    assert_follows_the_plan(&base.arrivals, &planned, 80);
    let traffic = TrafficPlan::new(&bundled, SEED);
    let extras = [
        ("psp_error", "[[faults]]\nkind = \"psp_error\"\nprobability = 0.3\n"),
        ("request_lost", "[[faults]]\nkind = \"request_lost\"\nprobability = 0.2\n"),
        ("duplicate_request", "[[faults]]\nkind = \"duplicate_request\"\nprobability = 0.2\n"),
    ];
    for (name, extra) in extras {
        let scenario = rollout_with(extra);
        let faulty = simulate(&scenario);
        assert_follows_the_plan(&faulty.arrivals, &plan(&scenario), 80);
        assert!(faulty.arrivals != base.arrivals, "{name}: the fault changed the run");
        let same_machine = compare(&base, &faulty, &planned, &traffic);
        eprintln!("{name}: {} purchases, {:.1}% on the same machine", faulty.arrivals.len(), same_machine * 100.0);
    }
}

#[test]
fn terminal_amount_and_decline_belong_to_the_purchase_number() {
    let bundled = plan(&rollout_with(""));
    let faulty = plan(&rollout_with("[[faults]]\nkind = \"psp_error\"\nprobability = 0.3\n"));
    assert_eq!(bundled, faulty, "faults are not part of the plan");
    let declined = bundled.values().filter(|p| p.declined).count();
    assert!(declined > 0 && declined < bundled.len() / 10, "{declined} declined");
}

/// The live engine plays the same plan: its `Arrived` records are the
/// plan's customers (a live clock may record them late).
#[test]
#[ignore = "needs PostgreSQL"]
fn the_live_engine_plays_the_simulators_plan() {
    posim::live::postgres::find_binaries().expect("PostgreSQL's server binaries");
    let out = tempfile::tempdir().expect("a temp dir");
    let scenario_path = "fixtures/scenarios/live-smoke.toml";
    let output = Command::new(env!("CARGO_BIN_EXE_posim"))
        .args(["live", scenario_path, "--time-scale", "120", "--seed", &SEED.to_string(), "--out"])
        .arg(out.path())
        .output()
        .expect("posim runs");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let scenario = Scenario::load(Path::new(scenario_path)).expect("the live scenario");
    let planned = plan(&scenario);
    let trace = std::fs::read_to_string(out.path().join("trace.jsonl")).expect("trace.jsonl");
    let mut live = Vec::new();
    for line in trace.lines() {
        let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        if record["event"] == "arrived" {
            let number = record["purchase"].as_u64().expect("a purchase number") as u32;
            live.push((number, record["at"].as_u64().expect("at"), record["condominium"].as_u64().expect("c")));
        }
    }
    // Two busy machines per condominium: a third of the customers find both taken.
    assert!(live.len() * 100 >= planned.len() * 50, "{} of {} planned customers started", live.len(), planned.len());
    for (number, at, condominium) in live {
        let planned = &planned[&number];
        assert_eq!(condominium, u64::from(planned.condominium), "purchase {number}");
        // Never early; late while the first deploy starts, or a busy host.
        assert!(at >= planned.at, "purchase {number} at {at}, planned {}", planned.at);
    }
    assert_follows_the_plan(&simulate(&scenario).arrivals, &planned, 50);
}
