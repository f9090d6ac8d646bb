//! What a run measures and how it is shown: a latency histogram and error counts per client,
//! live progress on stderr, and the final table (or JSON object).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::{Plan, Scenario, Target};

/// Latencies are recorded in microseconds, from 1 µs to one hour, to 3 significant figures.
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// What one client saw: latencies of successful requests and errors by kind. Clients record
/// into their own and the run merges them at the end, so recording takes no lock.
#[derive(Debug, Clone)]
pub struct Recorder {
    latency: Histogram<u64>,
    requests: u64,
    operations: u64,
    errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder {
            latency: micros_histogram(),
            requests: 0,
            operations: 0,
            errors: BTreeMap::new(),
        }
    }

    /// A successful request that carried `operations` operations and took `latency`.
    pub fn success(&mut self, latency: Duration, operations: u64) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros.max(1));
        self.requests += 1;
        self.operations += operations;
    }

    /// A successful unit of work without a latency of its own (a record read by `consume`).
    pub fn count(&mut self, operations: u64) {
        self.requests += operations;
        self.operations += operations;
    }

    /// A failed request, by kind: an HTTP status such as `429`, or `timeout`, `connect`, ...
    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }

    /// How a request went: its latency and operations, or the kind of error; also counted in
    /// `progress`.
    pub fn record(&mut self, progress: &Progress, outcome: Result<(Duration, u64), String>) {
        match outcome {
            Ok((latency, operations)) => {
                self.success(latency, operations);
                progress.success();
            }
            Err(kind) => {
                self.error(kind);
                progress.error();
            }
        }
    }

    /// Adds what `other` saw.
    pub fn merge(&mut self, other: &Recorder) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.requests += other.requests;
        self.operations += other.operations;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
    }

    /// Successful requests so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Failed requests so far.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Counters shared by every client, read once a second for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    requests: AtomicU64,
    errors: AtomicU64,
}

impl Progress {
    /// One more successful request (or record).
    pub fn success(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// One more failed request.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Prints a progress line on stderr once a second, labelled `label`, until the returned
    /// handle is dropped or aborted.
    pub fn spawn_ticker(
        self: &Arc<Self>,
        label: String,
        unit: &'static str,
    ) -> tokio::task::JoinHandle<()> {
        let progress = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            let mut last = 0;
            let terminal = std::io::stderr().is_terminal();
            loop {
                ticker.tick().await;
                let requests = progress.requests.load(Ordering::Relaxed);
                let errors = progress.errors.load(Ordering::Relaxed);
                let line = progress_line(&label, started.elapsed(), requests, last, errors, unit);
                last = requests;
                // On a terminal the line rewrites itself; in a log it is one line a second.
                let mut stderr = std::io::stderr().lock();
                let _ = if terminal {
                    write!(stderr, "\r{line}\x1b[K")
                } else {
                    writeln!(stderr, "{line}")
                };
            }
        })
    }
}

/// Ends a live progress display started with [`Progress::spawn_ticker`].
pub fn stop_ticker(ticker: tokio::task::JoinHandle<()>) {
    ticker.abort();
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[K");
    }
}

fn progress_line(
    label: &str,
    elapsed: Duration,
    total: u64,
    last: u64,
    errors: u64,
    unit: &str,
) -> String {
    format!(
        "{label} {:>4}s {} {unit}, {}/s now, {} errors",
        elapsed.as_secs(),
        group_digits(total as f64),
        group_digits(total.saturating_sub(last) as f64),
        group_digits(errors as f64)
    )
}

/// Latency percentiles of successful requests, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What was measured.
    pub scenario: Scenario,
    /// The HTTP API driven, or `None` for the Kafka floors.
    pub target: Option<Target>,
    /// Where: the URL, or the brokers.
    pub address: String,
    /// The topic used (not for etcd).
    pub topic: Option<String>,
    /// Clients at once.
    pub concurrency: usize,
    /// Operations per batch (batch), or keys per page (range).
    pub batch_size: Option<usize>,
    /// What one operation is: `ops` or `records`.
    pub unit: &'static str,
    /// Wall-clock time of the measured phase.
    pub elapsed_seconds: f64,
    /// Successful requests.
    pub requests: u64,
    /// Operations in successful requests (requests × batch size for batches).
    pub operations: u64,
    /// Successful requests per second.
    pub requests_per_second: f64,
    /// Operations per second.
    pub operations_per_second: f64,
    /// For batches: milliseconds of wall-clock time per operation (1000 / operations per
    /// second).
    pub ms_per_operation: Option<f64>,
    /// Latency percentiles, where requests have one.
    pub latency_ms: Option<Latency>,
    /// Failed requests by kind (HTTP status, `timeout`, `connect`, ...).
    pub errors: BTreeMap<String, u64>,
    /// The watch scenario: what the watchers saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchFigures>,
}

/// What the watchers of the watch scenario saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchFigures {
    /// Streams that followed the topic.
    pub watchers: usize,
    /// Change events they received, all together.
    pub events: u64,
    /// Those per second of the measured phase.
    pub events_per_second: f64,
    /// From a PUT's acknowledgement to its event at the first watcher.
    pub delivery_ms: Option<Latency>,
    /// From a PUT's acknowledgement to the start of a watch with `min_offset` at its offset
    /// on the watched replica (one request more than the apply itself), for every 50th PUT.
    pub apply_lag_ms: Option<Latency>,
    /// The same request for an offset long applied: what the request alone costs.
    pub request_floor_ms: Option<Latency>,
}

/// The percentiles of `h` (microseconds), in milliseconds; `None` if it is empty.
pub fn latency_of(h: &Histogram<u64>) -> Option<Latency> {
    let ms = |micros: u64| micros as f64 / 1000.0;
    (!h.is_empty()).then(|| Latency {
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    })
}

/// An empty histogram of microseconds, as the recorders keep.
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("constant histogram bounds are valid")
}

impl Report {
    /// The report of a run of `plan` in which the clients, merged, saw `seen` over `elapsed`.
    pub fn new(plan: &Plan, seen: &Recorder, elapsed: Duration) -> Report {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let operations_per_second = seen.operations as f64 / seconds;
        let kafka = plan.scenario.is_kafka();
        let etcd = !kafka && plan.target == Target::Etcd;
        let batched = matches!(plan.scenario, Scenario::Batch | Scenario::Range);
        Report {
            scenario: plan.scenario,
            target: (!kafka).then_some(plan.target),
            address: if kafka {
                plan.brokers.clone()
            } else {
                plan.url.clone()
            },
            topic: (!etcd).then(|| plan.topic.clone()),
            concurrency: plan.concurrency,
            batch_size: batched.then_some(plan.batch_size),
            unit: if kafka { "records" } else { "ops" },
            elapsed_seconds: seconds,
            requests: seen.requests,
            operations: seen.operations,
            requests_per_second: seen.requests as f64 / seconds,
            operations_per_second,
            ms_per_operation: (plan.scenario == Scenario::Batch && seen.operations > 0)
                .then(|| 1000.0 / operations_per_second),
            latency_ms: latency_of(&seen.latency),
            errors: seen.errors.clone(),
            watch: None,
        }
    }

    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let target = match self.target {
            Some(Target::Kvstore) => "kvstore",
            Some(Target::Etcd) => "etcd",
            None => "Kafka",
        };
        let topic = match &self.topic {
            Some(topic) => format!(", topic {topic}"),
            None => String::new(),
        };
        let batch = match self.batch_size {
            Some(size) if self.scenario == Scenario::Range => format!(", {size} keys a page"),
            Some(size) => format!(", {size} ops a batch"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{} against {target} at {}{topic}: {} client{}{batch}, {:.1} s",
            self.scenario.name(),
            self.address,
            self.concurrency,
            if self.concurrency == 1 { "" } else { "s" },
            self.elapsed_seconds
        );
        let mut throughput = format!(
            "{} {}/s",
            group_digits(self.operations_per_second),
            self.unit
        );
        if self.operations != self.requests {
            let _ = write!(
                throughput,
                " ({} requests/s)",
                group_digits(self.requests_per_second)
            );
        }
        let _ = writeln!(out, "  {:<13}{throughput}", "throughput");
        if let Some(ms) = self.ms_per_operation {
            let _ = writeln!(out, "  {:<13}{}", "ms per op", format_ms(ms));
        }
        if let Some(latency) = &self.latency_ms {
            out.push_str(&latency_table(latency));
        }
        let _ = writeln!(
            out,
            "  {:<13}{} ok, {} failed",
            if self.unit == "records" {
                "records"
            } else {
                "requests"
            },
            group_digits(self.requests as f64),
            group_digits(self.errors.values().sum::<u64>() as f64)
        );
        if let Some(watch) = &self.watch {
            let _ = writeln!(
                out,
                "  {:<13}{} watchers, {} events/s",
                "watchers",
                watch.watchers,
                group_digits(watch.events_per_second)
            );
            for (name, latency) in [
                ("delivery", &watch.delivery_ms),
                ("apply lag", &watch.apply_lag_ms),
                ("request floor", &watch.request_floor_ms),
            ] {
                if let Some(latency) = latency {
                    let _ = writeln!(out, "  {name}");
                    out.push_str(&latency_table(latency));
                }
            }
        }
        if !self.errors.is_empty() {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(kind, count)| format!("{kind}: {count}"))
                .collect();
            let _ = writeln!(out, "  {:<13}{}", "errors", errors.join(", "));
        }
        out
    }
}

/// The percentile rows of the table: a header line and a line of values, aligned.
pub fn latency_table(latency: &Latency) -> String {
    let columns = [
        ("p50", latency.p50),
        ("p90", latency.p90),
        ("p99", latency.p99),
        ("p99.9", latency.p999),
        ("max", latency.max),
        ("mean", latency.mean),
    ];
    let cells: Vec<(String, String)> = columns
        .iter()
        .map(|(name, value)| ((*name).to_owned(), format_ms(*value)))
        .collect();
    let mut header = format!("  {:<13}", "latency (ms)");
    let mut values = format!("  {:<13}", "");
    for (name, value) in &cells {
        let width = name.len().max(value.len());
        let _ = write!(header, "{name:>width$}  ");
        let _ = write!(values, "{value:>width$}  ");
    }
    format!("{}\n{}\n", header.trim_end(), values.trim_end())
}

/// Milliseconds with three significant figures at most, down to the microsecond.
pub fn format_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.3}")
    }
}

/// A count rounded to a whole number, with `,` between thousands.
pub fn group_digits(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::args::Limit;

    fn plan(scenario: Scenario) -> Plan {
        Plan {
            watch: crate::bench::args::WatchPlan {
                url: "http://127.0.0.1:8080".into(),
                watchers: 1,
                idle: Duration::ZERO,
                own_key: false,
            },
            scenario,
            target: Target::Kvstore,
            url: "http://127.0.0.1:8080".into(),
            brokers: "127.0.0.1:9092".into(),
            topic: "bench".into(),
            concurrency: 4,
            limit: Limit::Duration(Duration::from_secs(2)),
            keys: 10,
            value_size: 10,
            batch_size: 100,
            read_ratio: 0.9,
            librdkafka: Default::default(),
            prefill: false,
            while_replaying: None,
            json: false,
            security: Default::default(),
        }
    }

    #[test]
    fn digits_are_grouped_by_thousands() {
        assert_eq!(group_digits(0.0), "0");
        assert_eq!(group_digits(999.4), "999");
        assert_eq!(group_digits(1000.0), "1,000");
        assert_eq!(group_digits(1_234_567.0), "1,234,567");
        assert_eq!(group_digits(-3.0), "0");
    }

    #[test]
    fn milliseconds_keep_three_significant_figures() {
        assert_eq!(format_ms(0.0123), "0.012");
        assert_eq!(format_ms(1.234), "1.23");
        assert_eq!(format_ms(12.34), "12.3");
        assert_eq!(format_ms(1234.5), "1234");
    }

    #[test]
    fn latency_table_aligns_values_under_their_percentiles() {
        let table = latency_table(&Latency {
            p50: 0.5,
            p90: 1.25,
            p99: 12.0,
            p999: 150.0,
            max: 1500.0,
            mean: 0.75,
        });
        let expected = [
            "  latency (ms)   p50   p90   p99  p99.9   max   mean",
            "               0.500  1.25  12.0    150  1500  0.750",
        ];
        assert_eq!(table, format!("{}\n{}\n", expected[0], expected[1]));
    }

    #[test]
    fn percentiles_and_errors_come_from_every_client() {
        let mut first = Recorder::new();
        for ms in 1..=100 {
            first.success(Duration::from_millis(ms), 1);
        }
        first.error("429");
        let mut second = Recorder::new();
        second.success(Duration::from_millis(1000), 1);
        second.error("429");
        second.error("timeout");
        first.merge(&second);
        let report = Report::new(&plan(Scenario::Put), &first, Duration::from_secs(2));
        assert_eq!(report.requests, 101);
        assert!((report.operations_per_second - 50.5).abs() < 1e-9);
        let latency = report.latency_ms.clone().expect("latencies");
        assert!((latency.p50 - 51.0).abs() < 0.1, "{latency:?}");
        assert!((latency.max - 1000.0).abs() < 1.0, "{latency:?}");
        assert_eq!(report.errors.get("429"), Some(&2));
        assert_eq!(report.ms_per_operation, None);
        let table = report.to_table();
        assert!(table.contains("  throughput   50 ops/s\n"), "{table}");
        assert!(
            table.contains("  requests     101 ok, 3 failed\n"),
            "{table}"
        );
        assert!(
            table.contains("  errors       429: 2, timeout: 1\n"),
            "{table}"
        );
    }

    #[test]
    fn batches_report_operations_and_time_per_operation() {
        let mut seen = Recorder::new();
        for _ in 0..10 {
            seen.success(Duration::from_millis(100), 100);
        }
        let report = Report::new(&plan(Scenario::Batch), &seen, Duration::from_secs(1));
        assert_eq!(report.operations, 1000);
        assert_eq!(report.ms_per_operation, Some(1.0));
        let table = report.to_table();
        assert!(
            table.starts_with(
                "batch against kvstore at http://127.0.0.1:8080, topic bench: 4 clients, \
                 100 ops a batch, 1.0 s\n"
            ),
            "{table}"
        );
        assert!(
            table.contains("  throughput   1,000 ops/s (10 requests/s)\n"),
            "{table}"
        );
        assert!(table.contains("  ms per op    1.00\n"), "{table}");
    }

    #[test]
    fn json_names_every_figure() {
        let mut seen = Recorder::new();
        seen.success(Duration::from_micros(1500), 1);
        let report = Report::new(&plan(Scenario::Get), &seen, Duration::from_secs(1));
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["scenario"], "get");
        assert_eq!(json["target"], "kvstore");
        assert_eq!(json["requests"], 1);
        assert_eq!(json["latency_ms"]["p99"], 1.5);
        assert!(json["ms_per_operation"].is_null());
    }

    #[test]
    fn progress_line_shows_total_rate_and_errors() {
        assert_eq!(
            progress_line("put", Duration::from_secs(3), 12_345, 8_000, 2, "requests"),
            "put    3s 12,345 requests, 4,345/s now, 2 errors"
        );
    }
}
