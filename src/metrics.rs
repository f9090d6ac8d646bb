//! Prometheus metrics: the names (units in the names, no keys in labels), their descriptions,
//! the recorder, and a function per thing measured, which every layer may call (the HTTP
//! middleware that counts requests is [`crate::http::metrics`]).

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::StoreStats;

/// Records the replica has yet to apply, per topic: the partition's end offset minus the
/// applied offset.
pub const CONSUMER_LAG: &str = "kvstore_consumer_lag_records";
/// The offset after the last record applied, per topic.
pub const APPLIED_OFFSET: &str = "kvstore_topic_applied_offset";
/// The partition's end offset as of the last fetch, per topic.
pub const END_OFFSET: &str = "kvstore_topic_end_offset";
/// Live keys, per topic.
pub const KEYS: &str = "kvstore_topic_keys";
/// Bytes of live keys and values, per topic.
pub const BYTES: &str = "kvstore_topic_bytes";
/// Records applied, per topic.
pub const RECORDS_APPLIED: &str = "kvstore_records_applied_total";
/// Consumer errors seen while replaying, per topic.
pub const REPLAY_ERRORS: &str = "kvstore_replay_errors_total";
/// Time from attaching a topic until it had replayed to its end, per topic.
pub const REPLAY_DURATION: &str = "kvstore_replay_duration_seconds";
/// Time from producing a write until this replica applied it.
pub const WRITE_WAIT: &str = "kvstore_write_wait_seconds";
/// Write requests, by outcome, refused ones included.
pub const WRITES: &str = "kvstore_writes_total";
/// Transactions of conditional writes and atomic batches ended, by outcome: `committed`,
/// `aborted` (a condition failed, or the writer gave up) or `failed` (the commit failed).
pub const TRANSACTIONS: &str = "kvstore_transactions_total";
/// Conditional writes and atomic batches refused because a condition did not hold.
pub const PRECONDITIONS_FAILED: &str = "kvstore_preconditions_failed_total";
/// How long reads with `min_offset` or `consistency=strong` waited for this replica.
pub const READ_WAIT: &str = "kvstore_read_wait_seconds";
/// HTTP requests, by method, route and status.
pub const HTTP_REQUESTS: &str = "kvstore_http_requests_total";
/// HTTP request duration, by method and route.
pub const HTTP_DURATION: &str = "kvstore_http_request_duration_seconds";
/// 1 while the broker answers, 0 otherwise.
pub const BROKER_UP: &str = "kvstore_broker_up";
/// Topics attached to this replica.
pub const TOPICS_ATTACHED: &str = "kvstore_topics_attached";
/// Requests refused for want of a valid token or scope, by reason.
pub const AUTH_REJECTIONS: &str = "kvstore_auth_rejections_total";
/// Requests refused because `http.max_concurrent_requests` were in flight.
pub const REQUESTS_SHED: &str = "kvstore_http_requests_shed_total";

/// Watch streams open on this replica.
pub const WATCHERS_OPEN: &str = "kvstore_watchers_open";
/// Events sent to watchers (puts, deletes, snapshot keys, synced and progress events).
pub const WATCH_EVENTS: &str = "kvstore_watch_events_total";
/// Watch streams ended because the change log no longer held their position.
pub const WATCHERS_FELL_BEHIND: &str = "kvstore_watchers_fell_behind_total";

/// Latency buckets, in seconds, from 0.5 ms to 30 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0,
];

/// Installs the global Prometheus recorder and describes every metric.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// What a metric is to Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution, in the latency buckets (0.5 ms to 30 s).
    Histogram,
}

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The exported name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Its unit, when it has one beyond a count.
    pub unit: Option<Unit>,
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn metric(name: &'static str, kind: Kind, help: &'static str) -> Metric {
    Metric {
        name,
        kind,
        unit: None,
        help,
    }
}

const fn measured(name: &'static str, kind: Kind, unit: Unit, help: &'static str) -> Metric {
    Metric {
        name,
        kind,
        unit: Some(unit),
        help,
    }
}

/// Every metric the service exports, described once at start; README's metrics table lists
/// the same (a test holds them together).
pub const CATALOGUE: &[Metric] = &[
    metric(
        CONSUMER_LAG,
        Kind::Gauge,
        "Records this replica has yet to apply, per topic",
    ),
    metric(
        APPLIED_OFFSET,
        Kind::Gauge,
        "Offset after the last record applied, per topic",
    ),
    metric(
        END_OFFSET,
        Kind::Gauge,
        "End offset of the partition as of the last fetch, per topic",
    ),
    metric(KEYS, Kind::Gauge, "Live keys, per topic"),
    measured(
        BYTES,
        Kind::Gauge,
        Unit::Bytes,
        "Bytes of live keys and values, per topic",
    ),
    metric(RECORDS_APPLIED, Kind::Counter, "Records applied, per topic"),
    metric(
        REPLAY_ERRORS,
        Kind::Counter,
        "Consumer errors while replaying, per topic",
    ),
    measured(
        REPLAY_DURATION,
        Kind::Gauge,
        Unit::Seconds,
        "Time from attaching a topic until it had replayed to its end",
    ),
    measured(
        WRITE_WAIT,
        Kind::Histogram,
        Unit::Seconds,
        "Time from producing a write until this replica applied it",
    ),
    metric(WRITES, Kind::Counter, "Write requests, by outcome"),
    metric(
        TRANSACTIONS,
        Kind::Counter,
        "Transactions of conditional writes and atomic batches, by outcome",
    ),
    metric(
        PRECONDITIONS_FAILED,
        Kind::Counter,
        "Conditional writes and atomic batches refused because a condition did not hold",
    ),
    measured(
        READ_WAIT,
        Kind::Histogram,
        Unit::Seconds,
        "Time reads with min_offset or consistency=strong waited for this replica",
    ),
    metric(
        HTTP_REQUESTS,
        Kind::Counter,
        "HTTP requests, by method, route and status",
    ),
    measured(
        HTTP_DURATION,
        Kind::Histogram,
        Unit::Seconds,
        "HTTP request duration, by method and route",
    ),
    metric(
        BROKER_UP,
        Kind::Gauge,
        "1 while the Kafka broker answers, 0 otherwise",
    ),
    metric(
        TOPICS_ATTACHED,
        Kind::Gauge,
        "Topics attached to this replica",
    ),
    metric(
        AUTH_REJECTIONS,
        Kind::Counter,
        "Requests refused for want of a valid token or scope, by reason",
    ),
    metric(
        REQUESTS_SHED,
        Kind::Counter,
        "Requests refused with 503 because the in-flight limit was reached",
    ),
    metric(
        WATCHERS_OPEN,
        Kind::Gauge,
        "Watch streams open on this replica",
    ),
    metric(
        WATCH_EVENTS,
        Kind::Counter,
        "Events sent to watchers: puts, deletes, snapshot keys, synced and progress",
    ),
    metric(
        WATCHERS_FELL_BEHIND,
        Kind::Counter,
        "Watch streams ended because the change log no longer held their position",
    ),
];

fn describe() {
    for metric in CATALOGUE {
        let Metric {
            name,
            kind,
            unit,
            help,
        } = *metric;
        match (kind, unit) {
            (Kind::Counter, Some(unit)) => describe_counter!(name, unit, help),
            (Kind::Counter, None) => describe_counter!(name, help),
            (Kind::Gauge, Some(unit)) => describe_gauge!(name, unit, help),
            (Kind::Gauge, None) => describe_gauge!(name, help),
            (Kind::Histogram, Some(unit)) => describe_histogram!(name, unit, help),
            (Kind::Histogram, None) => describe_histogram!(name, help),
        }
    }
}

/// Counts a watch stream opened.
pub fn watcher_opened() {
    gauge!(WATCHERS_OPEN).increment(1.0);
}

/// Counts a watch stream closed.
pub fn watcher_closed() {
    gauge!(WATCHERS_OPEN).decrement(1.0);
}

/// Counts a watch stream ended for falling behind.
pub fn watcher_fell_behind() {
    counter!(WATCHERS_FELL_BEHIND).increment(1);
}

/// The counter of events sent to watchers, to keep and increment per event.
pub fn watch_events() -> metrics::Counter {
    counter!(WATCH_EVENTS)
}

/// Counts a request refused by the token check.
pub fn auth_rejected(reason: &'static str) {
    counter!(AUTH_REJECTIONS, "reason" => reason).increment(1);
}

/// Counts a request refused for the in-flight limit.
pub fn request_shed() {
    counter!(REQUESTS_SHED).increment(1);
}

/// Publishes a topic's offsets, lag and sizes.
pub fn topic_progress(topic: &str, stats: StoreStats, end_offset: Option<i64>, lag: Option<i64>) {
    let name = topic.to_owned();
    gauge!(APPLIED_OFFSET, "topic" => name.clone()).set(stats.applied_offset as f64);
    if let Some(end) = end_offset {
        gauge!(END_OFFSET, "topic" => name.clone()).set(end as f64);
    }
    if let Some(lag) = lag {
        gauge!(CONSUMER_LAG, "topic" => name.clone()).set(lag as f64);
    }
    gauge!(KEYS, "topic" => name.clone()).set(stats.keys as f64);
    gauge!(BYTES, "topic" => name).set(stats.bytes as f64);
}

/// Counts records applied to a topic.
pub fn records_applied(topic: &str, count: u64) {
    counter!(RECORDS_APPLIED, "topic" => topic.to_owned()).increment(count);
}

/// Counts a consumer error on a topic.
pub fn replay_error(topic: &str) {
    counter!(REPLAY_ERRORS, "topic" => topic.to_owned()).increment(1);
}

/// Records how long a topic took to replay.
pub fn replay_finished(topic: &str, elapsed: Duration) {
    gauge!(REPLAY_DURATION, "topic" => topic.to_owned()).set(elapsed.as_secs_f64());
}

/// Records a write's outcome and, when it was applied, how long that took.
pub fn write_finished(outcome: &'static str, applied_after: Option<Duration>) {
    counter!(WRITES, "outcome" => outcome).increment(1);
    if let Some(elapsed) = applied_after {
        histogram!(WRITE_WAIT).record(elapsed.as_secs_f64());
    }
}

/// Records the end of a transaction.
pub fn transaction_ended(outcome: &'static str) {
    counter!(TRANSACTIONS, "outcome" => outcome).increment(1);
}

/// Records a write refused because its condition did not hold.
pub fn precondition_failed() {
    counter!(PRECONDITIONS_FAILED).increment(1);
}

/// Records how long a read waited for this replica to apply what it asked for.
pub fn read_waited(elapsed: Duration) {
    histogram!(READ_WAIT).record(elapsed.as_secs_f64());
}

/// Records an HTTP request: `route` is its template, never the raw path.
pub fn http_request(method: String, route: String, status: u16, elapsed: Duration) {
    counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route).record(elapsed.as_secs_f64());
}

/// Records the broker's reachability and the number of attached topics.
pub fn service_state(broker_up: bool, topics_attached: usize) {
    gauge!(BROKER_UP).set(if broker_up { 1.0 } else { 0.0 });
    gauge!(TOPICS_ATTACHED).set(topics_attached as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README's metrics table, as (name, kind) pairs: rows like
    /// "| `kvstore_topic_keys` | gauge | `topic` | live keys |".
    fn documented() -> Vec<(String, String)> {
        let readme = include_str!("../README.md");
        readme
            .lines()
            .filter_map(|line| {
                let mut cells = line.split('|').map(str::trim).skip(1);
                let name = cells.next()?.strip_prefix("`kvstore_")?.strip_suffix('`')?;
                Some((format!("kvstore_{name}"), cells.next()?.to_owned()))
            })
            .collect()
    }

    #[test]
    fn readme_lists_every_metric_with_its_kind() {
        let kind = |kind| match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let mut exported: Vec<(String, String)> = CATALOGUE
            .iter()
            .map(|metric| (metric.name.to_owned(), kind(metric.kind).to_owned()))
            .collect();
        let mut documented = documented();
        exported.sort();
        documented.sort();
        assert_eq!(documented, exported);
    }

    #[test]
    fn every_name_says_its_unit() {
        for metric in CATALOGUE {
            let suffix = match metric.unit {
                Some(Unit::Seconds) => "_seconds",
                Some(Unit::Bytes) => "_bytes",
                _ if metric.kind == Kind::Counter => "_total",
                _ => "",
            };
            assert!(
                metric.name.ends_with(suffix),
                "{} should end in {suffix}",
                metric.name
            );
            assert!(metric.name.starts_with("kvstore_"), "{}", metric.name);
        }
    }
}
