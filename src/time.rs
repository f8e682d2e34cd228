//! Time as posim counts it: milliseconds of runbook time since the start of a
//! run. The simulator never reads the wall clock; dates are derived from the
//! scenario's start instant only when a human reads them.

use std::time::{Duration, SystemTime};

/// Milliseconds since the start of the run (virtual in the simulator).
pub type Millis = u64;

pub const SECOND: Millis = 1_000;
pub const MINUTE: Millis = 60 * SECOND;
pub const HOUR: Millis = 60 * MINUTE;
pub const DAY: Millis = 24 * HOUR;

/// Parses a human duration such as `45m`, `1h 30m` or `500ms`.
pub fn parse_duration(text: &str) -> Result<Millis, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|error| format!("`{text}` is not a duration ({error}); write e.g. `45m`, `2h`, `500ms`"))?;
    u64::try_from(duration.as_millis()).map_err(|_| format!("`{text}` is too long"))
}

/// Formats a run-relative time as `HH:MM:SS` (days are added as `+Nd`).
pub fn clock(at: Millis) -> String {
    let seconds = at / SECOND;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let text = format!("{:02}:{:02}:{:02}", rest / 3600, (rest % 3600) / 60, rest % 60);
    if days > 0 { format!("{text}+{days}d") } else { text }
}

/// Formats a run-relative time as an RFC 3339 UTC instant, given the run's
/// start as seconds since the Unix epoch.
pub fn rfc3339(start_unix_seconds: u64, at: Millis) -> String {
    let instant = SystemTime::UNIX_EPOCH + Duration::from_secs(start_unix_seconds) + Duration::from_millis(at);
    humantime::format_rfc3339_millis(instant).to_string()
}

/// Parses an RFC 3339 instant into seconds since the Unix epoch.
pub fn parse_instant(text: &str) -> Result<u64, String> {
    let instant = humantime::parse_rfc3339(text.trim())
        .map_err(|error| format!("`{text}` is not an RFC 3339 instant ({error}); write e.g. `2026-12-01T08:00:00Z`"))?;
    instant
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|duration| duration.as_secs())
        .map_err(|_| format!("`{text}` is before 1970"))
}

/// Parses an RFC 3339 instant into milliseconds since the Unix epoch.
pub fn parse_instant_millis(text: &str) -> Result<Millis, String> {
    let instant = humantime::parse_rfc3339_weak(text.trim()).map_err(|error| format!("`{text}`: {error}"))?;
    let since = instant.duration_since(SystemTime::UNIX_EPOCH).map_err(|_| format!("`{text}` is before 1970"))?;
    u64::try_from(since.as_millis()).map_err(|_| format!("`{text}` is too far away"))
}

/// Milliseconds since the Unix epoch, now (the live engine's and the HTTP
/// stack's clock; never the simulator's).
pub fn wall_clock_millis() -> Millis {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}

/// Formats a duration in milliseconds for people: `950ms`, `12.5s`, `3m 20s`, `2h 5m`.
pub fn human(duration: Millis) -> String {
    if duration < SECOND {
        format!("{duration}ms")
    } else if duration < MINUTE {
        format!("{:.1}s", duration as f64 / SECOND as f64)
    } else if duration < HOUR {
        format!("{}m {}s", duration / MINUTE, (duration % MINUTE) / SECOND)
    } else {
        format!("{}h {}m", duration / HOUR, (duration % HOUR) / MINUTE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("45m"), Ok(45 * MINUTE));
        assert_eq!(parse_duration("1h 30m"), Ok(90 * MINUTE));
        assert!(parse_duration("soon").is_err());
        assert_eq!(human(90 * MINUTE), "1h 30m");
        assert_eq!(clock(HOUR + 61 * SECOND), "01:01:01");
    }

    #[test]
    fn instants_round_trip() {
        let start = parse_instant("2026-12-01T08:00:00Z").expect("valid instant");
        assert_eq!(rfc3339(start, 1_500), "2026-12-01T08:00:01.500Z");
    }
}
