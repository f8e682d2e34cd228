//! Fuzzing the stack's environment (CONTRACT.md §2): generated values for
//! every variable `posim stack serve` reads — huge, negative, unicode, empty,
//! URLs with passwords — never panic; a refusal names the variable that is
//! wrong and never shows a password; an accepted value is within its
//! documented bounds. A few refused environments go through the real binary.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::process::Command;

use posim::contract::canary::{
    ALLOWLIST_VAR, BLOCKLIST_VAR, IOT_TIMEOUT_MS_MAX, IOT_TIMEOUT_VAR, MODE_VAR, PSP_TIMEOUT_MS_MAX, PSP_TIMEOUT_VAR,
    TTL_SECONDS_MAX, TTL_VAR,
};
use posim::contract::{ConfigError, DeployConfig};
use posim::stack::http::ServeConfig;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Every variable the stack reads.
const VARIABLES: &[&str] = &[
    "PORT",
    "BIND_ADDRESS",
    "DATABASE_URL",
    "PSP_BASE_URL",
    "IOT_GATEWAY_URL",
    MODE_VAR,
    ALLOWLIST_VAR,
    BLOCKLIST_VAR,
    TTL_VAR,
    IOT_TIMEOUT_VAR,
    PSP_TIMEOUT_VAR,
    "POSIM_STACK_BUG",
];

const UUID: &str = "6f1c2a7e-0d4b-4c8e-9a51-3b2f7d9e8c01";

/// A generated value, and the password it hides, if any.
#[derive(Clone, Debug)]
struct Value {
    text: String,
    secret: Option<String>,
}

impl Value {
    fn plain(text: impl Into<String>) -> Value {
        Value { text: text.into(), secret: None }
    }
}

fn plain(strategy: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Value> {
    strategy.prop_map(Value::plain).boxed()
}

/// Numbers as an operator might mistype them: huge, negative, signed,
/// padded, fractional, exponent, other scripts' digits.
fn number() -> BoxedStrategy<Value> {
    let odd = select(vec![
        "",
        " ",
        "0",
        "-0",
        "+5",
        " 42 ",
        "1e3",
        "5.0",
        "0x10",
        "١٢",
        "１２",
        "9999999999999999999999999999999999999999",
    ]);
    plain(prop_oneof![
        3 => (0u64..1_000_000).prop_map(|n| n.to_string()),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => (u64::MAX - 2_000..=u64::MAX).prop_map(|n| n.to_string()),
        2 => odd.prop_map(str::to_string),
    ])
}

/// A password that cannot appear in an error text by chance. In a URL's
/// userinfo it may hold the characters that end an authority; as a
/// parameter, not those that end the parameter (`&`, a blank).
fn password() -> impl Strategy<Value = (String, String)> {
    let userinfo = "[A-Za-z0-9/@#?:%!&=+ ]{6,14}".prop_map(|tail| format!("Pw{tail}"));
    let parameter = "[A-Za-z0-9/@#?:%!=+]{6,14}".prop_map(|tail| format!("Pw{tail}"));
    (userinfo, parameter)
}

/// URLs, well- and ill-formed, some with a password in the userinfo or
/// in the query, some in libpq's `key=value` form.
fn url() -> BoxedStrategy<Value> {
    let scheme = select(vec!["postgres://", "postgresql://", "http://", "https://", "mysql://", "", "postgres:/"]);
    let host = select(vec!["127.0.0.1", "db", "[::1]", "höst", "", "a b"]);
    let tail = select(vec!["", "/", ":5432/payments", ":99999/db", "/db?sslmode=disable", "/db#x", "//"]);
    let shape = 0..4u8;
    (scheme, "[a-z]{1,6}", password(), host, tail, shape)
        .prop_map(|(scheme, user, (in_userinfo, as_parameter), host, tail, shape)| {
            let (text, secret) = match shape {
                0 => (format!("{scheme}{host}{tail}"), None),
                1 => (format!("{scheme}{user}:{in_userinfo}@{host}{tail}"), Some(in_userinfo)),
                2 => (format!("{scheme}{host}{tail}?user={user}&password={as_parameter}"), Some(as_parameter)),
                _ => (format!("host={host} user={user} password={as_parameter} dbname=payments"), Some(as_parameter)),
            };
            Value { text, secret }
        })
        .boxed()
}

fn uuid_list() -> BoxedStrategy<Value> {
    let item = prop_oneof![
        3 => Just(UUID.to_string()),
        2 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        1 => Just(UUID.to_uppercase()),
        1 => Just(UUID.replace('-', "")),
        1 => Just(format!("{{{UUID}}}")),
        1 => Just(UUID[..35].to_string()),
        1 => "\\PC{0,12}",
    ];
    let separator = select(vec![",", ", ", " , ", ",,", ";"]);
    plain((proptest::collection::vec(item, 0..5), separator).prop_map(|(items, sep)| items.join(sep)))
}

fn words(names: Vec<&'static str>) -> BoxedStrategy<Value> {
    plain(prop_oneof![4 => select(names).prop_map(str::to_string), 1 => "\\PC{0,12}"])
}

/// Anything at all: control characters, unicode, long text.
fn anything() -> BoxedStrategy<Value> {
    plain(prop_oneof![3 => "\\PC{0,40}", 1 => ".{0,40}", 1 => "[0-9]{100,300}"])
}

/// A value of the shape the variable expects (often out of range), or anything.
fn value_for(variable: &str) -> BoxedStrategy<Value> {
    let typed = match variable {
        "DATABASE_URL" | "PSP_BASE_URL" | "IOT_GATEWAY_URL" => url(),
        "BIND_ADDRESS" => words(vec!["127.0.0.1", "0.0.0.0", "::1", "::", " 10.0.0.1 ", "256.0.0.1", "localhost"]),
        MODE_VAR => words(vec!["off", "allowlist", "blocklist", " blocklist ", "ALLOWLIST", "Off", "allow list", ""]),
        ALLOWLIST_VAR | BLOCKLIST_VAR => uuid_list(),
        "POSIM_STACK_BUG" => {
            words(vec!["", "nonidempotent-confirm", "unfenced-start,late-capture-kept", " , ", "gremlins", "NONE"])
        }
        _ => number(),
    };
    prop_oneof![4 => typed, 1 => anything()].boxed()
}

/// Each variable absent or given; the required ones usually valid.
fn environment() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    let entries: Vec<_> = VARIABLES
        .iter()
        .map(|&variable| {
            let (absent, valid) = if required(variable) { (1, 12) } else { (4, 4) };
            let given = value_for(variable).prop_map(Some);
            let good = Just(Some(Value::plain(known_good(variable))));
            prop_oneof![absent => Just(None), 2 => given, valid => good].prop_map(move |value| (variable, value))
        })
        .collect();
    entries.prop_map(|entries| entries.into_iter().filter_map(|(name, value)| Some((name, value?))).collect())
}

fn required(variable: &str) -> bool {
    matches!(variable, "DATABASE_URL" | "PSP_BASE_URL" | "IOT_GATEWAY_URL")
}

/// A value every variable accepts.
fn known_good(variable: &str) -> String {
    match variable {
        "DATABASE_URL" => "postgres://posim@127.0.0.1:5432/payments".into(),
        "PSP_BASE_URL" | "IOT_GATEWAY_URL" => "http://127.0.0.1:9000".into(),
        "BIND_ADDRESS" => "127.0.0.1".into(),
        MODE_VAR => "allowlist".into(),
        ALLOWLIST_VAR | BLOCKLIST_VAR | "POSIM_STACK_BUG" => String::new(),
        _ => "1000".into(),
    }
}

fn serve_config(env: &BTreeMap<&str, String>) -> Result<ServeConfig, ConfigError> {
    ServeConfig::from_env(&|name| env.get(name).cloned())
}

fn deploy_config(env: &BTreeMap<&str, String>) -> Result<DeployConfig, ConfigError> {
    DeployConfig::from_env(&|name| env.get(name).cloned())
}

/// A refusal names a variable the stack reads, shows no password, and
/// names the variable at fault: with that one set right, the refusal goes
/// or names another.
fn refusal_is_sound(
    error: &ConfigError,
    env: &BTreeMap<&str, String>,
    secrets: &[String],
    again: fn(&BTreeMap<&str, String>) -> Result<(), ConfigError>,
) -> Result<(), TestCaseError> {
    let shown = error.to_string();
    prop_assert!(VARIABLES.contains(&error.variable), "unknown variable in `{}`", shown);
    prop_assert!(shown.starts_with(error.variable), "the text names the variable first: `{}`", shown);
    for secret in secrets {
        prop_assert!(!shown.contains(secret.as_str()), "the password `{}` is shown: `{}`", secret, shown);
    }
    let mut fixed = env.clone();
    fixed.insert(error.variable, known_good(error.variable));
    if let Err(next) = again(&fixed) {
        prop_assert_ne!(next.variable, error.variable, "refused again with a good value: {}", next);
    }
    Ok(())
}

/// An accepted environment is within CONTRACT.md §2's bounds.
fn accepted_is_bounded(config: &ServeConfig, env: &BTreeMap<&str, String>) -> Result<(), TestCaseError> {
    let settings = config.deploy.settings;
    prop_assert!((1_000..=TTL_SECONDS_MAX * 1_000).contains(&settings.cycle_ttl), "ttl {}", settings.cycle_ttl);
    prop_assert!((1..=IOT_TIMEOUT_MS_MAX).contains(&settings.iot_timeout), "iot {}", settings.iot_timeout);
    let psp = config.psp_timeout.as_millis();
    prop_assert!((1..=u128::from(PSP_TIMEOUT_MS_MAX)).contains(&psp), "psp {}", psp);
    prop_assert!(config.database_url.starts_with("postgres://") || config.database_url.starts_with("postgresql://"));
    prop_assert!(config.psp_base_url.starts_with("http://") && config.iot_gateway_url.starts_with("http://"));
    let canary = &config.deploy.canary;
    for list in [&canary.allowlist, &canary.blocklist] {
        prop_assert!(list.windows(2).all(|pair| pair[0] < pair[1]), "sorted and unique: {:?}", list);
    }
    if let Some(port) = env.get("PORT") {
        prop_assert_eq!(port.trim().parse::<u16>().ok(), Some(config.port));
    }
    Ok(())
}

fn one_environment(entries: &[(&'static str, Value)]) -> Result<(), TestCaseError> {
    let env: BTreeMap<&str, String> = entries.iter().map(|(name, value)| (*name, value.text.clone())).collect();
    let secrets: Vec<String> = entries.iter().filter_map(|(_, value)| value.secret.clone()).collect();
    match serve_config(&env) {
        Ok(config) => accepted_is_bounded(&config, &env)?,
        Err(error) => refusal_is_sound(&error, &env, &secrets, |env| serve_config(env).map(drop))?,
    }
    if let Err(error) = deploy_config(&env) {
        refusal_is_sound(&error, &env, &secrets, |env| deploy_config(env).map(drop))?;
    }
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

#[test]
fn every_generated_environment_is_refused_by_name_or_bounded() {
    const CASES: u32 = 4_000;
    let (accepted, refused) = (Cell::new(0u32), Cell::new(0u32));
    let outcome = runner(CASES).run(&environment(), |entries| {
        let env: BTreeMap<&str, String> = entries.iter().map(|(name, value)| (*name, value.text.clone())).collect();
        let counter = if serve_config(&env).is_ok() { &accepted } else { &refused };
        counter.set(counter.get() + 1);
        one_environment(&entries)
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    let (accepted, refused) = (accepted.get(), refused.get());
    eprintln!("fuzz_env: {CASES} generated environments ({accepted} accepted, {refused} refused)");
    assert!(accepted > CASES / 50 && refused > CASES / 50, "both outcomes are exercised: {accepted} / {refused}");
}

#[test]
fn the_binary_refuses_a_bad_environment_by_name_without_its_password() {
    const CASES: u32 = 24;
    let refused = Cell::new(0u32);
    let outcome = runner(CASES).run(&environment(), |entries| {
        let env: BTreeMap<&str, String> = entries.iter().map(|(name, value)| (*name, value.text.clone())).collect();
        // Only refused environments (an accepted one would start serving),
        // and none with a NUL, which no process environment can carry.
        let Err(expected) = serve_config(&env) else { return Ok(()) };
        if env.values().any(|value| value.contains('\0')) {
            return Ok(());
        }
        refused.set(refused.get() + 1);
        let mut command = Command::new(env!("CARGO_BIN_EXE_posim"));
        command.args(["stack", "serve"]).env_clear();
        command.envs(&env);
        let output = command.output().map_err(|error| TestCaseError::fail(error.to_string()))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        prop_assert_eq!(output.status.code(), Some(2), "{}", stderr);
        prop_assert!(stderr.contains("refusing to start"), "{}", stderr);
        prop_assert!(!stderr.contains("panicked"), "{}", stderr);
        let secrets = entries.iter().filter_map(|(_, value)| value.secret.as_deref());
        for secret in secrets {
            prop_assert!(!stderr.contains(secret), "the password `{}` is shown: {}", secret, stderr);
        }
        prop_assert!(stderr.contains(expected.variable), "{} not named: {}", expected.variable, stderr);
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    let refused = refused.get();
    eprintln!("fuzz_env: {CASES} environments through `posim stack serve` ({refused} refused ones run)");
    assert!(refused > 0, "at least one refused environment went through the binary");
}
