//! Prometheus metrics: the names (units in the names, no keys in labels), their descriptions,
//! the recorder, and the HTTP middleware that counts requests by route.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
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
/// Writes produced, by outcome.
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

fn describe() {
    describe_gauge!(
        CONSUMER_LAG,
        "Records this replica has yet to apply, per topic"
    );
    describe_gauge!(
        APPLIED_OFFSET,
        "Offset after the last record applied, per topic"
    );
    describe_gauge!(
        END_OFFSET,
        "End offset of the partition as of the last fetch, per topic"
    );
    describe_gauge!(KEYS, "Live keys, per topic");
    describe_gauge!(
        BYTES,
        Unit::Bytes,
        "Bytes of live keys and values, per topic"
    );
    describe_counter!(RECORDS_APPLIED, "Records applied, per topic");
    describe_counter!(REPLAY_ERRORS, "Consumer errors while replaying, per topic");
    describe_gauge!(
        REPLAY_DURATION,
        Unit::Seconds,
        "Time from attaching a topic until it had replayed to its end"
    );
    describe_histogram!(
        WRITE_WAIT,
        Unit::Seconds,
        "Time from producing a write until this replica applied it"
    );
    describe_counter!(WRITES, "Write requests, by outcome");
    describe_counter!(
        TRANSACTIONS,
        "Transactions of conditional writes and atomic batches, by outcome"
    );
    describe_counter!(
        PRECONDITIONS_FAILED,
        "Conditional writes and atomic batches refused because a condition did not hold"
    );
    describe_histogram!(
        READ_WAIT,
        Unit::Seconds,
        "Time reads with min_offset or consistency=strong waited for this replica"
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests, by method, route and status");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request duration, by method and route"
    );
    describe_gauge!(BROKER_UP, "1 while the Kafka broker answers, 0 otherwise");
    describe_gauge!(TOPICS_ATTACHED, "Topics attached to this replica");
    describe_counter!(
        AUTH_REJECTIONS,
        "Requests refused for want of a valid token or scope, by reason"
    );
    describe_counter!(
        REQUESTS_SHED,
        "Requests refused with 503 because the in-flight limit was reached"
    );
    describe_gauge!(WATCHERS_OPEN, "Watch streams open on this replica");
    describe_counter!(
        WATCH_EVENTS,
        "Events sent to watchers: puts, deletes, snapshot keys, synced and progress"
    );
    describe_counter!(
        WATCHERS_FELL_BEHIND,
        "Watch streams ended because the change log no longer held their position"
    );
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

/// Records the broker's reachability and the number of attached topics.
pub fn service_state(broker_up: bool, topics_attached: usize) {
    gauge!(BROKER_UP).set(if broker_up { 1.0 } else { 0.0 });
    gauge!(TOPICS_ATTACHED).set(topics_attached as f64);
}

/// Middleware counting requests and their duration by method, matched route and status.
/// The route is the template (`/v1/{topic}/keys/{*key}`), never the raw path.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
