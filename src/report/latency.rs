//! Latency per endpoint over the whole run: the time from each request sent
//! (`Event::Sent`) to what its sender heard (`Event::Heard`), as
//! percentiles and a log-bucketed histogram a chart can draw. Read off the
//! history alone, so both engines get it from the same code.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::Endpoint;
use crate::history::{Event, History};
use crate::time::Millis;

/// Upper bounds of the histogram's buckets (1-2-5 steps): wide enough for a
/// simulated millisecond and a terminal's minute-long timeout alike.
const BOUNDS_MS: [Millis; 17] =
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000];

/// One endpoint's latency distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointLatency {
    pub endpoint: Endpoint,
    /// Requests answered (a status heard).
    pub answered: u64,
    /// Requests whose sender heard nothing before its timeout (not in the percentiles).
    pub timed_out: u64,
    pub p50_ms: Millis,
    pub p90_ms: Millis,
    pub p99_ms: Millis,
    pub max_ms: Millis,
    /// From the first bucket with an answer to the last; a bucket holds the
    /// answers slower than the previous bound and at most `up_to_ms`.
    pub histogram: Vec<LatencyBucket>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBucket {
    /// None: slower than the last bound.
    pub up_to_ms: Option<Millis>,
    pub count: u64,
}

/// Every endpoint with a request sent, in the endpoints' order.
pub fn per_endpoint(history: &History) -> Vec<EndpointLatency> {
    let mut sent: Vec<Option<(Endpoint, Millis)>> = Vec::new();
    let mut heard: BTreeMap<Endpoint, (Vec<Millis>, u64)> = BTreeMap::new();
    for record in &history.records {
        match record.event {
            Event::Sent { request, endpoint, .. } => {
                let slot = request as usize;
                if sent.len() <= slot {
                    sent.resize(slot + 1, None);
                }
                sent[slot] = Some((endpoint, record.at));
                heard.entry(endpoint).or_default();
            }
            Event::Heard { request, status, .. } => {
                let Some(Some((endpoint, at))) = sent.get(request as usize).copied() else { continue };
                let (times, timed_out) = heard.entry(endpoint).or_default();
                match status {
                    Some(_) => times.push(record.at.saturating_sub(at)),
                    None => *timed_out += 1,
                }
            }
            _ => {}
        }
    }
    heard.into_iter().map(|(endpoint, (times, timed_out))| distribution(endpoint, times, timed_out)).collect()
}

fn distribution(endpoint: Endpoint, mut times: Vec<Millis>, timed_out: u64) -> EndpointLatency {
    times.sort_unstable();
    let at = |quantile: f64| nearest_rank(&times, quantile);
    EndpointLatency {
        endpoint,
        answered: times.len() as u64,
        timed_out,
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: times.last().copied().unwrap_or(0),
        histogram: histogram(&times),
    }
}

/// The smallest time at least `quantile` of the sorted times do not exceed.
fn nearest_rank(sorted: &[Millis], quantile: f64) -> Millis {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied().unwrap_or(0)
}

fn histogram(sorted: &[Millis]) -> Vec<LatencyBucket> {
    let mut buckets: Vec<LatencyBucket> = BOUNDS_MS
        .iter()
        .map(|&bound| Some(bound))
        .chain([None])
        .map(|up_to_ms| LatencyBucket { up_to_ms, count: 0 })
        .collect();
    for &time in sorted {
        let slot = BOUNDS_MS.iter().position(|&bound| time <= bound).unwrap_or(BOUNDS_MS.len());
        buckets[slot].count += 1;
    }
    let first = buckets.iter().position(|b| b.count > 0).unwrap_or(buckets.len());
    let last = buckets.iter().rposition(|b| b.count > 0).map_or(first, |last| last + 1);
    buckets[first..last].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(pairs: &[(u32, Endpoint, Millis, Option<Millis>)]) -> History {
        let mut events: Vec<(Millis, Event)> = Vec::new();
        for &(request, endpoint, sent, heard) in pairs {
            events.push((sent, Event::Sent { request, purchase: 0, endpoint, attempt: 1, twin: false }));
            let (at, status) = match heard {
                Some(after) => (sent + after, Some(200)),
                None => (sent + 30_000, None),
            };
            events.push((at, Event::Heard { request, status, error: None }));
        }
        events.sort_by_key(|(at, _)| *at);
        let mut history = History::default();
        for (at, event) in events {
            history.push(at, event);
        }
        history
    }

    #[test]
    fn percentiles_and_buckets_come_from_sent_to_heard() {
        let mut pairs: Vec<(u32, Endpoint, Millis, Option<Millis>)> =
            (0..100).map(|i| (i, Endpoint::Confirm, u64::from(i) * 10, Some(u64::from(i) + 1))).collect();
        pairs.push((100, Endpoint::Confirm, 5, None));
        pairs.push((101, Endpoint::Authorize, 7, Some(3_000)));
        let latency = per_endpoint(&history(&pairs));
        let [authorize, confirm] = latency.as_slice() else { panic!("two endpoints: {latency:?}") };
        assert_eq!((authorize.endpoint, authorize.answered, authorize.max_ms), (Endpoint::Authorize, 1, 3_000));
        assert_eq!(authorize.histogram, vec![LatencyBucket { up_to_ms: Some(5_000), count: 1 }]);
        assert_eq!((confirm.answered, confirm.timed_out), (100, 1));
        assert_eq!((confirm.p50_ms, confirm.p90_ms, confirm.p99_ms, confirm.max_ms), (50, 90, 99, 100));
        let counts: Vec<u64> = confirm.histogram.iter().map(|b| b.count).collect();
        assert_eq!(counts, vec![1, 1, 3, 5, 10, 30, 50], "1, 2, 3–5, 6–10, 11–20, 21–50, 51–100");
    }

    #[test]
    fn an_endpoint_only_timed_out_has_no_buckets() {
        let latency = per_endpoint(&history(&[(0, Endpoint::ExecuteCycle, 0, None)]));
        assert_eq!(latency[0].timed_out, 1);
        assert!(latency[0].histogram.is_empty());
        assert_eq!(latency[0].p99_ms, 0);
    }
}
