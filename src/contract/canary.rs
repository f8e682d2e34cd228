//! The operator's side of the contract: the deploy-time environment of the
//! stack, above all the canary gate. A payments stack fails closed: any
//! invalid value stops it at start-up with a message naming the variable.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{names, validate};
use crate::time::{Millis, SECOND};

pub const MODE_VAR: &str = "PAYMENTS_POS_CANARY_MODE";
pub const ALLOWLIST_VAR: &str = "PAYMENTS_POS_CANARY_ALLOWLIST";
pub const BLOCKLIST_VAR: &str = "PAYMENTS_POS_CANARY_BLOCKLIST";
pub const TTL_VAR: &str = "PAYMENTS_CYCLE_TTL_SECONDS";
pub const IOT_TIMEOUT_VAR: &str = "PAYMENTS_IOT_TIMEOUT_MS";
/// The gateway's command expiry in the stack's wall time (CONTRACT.md §4.2).
pub const COMMAND_EXPIRY_VAR: &str = "IOT_GATEWAY_COMMAND_EXPIRY_MS";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum CanaryMode {
    Off,
    Allowlist,
    Blocklist,
}

/// The canary gate a replica applies. Lists are kept sorted and unique.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CanaryConfig {
    pub mode: CanaryMode,
    pub allowlist: Vec<Uuid>,
    pub blocklist: Vec<Uuid>,
}

impl CanaryConfig {
    pub fn new(mode: CanaryMode, mut allowlist: Vec<Uuid>, mut blocklist: Vec<Uuid>) -> Self {
        allowlist.sort_unstable();
        allowlist.dedup();
        blocklist.sort_unstable();
        blocklist.dedup();
        CanaryConfig { mode, allowlist, blocklist }
    }

    pub fn off() -> Self {
        CanaryConfig::new(CanaryMode::Off, Vec::new(), Vec::new())
    }

    /// May `condominio` authorize a new payment under this gate?
    pub fn admits(&self, condominio: Uuid) -> bool {
        match self.mode {
            CanaryMode::Off => true,
            CanaryMode::Allowlist => self.allowlist.binary_search(&condominio).is_ok(),
            CanaryMode::Blocklist => self.blocklist.binary_search(&condominio).is_err(),
        }
    }

    /// The env lines that deploy this gate, as the runbook writes them.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let join = |list: &[Uuid]| list.iter().map(Uuid::to_string).collect::<Vec<_>>().join(",");
        vec![
            (MODE_VAR, self.mode.to_string()),
            (ALLOWLIST_VAR, join(&self.allowlist)),
            (BLOCKLIST_VAR, join(&self.blocklist)),
        ]
    }

    /// Parses the gate from the environment (`lookup` returns a variable's value).
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mode_text = lookup(MODE_VAR).unwrap_or_else(|| "off".to_string());
        let mode = names::parse::<CanaryMode>("mode", mode_text.trim()).map_err(|_| ConfigError {
            variable: MODE_VAR,
            value: mode_text.clone(),
            reason: format!("expected one of `{}`", names::all::<CanaryMode>().join("`, `")),
        })?;
        let allowlist = parse_uuid_list(ALLOWLIST_VAR, lookup(ALLOWLIST_VAR).as_deref())?;
        let blocklist = parse_uuid_list(BLOCKLIST_VAR, lookup(BLOCKLIST_VAR).as_deref())?;
        Ok(CanaryConfig::new(mode, allowlist, blocklist))
    }

    /// A one-line description: `allowlist [3]`, `off`, `blocklist [1]`.
    pub fn summary(&self) -> String {
        match self.mode {
            CanaryMode::Off => "off".to_string(),
            CanaryMode::Allowlist => format!("allowlist [{}]", self.allowlist.len()),
            CanaryMode::Blocklist => format!("blocklist [{}]", self.blocklist.len()),
        }
    }
}

/// Parses a comma-separated list of UUIDs, blanks trimmed; empty is allowed.
fn parse_uuid_list(variable: &'static str, text: Option<&str>) -> Result<Vec<Uuid>, ConfigError> {
    let text = text.unwrap_or("");
    let items = text.split(',').map(str::trim).filter(|item| !item.is_empty());
    items
        .map(|item| {
            validate::uuid("entry", item).map_err(|reason| ConfigError { variable, value: text.to_string(), reason })
        })
        .collect()
}

/// The stack's timing settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StackSettings {
    pub cycle_ttl: Millis,
    pub iot_timeout: Millis,
}

impl Default for StackSettings {
    fn default() -> Self {
        StackSettings { cycle_ttl: 900 * SECOND, iot_timeout: 5 * SECOND }
    }
}

impl StackSettings {
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = StackSettings::default();
        let ttl_seconds = parse_bounded(TTL_VAR, lookup(TTL_VAR), TTL_SECONDS_MAX)?;
        let cycle_ttl = ttl_seconds.map_or(defaults.cycle_ttl, |seconds| seconds * SECOND);
        let iot_timeout = parse_bounded(IOT_TIMEOUT_VAR, lookup(IOT_TIMEOUT_VAR), IOT_TIMEOUT_MS_MAX)?
            .unwrap_or(defaults.iot_timeout);
        Ok(StackSettings { cycle_ttl, iot_timeout })
    }
}

/// A week: a longer TTL is a typo, and the bound keeps `ttl × 1000` and
/// every deadline computed from it far from overflowing.
pub const TTL_SECONDS_MAX: u64 = 7 * 24 * 3600;

/// Ten minutes: the lease is twice this, and no gateway waits longer.
pub const IOT_TIMEOUT_MS_MAX: u64 = 10 * 60 * 1000;

/// The reference stack's `PAYMENTS_PSP_TIMEOUT_MS`, at most ten minutes as
/// the gateway's (an unbounded value used to be accepted).
pub const PSP_TIMEOUT_VAR: &str = "PAYMENTS_PSP_TIMEOUT_MS";
pub const PSP_TIMEOUT_MS_MAX: u64 = 10 * 60 * 1000;

/// A whole number in `1..=max`, or the variable refused by name.
pub fn parse_bounded(variable: &'static str, text: Option<String>, max: u64) -> Result<Option<u64>, ConfigError> {
    let Some(text) = text else { return Ok(None) };
    match text.trim().parse::<u64>() {
        Ok(value) if (1..=max).contains(&value) => Ok(Some(value)),
        _ => Err(ConfigError { variable, value: text, reason: format!("expected a whole number from 1 to {max}") }),
    }
}

/// Everything a deploy applies: the gate and the timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployConfig {
    pub canary: CanaryConfig,
    pub settings: StackSettings,
}

impl DeployConfig {
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(DeployConfig { canary: CanaryConfig::from_env(lookup)?, settings: StackSettings::from_env(lookup)? })
    }

    /// Reads from a map, as tests and the launcher build environments.
    pub fn from_map(env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        DeployConfig::from_env(&|name| env.get(name).cloned())
    }
}

/// A refused deploy-time value, naming the variable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=`{}` is refused: {}", self.variable, redacted(&self.value), self.reason)
    }
}

/// A value as it may be printed: a URL's password and any `password=`
/// parameter (a query's or libpq's `key=value`) are replaced by `***`.
pub fn redacted(value: &str) -> String {
    hide_password_parameters(&hide_userinfo_password(value))
}

/// The userinfo ends at the last `@`, not at the first `/`, `?` or `#`: a
/// password written without percent-encoding may hold any of them. A value
/// without `://` (`user:pw@host`, `postgres:/u:pw@h`) is hidden from its
/// first `:` on — too much is shown as `***` rather than a password shown.
fn hide_userinfo_password(value: &str) -> String {
    let Some((before, host)) = value.rsplit_once('@') else { return value.to_string() };
    let (scheme, userinfo) = match before.split_once("://") {
        Some((scheme, userinfo)) => (format!("{scheme}://"), userinfo),
        None => (String::new(), before),
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}{user}:***@{host}"),
        None => value.to_string(),
    }
}

/// `password=…` up to the next `&` or blank (or its closing quote).
fn hide_password_parameters(text: &str) -> String {
    const KEY: &str = "password=";
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.to_ascii_lowercase().find(KEY) {
        let (head, tail) = rest.split_at(at + KEY.len());
        shown.push_str(head);
        shown.push_str("***");
        let end = match tail.strip_prefix('\'') {
            Some(quoted) => quoted.find('\'').map_or(tail.len(), |close| close + 2),
            None => tail.find(|c: char| c == '&' || c.is_whitespace()).unwrap_or(tail.len()),
        };
        rest = &tail[end..];
    }
    shown.push_str(rest);
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "6f1c2a7e-0d4b-4c8e-9a51-3b2f7d9e8c01";
    const B: &str = "0b8e5d3c-6a2f-4e19-8c7d-5f4a3b2c1d0e";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_gate_follows_the_mode() {
        let a = Uuid::parse_str(A).unwrap();
        let b = Uuid::parse_str(B).unwrap();
        let allow = DeployConfig::from_map(&env(&[(MODE_VAR, "allowlist"), (ALLOWLIST_VAR, &format!(" {A} ,"))]));
        let allow = allow.expect("valid allowlist").canary;
        assert!(allow.admits(a) && !allow.admits(b));
        let block = CanaryConfig::new(CanaryMode::Blocklist, vec![], vec![a]);
        assert!(!block.admits(a) && block.admits(b));
        assert!(CanaryConfig::off().admits(a));
        let empty = CanaryConfig::new(CanaryMode::Allowlist, vec![], vec![]);
        assert!(!empty.admits(a), "an empty allowlist admits none");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let error = DeployConfig::from_map(&env(&[(MODE_VAR, "canary")])).unwrap_err();
        assert_eq!(error.variable, MODE_VAR);
        let typo = format!("{A},{}", &B[..35]);
        let error = DeployConfig::from_map(&env(&[(MODE_VAR, "allowlist"), (ALLOWLIST_VAR, &typo)])).unwrap_err();
        assert_eq!(error.variable, ALLOWLIST_VAR);
        assert!(error.to_string().contains(ALLOWLIST_VAR));
        let error = DeployConfig::from_map(&env(&[(TTL_VAR, "15m")])).unwrap_err();
        assert_eq!(error.variable, TTL_VAR);
    }

    #[test]
    fn timings_near_their_types_limit_are_refused_not_wrapped() {
        for (variable, value) in [
            (TTL_VAR, "18446744073709551"),
            (TTL_VAR, "604801"),
            (IOT_TIMEOUT_VAR, "18446744073709551615"),
            (IOT_TIMEOUT_VAR, "600001"),
            (IOT_TIMEOUT_VAR, "0"),
        ] {
            let error = DeployConfig::from_map(&env(&[(variable, value)])).expect_err(value);
            assert_eq!(error.variable, variable, "{value}");
        }
        let longest = env(&[(TTL_VAR, "604800"), (IOT_TIMEOUT_VAR, "600000")]);
        let settings = DeployConfig::from_map(&longest).expect("the bounds themselves are fine").settings;
        assert_eq!((settings.cycle_ttl, settings.iot_timeout), (604_800_000, 600_000));
    }

    #[test]
    fn a_refused_url_never_shows_its_password() {
        let error = ConfigError {
            variable: "DATABASE_URL",
            value: "postgres://posim:s3cret@127.0.0.1:5432/payments?sslmode=disable".into(),
            reason: "bad".into(),
        };
        let shown = error.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://posim:***@127.0.0.1:5432/payments?sslmode=disable"), "{shown}");
        assert_eq!(redacted("http://127.0.0.1:8080/x"), "http://127.0.0.1:8080/x");
        assert_eq!(redacted("postgres://user@host/db"), "postgres://user@host/db");
        assert_eq!(redacted("postgres://u:p@ss@host/db"), "postgres://u:***@host/db", "the last @ ends the userinfo");
        assert_eq!(redacted("not a url"), "not a url");
    }

    /// Found by tests/fuzz_env.rs: a raw `/`, `?` or `#` in a password, a
    /// password in the query or in libpq's form, or a URL without `//`,
    /// showed the password.
    #[test]
    fn a_password_is_hidden_wherever_it_is_written() {
        for (value, hidden) in [
            ("postgres://u:pa/ss@host/db", "postgres://u:***@host/db"),
            ("postgres://u:pa?s#s@host:5432/db", "postgres://u:***@host:5432/db"),
            (
                "postgres://host/db?user=u&password=s3cret&sslmode=disable",
                "postgres://host/db?user=u&password=***&sslmode=disable",
            ),
            ("host=h user=u PASSWORD=s3cret dbname=d", "host=h user=u PASSWORD=*** dbname=d"),
            ("host=h password='s3 cret' dbname=d", "host=h password=*** dbname=d"),
            ("postgres:/u:s3cret@host", "postgres:***@host"),
            ("u:s3cret@host/db", "u:***@host/db"),
        ] {
            assert_eq!(redacted(value), hidden, "{value}");
        }
    }
}
