//! wrk (Debian's package), the reference generator of `posim generator`,
//! as data: the command line it is run with and what its `--latency`
//! output says (Requests/sec, the latency distribution, errors). Sans-IO:
//! the process itself is run by `load::generator`.

/// wrk's threads: two, as the issue names (`-t2`), but never more than the
/// connections (wrk refuses fewer connections than threads).
pub fn threads(connections: u32) -> u32 {
    connections.clamp(1, 2)
}

/// `-t2 -cN -dDs --latency URL`.
pub fn args(connections: u32, seconds: u64, url: &str) -> Vec<String> {
    vec![
        format!("-t{}", threads(connections)),
        format!("-c{connections}"),
        format!("-d{seconds}s"),
        "--latency".into(),
        url.into(),
    ]
}

/// What one wrk run reports.
#[derive(Clone, Debug, PartialEq)]
pub struct WrkOutput {
    /// `Requests/sec:` — every response, whatever its status.
    pub requests_per_second: f64,
    /// `N requests in Ts`.
    pub requests: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// The `Latency` row's Max column.
    pub max_ms: f64,
    /// `Non-2xx or 3xx responses:` (absent when there were none).
    pub non_2xx: u64,
    /// `Socket errors:` connect + read + write + timeout (absent when none).
    pub socket_errors: u64,
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("wrk's output has no {missing}")]
pub struct WrkParseError {
    pub missing: &'static str,
}

fn missing(what: &'static str) -> WrkParseError {
    WrkParseError { missing: what }
}

/// Reads wrk's `--latency` output.
pub fn parse(output: &str) -> Result<WrkOutput, WrkParseError> {
    let value = |prefix: &str| output.lines().map(str::trim).find_map(|line| line.strip_prefix(prefix));
    let rate = value("Requests/sec:").and_then(|rest| rest.trim().parse::<f64>().ok());
    let requests_per_second = rate.ok_or_else(|| missing("`Requests/sec:` line"))?;
    let (requests, seconds) = output.lines().find_map(total).ok_or_else(|| missing("`N requests in Ts` line"))?;
    let percentile = |label: &str| value(label).and_then(|rest| duration_ms(rest.trim()));
    let max_ms = value("Latency").and_then(latency_max).ok_or_else(|| missing("`Latency` thread-stats row"))?;
    let socket_errors = value("Socket errors:").map_or(0, socket_error_sum);
    Ok(WrkOutput {
        requests_per_second,
        requests,
        seconds,
        p50_ms: percentile("50%").ok_or_else(|| missing("50% latency (was --latency given?)"))?,
        p90_ms: percentile("90%").ok_or_else(|| missing("90% latency"))?,
        p99_ms: percentile("99%").ok_or_else(|| missing("99% latency"))?,
        max_ms,
        non_2xx: value("Non-2xx or 3xx responses:").and_then(|rest| rest.trim().parse().ok()).unwrap_or(0),
        socket_errors,
    })
}

/// `  123456 requests in 10.00s, 17.3MB read` → (123456, 10.0).
fn total(line: &str) -> Option<(u64, f64)> {
    let (count, rest) = line.trim().split_once(" requests in ")?;
    let seconds = rest.split(',').next()?.trim().strip_suffix('s')?;
    Some((count.trim().parse().ok()?, seconds.parse().ok()?))
}

/// The `Latency   Avg Stdev Max +/-Stdev` row → Max in milliseconds.
fn latency_max(row: &str) -> Option<f64> {
    duration_ms(row.split_whitespace().nth(2)?)
}

/// `connect 0, read 2, write 0, timeout 1` → 3.
fn socket_error_sum(rest: &str) -> u64 {
    let counts = rest.split(',').filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok());
    counts.fold(0, u64::saturating_add)
}

/// wrk's time units (`us`, `ms`, `s`, `m`, `h`, as its `units.c` prints them) → milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    let number: f64 = number.parse().ok()?;
    number.is_finite().then_some(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wrk 4.1.0's output, as Debian's package prints it.
    const CLEAN: &str = "Running 10s test @ http://127.0.0.1:40123/health
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.21ms  810.33us  21.44ms   88.12%
    Req/Sec    27.15k     1.90k   31.02k    71.00%
  Latency Distribution
     50%    1.04ms
     75%    1.42ms
     90%    2.01ms
     99%    4.37ms
  540321 requests in 10.00s, 98.42MB read
Requests/sec:  54021.37
Transfer/sec:      9.84MB
";

    #[test]
    fn the_rate_percentiles_and_totals_are_read_off_wrk_s_output() {
        let parsed = parse(CLEAN).expect("parses");
        assert_eq!(parsed.requests_per_second, 54021.37);
        assert_eq!((parsed.requests, parsed.seconds), (540_321, 10.0));
        assert_eq!((parsed.p50_ms, parsed.p90_ms, parsed.p99_ms, parsed.max_ms), (1.04, 2.01, 4.37, 21.44));
        assert_eq!((parsed.non_2xx, parsed.socket_errors), (0, 0));
    }

    #[test]
    fn units_from_microseconds_to_hours_become_milliseconds() {
        assert_eq!(duration_ms("810.00us"), Some(0.81));
        assert_eq!(duration_ms("2.00s"), Some(2000.0));
        assert_eq!(duration_ms("1.50m"), Some(90_000.0));
        assert_eq!(duration_ms("1.00h"), Some(3_600_000.0));
        assert_eq!(duration_ms("3.00ns"), None);
        assert_eq!(duration_ms("12"), None);
    }

    #[test]
    fn error_lines_are_counted() {
        let text = CLEAN.replace(
            "Requests/sec:",
            "  Socket errors: connect 0, read 2, write 0, timeout 5\n  Non-2xx or 3xx responses: 17\nRequests/sec:",
        );
        let parsed = parse(&text).expect("parses");
        assert_eq!((parsed.non_2xx, parsed.socket_errors), (17, 7));
    }

    #[test]
    fn output_without_a_rate_or_a_distribution_is_an_error_naming_what_is_missing() {
        let failed = "unable to connect to 127.0.0.1:1 Connection refused\n";
        assert_eq!(parse(failed).map_err(|e| e.missing), Err("`Requests/sec:` line"));
        let without_latency = CLEAN.replace("     50%    1.04ms\n", "");
        assert_eq!(parse(&without_latency).map_err(|e| e.missing), Err("50% latency (was --latency given?)"));
    }

    #[test]
    fn the_command_line_is_the_issue_s_with_no_more_threads_than_connections() {
        assert_eq!(
            args(64, 10, "http://127.0.0.1:1/health"),
            ["-t2", "-c64", "-d10s", "--latency", "http://127.0.0.1:1/health"]
        );
        assert_eq!(args(1, 2, "u")[0], "-t1");
    }
}
