//! Game days (`posim gameday`, `posim op`): people decide, posim only raises
//! the runbook's alerts; a refused typo leaves the previous config serving;
//! the console in headless Chromium and `posim op` from a shell log the same
//! entries; and a game day where nobody acts scores the incident undetected
//! beside posim-auto's reference line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;

const GAME_DAY: &str = "fixtures/scenarios/gameday-b.toml";
/// Fast enough for CI, slow enough for the alert to wait for a person.
const TIME_SCALE: &str = "60";
const WHO: &str = "ana.souza";
/// A UUID one character short: the stack refuses it at start-up.
const TYPO: &str = "3f9c1e52-7a0b-4d8e-b6c1-2e5f8a9d0b1";
const TYPO_EVIDENCE: &str = "widening to one more condominium";
const ROLLBACK_EVIDENCE: &str = "alert: confirm and execute failures above 5% since the release";

fn posim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_posim"))
}

fn said(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

/// The people's entries of a run's operation log: decision, who, their evidence.
fn people_entries(dir: &Path) -> Vec<(String, String, String)> {
    let log = std::fs::read_to_string(dir.join("oplog.jsonl")).expect("oplog.jsonl");
    log.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("an oplog line"))
        .filter(|entry| entry["who"] == WHO)
        .map(|entry| {
            let field = |name: &str| entry[name].as_str().unwrap_or_default().to_string();
            (field("decision"), field("who"), entry["evidence"][0].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn a_game_day_nobody_acts_on_is_scored_undetected_beside_posim_autos_reference_line() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = posim().args(["run", GAME_DAY, "--no-trace", "--out"]).arg(dir.path()).output().expect("posim runs");
    assert_eq!(output.status.code(), Some(1), "nobody rolled back: not the rollback expected\n{}", said(&output));
    assert!(said(&output).contains("UNDETECTED (nobody acted)"), "{}", said(&output));
    let summary = read_json(&dir.path().join("summary.json"));
    assert_nobody_acted(&summary);
    let markdown = std::fs::read_to_string(dir.path().join("summary.md")).expect("summary.md");
    assert!(markdown.contains("## Game day scorecard") && markdown.contains("UNDETECTED"), "{markdown}");
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("report.html");
    assert!(html.contains("<section id=\"scorecard\">") && html.contains("posim-auto (reference)"));
}

/// The people's card: the incident set off, never detected or mitigated,
/// its impact counted; posim-auto's line: its own times and rollback.
fn assert_nobody_acted(summary: &Value) {
    let card = &summary["scorecard"];
    let incidents = card["incidents"].as_array().expect("incidents");
    let incident = incidents.iter().find(|i| i["incident"] == "B").expect("incident B on the card");
    assert_eq!(incident["incident"], "B", "{card}");
    // Set off at 20m (a live run records it the moment it gets to it).
    let at = incident["at_ms"].as_u64().expect("when");
    assert!((20 * 60_000..21 * 60_000).contains(&at), "{incident}");
    assert!(incident["detect_ms"].is_null() && incident["mitigate_ms"].is_null(), "{card}");
    assert_eq!(card["rollbacks"].as_array().map(Vec::len), Some(0));
    assert!(card["impact"]["refunded"].is_u64() && card["impact"]["violations"].is_object(), "{card}");
    let failing = &summary["phases"][1];
    assert_eq!(failing["name"], "release", "the bad build served to the end: {failing}");
    let reference = &card["reference"];
    assert_eq!(reference["decider"], "posim_auto");
    // posim-auto acts on the first incident it sees, with its own times.
    let auto = &reference["incidents"][0];
    assert_eq!(auto["incident"], incidents[0]["incident"]);
    let (detect, mitigate) = (auto["detect_ms"].as_u64(), auto["mitigate_ms"].as_u64());
    assert!(detect.is_some_and(|d| d > 0), "posim-auto's own times: {auto}");
    assert_eq!(reference["rollbacks"][0]["kind"], "partial_rollback", "{reference}");
    if auto["incident"] == "B" {
        assert!(mitigate >= detect, "posim-auto's own times: {auto}");
    }
}

/// Starts `posim gameday` on the test game day with `extra` flags; returns
/// it and its console's URL once the console listens.
fn game_day(dir: &Path, time_scale: &str, extra: &[&str]) -> (Child, String) {
    let child = posim()
        .args(["gameday", GAME_DAY, "--time-scale", time_scale, "--out"])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("posim gameday starts");
    let record = dir.join("console.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !record.exists() {
        assert!(Instant::now() < deadline, "no console.json after 120 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(100));
    let url = read_json(&record)["url"].as_str().expect("the console's url").to_string();
    (child, url)
}

fn start_game_day(dir: &Path) -> (Child, String) {
    game_day(dir, TIME_SCALE, &["--no-trace"])
}

fn state(url: &str) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let response = reqwest::get(format!("{url}/api/state")).await.expect("the console answers");
        response.json().await.expect("the console's JSON")
    })
}

fn replicas_env(url: &str) -> Vec<Value> {
    state(url)["replicas"].as_array().expect("replicas").iter().map(|r| r["env"].clone()).collect()
}

fn wait_for_alert(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while state(url)["open_alerts"].as_array().is_none_or(Vec::is_empty) {
        assert!(Instant::now() < deadline, "no alert on the console after 180 s");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn finished(child: Child) -> Output {
    let output = child.wait_with_output().expect("posim gameday ends");
    assert_eq!(output.status.code(), Some(0), "the rollback was expected and on time\n{}", said(&output));
    output
}

/// The run after people acted: the refusal and the partial rollback logged
/// with who and evidence, the rollback timed, D1–D9 held, the scorecard.
fn assert_acted_on(dir: &Path) -> Vec<(String, String, String)> {
    let entries = people_entries(dir);
    let expected = [("refused", TYPO_EVIDENCE), ("partial_rollback", ROLLBACK_EVIDENCE)];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(kind, evidence)| (kind.to_string(), WHO.to_string(), format!("evidence: {evidence}")))
        .collect();
    assert_eq!(entries, expected);
    let summary = read_json(&dir.join("summary.json"));
    assert_eq!(summary["violation_counts"], serde_json::json!({}), "D1–D9 held");
    let rollback = &summary["rollbacks"][0];
    assert_eq!(rollback["kind"], "partial_rollback");
    assert!(rollback["affected_denied_ms"].is_u64() && rollback["rates_under_caps_ms"].is_u64(), "{rollback}");
    let incident = &summary["scorecard"]["incidents"][0];
    assert!(incident["detect_ms"].as_u64().is_some_and(|ms| ms > 0), "{incident}");
    assert!(incident["mitigate_ms"].as_u64() >= incident["detect_ms"].as_u64(), "{incident}");
    assert_eq!(summary["scorecard"]["rollbacks"][0]["kind"], "partial_rollback");
    assert!(summary["scorecard"]["reference"]["incidents"][0]["detect_ms"].is_u64());
    entries
}

/// The same game day from a shell: a typo refused (the previous config
/// keeps serving), then a partial rollback once the alert is up.
fn driven_by_posim_op(dir: &Path) -> Vec<(String, String, String)> {
    let (child, url) = start_game_day(dir);
    let before = replicas_env(&url);
    let op = |args: &[&str]| posim().arg("op").arg("--run").arg(dir).args(args).output().expect("posim op runs");
    let typo = op(&["deploy", "--mode", "allowlist", "--allowlist", TYPO, "--who", WHO, "--evidence", TYPO_EVIDENCE]);
    assert_eq!(typo.status.code(), Some(1), "{}", said(&typo));
    assert!(said(&typo).contains("PAYMENTS_POS_CANARY_ALLOWLIST"), "the variable is named: {}", said(&typo));
    assert!(said(&typo).contains("the previous config keeps serving"), "{}", said(&typo));
    assert_eq!(replicas_env(&url), before, "the previous config keeps serving");
    wait_for_alert(&url);
    let rollback = op(&["rollback", "--who", WHO, "--evidence", ROLLBACK_EVIDENCE]);
    assert_eq!(rollback.status.code(), Some(0), "{}", said(&rollback));
    assert!(said(&rollback).contains(&format!("partial rollback by {WHO}")), "{}", said(&rollback));
    finished(child);
    assert_acted_on(dir)
}

fn chromium() -> Browser {
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from("/usr/bin/chromium")))
        .sandbox(false)
        .window_size(Some((1400, 1100)))
        // The browser waits idle while the game day drains.
        .idle_browser_timeout(Duration::from_secs(600))
        .build()
        .expect("launch options");
    Browser::new(options).expect("Chromium starts (apt-get install chromium)")
}

/// Waits until `selector`'s text holds `wanted`.
fn wait_for_text(tab: &Tab, selector: &str, wanted: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = tab.find_element(selector).and_then(|element| element.get_inner_text()).unwrap_or_default();
        if text.contains(wanted) {
            return text;
        }
        assert!(Instant::now() < deadline, "`{wanted}` never showed in {selector}: {text}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn type_into(tab: &Tab, selector: &str, text: &str) {
    tab.evaluate(&format!("document.querySelector('{selector}').value = ''"), false).expect("clears the field");
    tab.find_element(selector).expect("the field").click().expect("focus").type_into(text).expect("typed");
}

/// Saves a screenshot of the page when POSIM_SCREENSHOTS names a folder.
fn screenshot(tab: &Tab, name: &str) {
    let Some(folder) = std::env::var_os("POSIM_SCREENSHOTS") else { return };
    let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).expect("a screenshot");
    std::fs::write(Path::new(&folder).join(name), png).expect("the screenshot is written");
}

/// Beside the screenshots, the report of the run they show.
fn keep_the_report(dir: &Path) {
    let Some(folder) = std::env::var_os("POSIM_SCREENSHOTS") else { return };
    for name in ["report.html", "summary.json", "summary.md", "oplog.jsonl", "junit.xml"] {
        std::fs::copy(dir.join(name), Path::new(&folder).join(name)).expect("the report is copied");
    }
}

/// The game day driven through the console page, as a person would.
fn driven_through_the_console(browser: &Browser, dir: &Path) -> Vec<(String, String, String)> {
    let (child, url) = start_game_day(dir);
    let tab = browser.new_tab().expect("a tab");
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&errors);
    tab.add_event_listener(Arc::new(move |event: &Event| {
        if let Event::RuntimeExceptionThrown(thrown) = event {
            seen.lock().expect("lock").push(thrown.params.exception_details.text.clone());
        }
    }))
    .expect("a listener");
    tab.enable_runtime().expect("the Runtime domain");
    tab.navigate_to(&format!("{url}/")).expect("navigates").wait_until_navigated().expect("loads");
    wait_for_text(&tab, "#connection", "live", Duration::from_secs(30));
    let before = replicas_env(&url);
    type_into(&tab, "#who", WHO);
    type_into(&tab, "#evidence", TYPO_EVIDENCE);
    type_into(&tab, "#deploy-allowlist", TYPO);
    tab.find_element("#deploy").expect("the deploy button").click().expect("clicked");
    let refused = wait_for_text(&tab, "#result", "refused", Duration::from_secs(20));
    assert!(refused.contains("PAYMENTS_POS_CANARY_ALLOWLIST"), "the variable is named: {refused}");
    assert_eq!(replicas_env(&url), before, "the previous config keeps serving");
    wait_for_text(&tab, "#alerts", "alert raised by posim-auto", Duration::from_secs(180));
    screenshot(&tab, "console-alert.png");
    type_into(&tab, "#evidence", ROLLBACK_EVIDENCE);
    tab.find_element("#partial-rollback").expect("the button").click().expect("clicked");
    wait_for_text(&tab, "#result", &format!("partial rollback by {WHO}"), Duration::from_secs(20));
    wait_for_text(&tab, "#oplog", "partial rollback", Duration::from_secs(10));
    screenshot(&tab, "console.png");
    finished(child);
    assert!(errors.lock().expect("lock").is_empty(), "the console threw: {:?}", errors.lock());
    let report = dir.join("report.html").canonicalize().expect("report.html");
    let page = browser.new_tab().expect("a tab");
    page.navigate_to(&format!("file://{}", report.display()))
        .expect("navigates")
        .wait_until_navigated()
        .expect("loads");
    let card = wait_for_text(&page, "#scorecard", "posim-auto (reference)", Duration::from_secs(10));
    assert!(card.contains("partial rollback by ana.souza"), "{card}");
    page.find_element("#scorecard").expect("the scorecard").scroll_into_view().expect("scrolled");
    screenshot(&page, "scorecard.png");
    keep_the_report(dir);
    assert_acted_on(dir)
}

#[test]
#[ignore = "needs PostgreSQL and Chromium"]
fn the_console_in_chromium_and_posim_op_give_the_same_log_entries() {
    let by_page = tempfile::tempdir().expect("a temp dir");
    let by_shell = tempfile::tempdir().expect("a temp dir");
    let shell_dir = by_shell.path().to_path_buf();
    // Two game days at once, each with its own stack, database and world.
    let shell = std::thread::spawn(move || driven_by_posim_op(&shell_dir));
    let browser = chromium();
    let from_page = driven_through_the_console(&browser, by_page.path());
    let from_shell = shell.join().expect("the posim op game day");
    assert_eq!(from_page, from_shell);
}

/// Nobody acts; besides the sealed incident B, the facilitator sets
/// incident A off from a shell at the start: its faults fire from then on,
/// and posim-auto's reference run meets it too.
#[test]
#[ignore = "needs PostgreSQL"]
fn a_live_game_day_nobody_acts_on_shows_the_incidents_undetected() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (child, _) = game_day(dir.path(), "120", &[]);
    let op = |name: &str| posim().arg("op").arg("--run").arg(dir.path()).args(["inject", name]).output();
    let unknown = op("psp_error").expect("posim op runs");
    assert_eq!(unknown.status.code(), Some(1), "{}", said(&unknown));
    assert!(said(&unknown).contains("not on this game day's menu"), "{}", said(&unknown));
    let set_off = op("A").expect("posim op runs");
    assert_eq!(set_off.status.code(), Some(0), "{}", said(&set_off));
    assert!(said(&set_off).contains("inject by facilitator"), "{}", said(&set_off));
    let output = child.wait_with_output().expect("posim gameday ends");
    assert_eq!(output.status.code(), Some(1), "nobody rolled back\n{}", said(&output));
    assert!(said(&output).contains("incident B: UNDETECTED"), "{}", said(&output));
    assert!(said(&output).contains("incident A: UNDETECTED"), "{}", said(&output));
    let summary = read_json(&dir.path().join("summary.json"));
    assert_nobody_acted(&summary);
    let set_at = summary["scorecard"]["incidents"][0]["at_ms"].as_u64().expect("A was set off first");
    let auto = &summary["scorecard"]["reference"]["incidents"];
    assert!(
        auto.as_array().is_some_and(|all| all.iter().any(|i| i["incident"] == "A" && i["at_ms"] == set_at)),
        "{auto}"
    );
    let trace = std::fs::read_to_string(dir.path().join("trace.jsonl")).expect("trace.jsonl");
    let lost: Vec<Value> = trace
        .lines()
        .filter(|line| line.contains("iot_command_lost"))
        .map(|line| serde_json::from_str(line).expect("a trace line"))
        .collect();
    assert!(!lost.is_empty(), "incident A's start commands were lost");
    assert!(lost.iter().all(|record| record["at"].as_u64() >= Some(set_at)), "none before it was set off");
}

#[test]
#[ignore = "needs PostgreSQL"]
fn beyond_loopback_the_console_needs_a_token_and_every_action_carries_it() {
    let out = tempfile::tempdir().expect("a temp dir");
    let open = posim().args(["gameday", GAME_DAY, "--listen", "0.0.0.0:0", "--out"]).arg(out.path()).output();
    let open = open.expect("posim runs");
    assert_eq!(open.status.code(), Some(2), "{}", said(&open));
    assert!(said(&open).contains("--token"), "{}", said(&open));
    let (mut child, url) = game_day(out.path(), "120", &["--no-trace", "--token", "s3cret"]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let status =
        |path: &str| runtime.block_on(async { reqwest::get(format!("{url}{path}")).await.map(|r| r.status()) });
    assert_eq!(status("/api/state").ok().map(|s| s.as_u16()), Some(401), "the state needs the token too");
    assert_eq!(status("/api/state?token=s3cret").ok().map(|s| s.as_u16()), Some(200));
    let op = |token: Option<&str>| {
        let mut command = posim();
        command.env_remove("POSIM_TOKEN").arg("op").arg("--run").arg(out.path());
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        command.args(["freeze", "--who", WHO, "--evidence", "token check"]).output().expect("posim op runs")
    };
    let without = op(None);
    assert_eq!(without.status.code(), Some(1), "{}", said(&without));
    assert!(said(&without).contains("401") && said(&without).contains("token"), "{}", said(&without));
    let wrong = op(Some("guess"));
    assert_eq!(wrong.status.code(), Some(1), "{}", said(&wrong));
    let with = op(Some("s3cret"));
    assert_eq!(with.status.code(), Some(0), "{}", said(&with));
    assert!(said(&with).contains(&format!("freeze by {WHO}")), "{}", said(&with));
    // SIGTERM: the game day stops its stack and database as Ctrl-C would.
    let pid = i32::try_from(child.id()).expect("a pid");
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let _ = child.wait();
}
