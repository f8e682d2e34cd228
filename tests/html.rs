//! `report.html`: one self-contained page per run — verdict first, every
//! section, SVG charts, witnesses linked to the trace — that opens offline
//! with no script and no request beyond the file. The renderer is checked
//! on its text; the page itself in headless Chromium (DevTools protocol).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::protocol::cdp::Network;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions};
use posim::report::RunReport;
use posim::report::html::{escape, page};
use posim::report::load::{LoadSection, Percentiles, StepReport};
use posim::scenario::Scenario;
use posim::stack::StackBug;
use posim::verdict::simulate;

/// A passing rollout, and a rollback run whose stack strands in-flight
/// payments at the rollback (D8): the two committed examples.
const PASSING: (&str, &[&str]) = ("scenarios/rollout.toml", &[]);
const FAILING: (&str, &[&str]) = ("scenarios/incident-b-bad-deploy.toml", &["gate-blocks-inflight"]);

fn judged(path: &str, bugs: &[&str]) -> RunReport {
    let scenario = Scenario::load(Path::new(path)).expect("a bundled scenario");
    let bugs: Vec<StackBug> = bugs.iter().map(|bug| bug.parse().expect("a stack bug")).collect();
    simulate(&scenario, scenario.seed, &bugs).report
}

const SECTIONS: [&str; 7] = ["timeline", "kpis", "rollbacks", "latency", "violations", "oplog", "class=\"verdict"];

#[test]
fn every_section_is_present_and_the_verdict_comes_first() {
    for ((path, bugs), verdict) in [(PASSING, "PASS"), (FAILING, "FAIL")] {
        let html = page(&judged(path, bugs));
        for section in SECTIONS {
            let needle =
                if section.starts_with("class") { section.to_string() } else { format!("<section id=\"{section}\">") };
            assert!(html.contains(&needle), "{path}: no {section}");
        }
        let first_section = html.find("<section id=").expect("sections");
        let badge = html.find(&format!("<span class=\"badge\">{verdict}</span>")).expect("the verdict badge");
        assert!(badge < first_section, "{path}: the verdict comes before every section");
        assert!(html.find("outcome").is_some_and(|at| at < first_section), "{path}: the outcome too");
    }
}

#[test]
fn the_page_has_charts_and_no_script_and_no_url() {
    for (path, bugs) in [PASSING, FAILING] {
        let html = page(&judged(path, bugs));
        let lower = html.to_lowercase();
        assert!(!lower.contains("<script"), "{path}: no script");
        assert!(!lower.contains("http://") && !lower.contains("https://"), "{path}: no URL");
        assert!(!lower.contains("@import") && !lower.contains("url("), "{path}: the style sheet loads nothing");
        // The timeline, four KPI charts and the latency chart at least.
        assert!(html.matches("<svg ").count() >= 6, "{path}: {} charts", html.matches("<svg ").count());
        assert!(html.contains("<text"), "{path}: chart text is SVG text");
        assert!(!html.contains("chart not drawn"), "{path}: every chart drawn");
    }
}

#[test]
fn a_failing_run_shows_each_witness_line_with_its_trace_record() {
    let report = judged(FAILING.0, FAILING.1);
    assert!(!report.passed());
    let html = page(&report);
    let violation = report.violations.first().expect("a violation");
    assert!(html.contains(&escape(&violation.summary)));
    for line in &violation.witness {
        let shown = format!("title=\"record {0} of trace.jsonl\">#{0}</a>", line.record);
        assert!(html.contains(&shown), "record {} linked", line.record);
        // The text after the record number and time, which the link shows.
        let said = line.text.splitn(3, ' ').nth(2).expect("a described record");
        assert!(html.contains(&escape(said)), "{}", line.text);
    }
    let keys = violation.witness.iter().filter(|line| line.key).count();
    assert!(keys > 0 && html.matches("<li class=\"key\">").count() >= keys, "key lines marked");
    let timing = report.rollbacks.first().expect("the bad build is rolled back");
    assert!(html.contains(&format!("rollback `{}` at", escape(&timing.label))), "its rollback chart");
}

#[test]
fn text_from_the_scenario_is_escaped() {
    let mut report = judged(PASSING.0, PASSING.1);
    report.scenario = "<img src=x onerror=alert(1)> & co".to_string();
    report.notes.push("a \"quoted\" <note>".to_string());
    let html = page(&report);
    assert!(!html.contains("<img"), "markup in a name is text");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; co"));
    assert!(html.contains("a &quot;quoted&quot; &lt;note&gt;"));
}

/// A step of a load run whose latency grows with the offered rate.
fn step(step: usize, rate: f64) -> StepReport {
    let at = |p50_ms: f64| Percentiles {
        count: 100,
        p50_ms,
        p90_ms: 2.0 * p50_ms,
        p99_ms: 4.0 * p50_ms,
        p999_ms: 5.0 * p50_ms,
        max_ms: 6.0 * p50_ms,
    };
    let latency = [("authorize".to_string(), at(rate)), ("confirm".to_string(), at(2.0 * rate))].into();
    StepReport { step, target: rate, latency, purchase: at(3.0 * rate), ..StepReport::default() }
}

#[test]
fn a_load_run_charts_its_percentiles_per_endpoint_and_no_rollout() {
    let mut report = judged(PASSING.0, PASSING.1);
    report.load =
        Some(LoadSection { steps: vec![step(1, 10.0), step(2, 20.0), step(3, 40.0)], ..LoadSection::default() });
    let html = page(&report);
    assert!(html.contains("<section id=\"load\">") && !html.contains("<section id=\"timeline\">"));
    for chart in ["authorize: latency per step", "confirm: latency per step", "whole purchase: latency per step"] {
        assert!(html.contains(chart), "{chart}");
    }
    assert!(!html.contains("chart not drawn"));
}

#[test]
fn every_run_writes_report_html_beside_its_summary() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = run_posim(PASSING, dir.path());
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<span class=\"badge\">PASS</span>"));
}

/// Runs `posim run` on a scenario into `dir` and returns the report folder.
fn run_posim((path, bugs): (&str, &[&str]), dir: &Path) -> PathBuf {
    let mut command = Command::new(env!("CARGO_BIN_EXE_posim"));
    command.args(["run", path, "--no-trace", "--out"]).arg(dir);
    for bug in bugs {
        command.args(["--stack-bug", bug]);
    }
    let output = command.output().expect("posim runs");
    let expected = if bugs.is_empty() { 0 } else { 1 };
    assert_eq!(output.status.code(), Some(expected), "{}", String::from_utf8_lossy(&output.stderr));
    dir.to_path_buf()
}

/// What the browser reported while it loaded the page.
#[derive(Default, Debug)]
struct Seen {
    requests: Vec<String>,
    errors: Vec<String>,
}

fn watch(seen: &Arc<Mutex<Seen>>, event: &Event) {
    let mut seen = seen.lock().expect("the watch's lock");
    match event {
        Event::NetworkRequestWillBeSent(sent) => seen.requests.push(sent.params.request.url.clone()),
        Event::LogEntryAdded(entry) => {
            let level = format!("{:?}", entry.params.entry.level);
            if level.to_lowercase().contains("error") {
                seen.errors.push(entry.params.entry.text.clone());
            }
        }
        Event::RuntimeConsoleAPICalled(call) => {
            seen.errors.push(format!("console.{:?} called", call.params.Type));
        }
        Event::RuntimeExceptionThrown(thrown) => seen.errors.push(thrown.params.exception_details.text.clone()),
        _ => {}
    }
}

/// Opens `file` in headless Chromium and returns what it reported and the tab.
fn open(browser: &Browser, file: &Path) -> (Seen, usize, usize, usize) {
    let tab = browser.new_tab().expect("a tab");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watcher = Arc::clone(&seen);
    tab.add_event_listener(Arc::new(move |event: &Event| watch(&watcher, event))).expect("a listener");
    tab.enable_log().expect("the Log domain");
    tab.enable_runtime().expect("the Runtime domain");
    tab.call_method(Network::Enable {
        max_total_buffer_size: None,
        max_resource_buffer_size: None,
        max_post_data_size: None,
        report_direct_socket_traffic: None,
        enable_durable_messages: None,
    })
    .expect("the Network domain");
    let url = format!("file://{}", file.display());
    tab.navigate_to(&url).expect("navigates").wait_until_navigated().expect("loads");
    let count = |selector: &str| tab.find_elements(selector).map_or(0, |found| found.len());
    let counts = (count("svg"), count("ol.witness li.key"), count("a.record[href='trace.jsonl']"));
    // Late console messages still arrive over the socket.
    std::thread::sleep(Duration::from_millis(300));
    let mut seen = std::mem::take(&mut *seen.lock().expect("the watch's lock"));
    seen.requests.retain(|request| request != &url);
    (seen, counts.0, counts.1, counts.2)
}

#[test]
#[ignore = "needs Chromium"]
fn both_reports_render_in_headless_chromium_offline_with_charts_and_witnesses() {
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from("/usr/bin/chromium")))
        .sandbox(false)
        .build()
        .expect("launch options");
    let browser = Browser::new(options).expect("Chromium starts (apt-get install chromium)");
    for (run, failing) in [(PASSING, false), (FAILING, true)] {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = run_posim(run, dir.path()).join("report.html").canonicalize().expect("report.html");
        let (seen, charts, keys, records) = open(&browser, &file);
        assert!(seen.errors.is_empty(), "{}: console errors {:?}", run.0, seen.errors);
        assert!(seen.requests.is_empty(), "{}: requests beyond the file {:?}", run.0, seen.requests);
        assert!(charts >= 6, "{}: {charts} charts", run.0);
        if failing {
            assert!(keys > 0 && records >= keys, "{}: witnesses {keys}, records {records}", run.0);
        } else {
            assert_eq!(keys, 0, "a passing run has no witness");
        }
    }
}

#[test]
fn a_run_with_nothing_recorded_still_renders_every_section() {
    let mut report = judged(PASSING.0, PASSING.1);
    (report.phases, report.decisions, report.latency, report.simulated_ms) = (vec![], vec![], vec![], 0);
    let html = page(&report);
    assert!(!html.contains("chart not drawn"), "every chart drawn, empty or not");
    for section in ["timeline", "kpis", "latency", "oplog"] {
        assert!(html.contains(&format!("<section id=\"{section}\">")), "{section}");
    }
}
