//! The command line of `kvstore bench`, the scenarios it runs, and the checks that turn the
//! arguments into a [`Plan`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::BenchError;
use crate::client::security::SecurityArgs;

/// The most operations etcd accepts in one transaction (its `--max-txn-ops` default), so the
/// most a batch against etcd may hold.
pub const ETCD_MAX_TXN_OPS: usize = 128;

/// Keys are `key-` and twelve digits, so the key space can have at most this many keys.
pub const MAX_KEYS: u64 = 1_000_000_000_000;

/// How long a run lasts when neither `--duration` nor `--requests` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// What one run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Write one key per request.
    Put,
    /// Read one random key per request.
    Get,
    /// Read one random key per request with `consistency=strong` (etcd: a linearizable
    /// read, its default).
    StrongGet,
    /// Compare-and-set a random key: read it, then write it if unchanged (kvstore: PUT with
    /// `If-Match`, or `If-None-Match: *` if absent; etcd: a `txn` comparing its
    /// `mod_revision`). A write that lost the race counts as a `conflict` error.
    Cas,
    /// Reads and writes, `--read-ratio` of them reads.
    Mixed,
    /// Read a page of `--batch-size` keys from a random start.
    Range,
    /// Write `--batch-size` keys per request.
    Batch,
    /// The target's health endpoint: the cost of HTTP alone.
    Healthz,
    /// Kafka floor: a bare producer with the service's settings, one record at a time.
    Produce,
    /// Kafka floor: produce one record and consume it back, one at a time.
    Roundtrip,
    /// Kafka floor: read the whole topic from its beginning to its end with a bare consumer.
    Consume,
    /// PUTs while `--watchers` streams on `--watch-url` follow the topic: delivery latency
    /// (PUT acknowledged to event received), events delivered, and the watched replica's
    /// apply lag.
    Watch,
}

impl Scenario {
    /// Whether the scenario talks to the Kafka broker directly instead of to an HTTP target.
    pub fn is_kafka(self) -> bool {
        matches!(
            self,
            Scenario::Produce | Scenario::Roundtrip | Scenario::Consume
        )
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Put => "put",
            Scenario::Get => "get",
            Scenario::StrongGet => "strong-get",
            Scenario::Cas => "cas",
            Scenario::Mixed => "mixed",
            Scenario::Range => "range",
            Scenario::Batch => "batch",
            Scenario::Healthz => "healthz",
            Scenario::Produce => "produce",
            Scenario::Roundtrip => "roundtrip",
            Scenario::Consume => "consume",
            Scenario::Watch => "watch",
        }
    }
}

/// Which HTTP API the target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// kvstore's own API.
    Kvstore,
    /// etcd's v3 JSON gateway (`/v3/kv/put`, `/v3/kv/range`, `/v3/kv/txn`, `/health`).
    Etcd,
}

/// `kvstore bench`: load against kvstore or etcd over HTTP, or the Kafka floors beneath it.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Scenario::Put)]
    pub scenario: Scenario,
    /// Which API the HTTP target speaks.
    #[arg(long, value_enum, default_value_t = Target::Kvstore)]
    pub target: Target,
    /// Base URL of the HTTP target.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Kafka bootstrap servers, for the produce, roundtrip and consume scenarios.
    #[arg(long, value_name = "HOST:PORT,...", default_value = "localhost:9092")]
    pub brokers: String,
    /// The kvstore topic (or Kafka topic) to use; ignored by etcd.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Clients sending requests at once, each waiting for its answer before the next.
    #[arg(long, short = 'c', default_value_t = 1)]
    pub concurrency: usize,
    /// How long to send requests, e.g. `10s` or `1m`, after one untimed first request
    /// [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// Send this many requests in all, then stop. The first goes alone and is not timed.
    #[arg(long, short = 'n', value_name = "N")]
    pub requests: Option<u64>,
    /// Size of the key space; keys are `key-000000000000` and up (16 bytes).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Operations per batch request (batch), or keys per page (range).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Share of reads in the mixed scenario, from 0 to 1.
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// Extra librdkafka property for the Kafka scenarios' clients, applied last as the
    /// service's `kafka.librdkafka` is (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub librdkafka: Vec<String>,
    /// Write every key of the key space first, in batches, so that reads find them.
    #[arg(long)]
    pub prefill: bool,
    /// Send requests while kvstore replays this other topic: it is attached as the clients
    /// start, and they stop once it is ready (instead of --duration or --requests).
    #[arg(long, value_name = "TOPIC", conflicts_with_all = ["duration", "requests"])]
    pub while_replaying: Option<String>,
    /// The watch scenario: base URL of the replica the watchers follow [default: --url].
    #[arg(long, value_name = "URL")]
    pub watch_url: Option<String>,
    /// The watch scenario: streams following the topic.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub watchers: usize,
    /// The watch scenario: watcher N follows key number N alone (`prefix=` the key) instead
    /// of the whole topic, so that each write has one watcher (with `--keys` the watchers).
    #[arg(long)]
    pub watch_own_key: bool,
    /// The watch scenario: how long the watchers stay open before the PUTs start (a pause in
    /// which to read the watched replica's memory).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0s")]
    pub watch_idle: Duration,
    /// Print the result as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The CA to trust for an https:// target and the bearer token to send.
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// After this long.
    Duration(Duration),
    /// After this many requests, across all clients.
    Requests(u64),
    /// At the end of the topic (the consume scenario).
    EndOfTopic,
    /// Once another topic has been replayed (`--while-replaying`).
    WhileReplaying,
}

impl Limit {
    /// The limit left after one request.
    pub fn after_one(self) -> Limit {
        match self {
            Limit::Requests(n) => Limit::Requests(n.saturating_sub(1)),
            other => other,
        }
    }
}

/// Checked arguments: what a run does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// What to measure.
    pub scenario: Scenario,
    /// Which API the HTTP target speaks.
    pub target: Target,
    /// Base URL of the HTTP target, without a trailing `/`.
    pub url: String,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The topic to use.
    pub topic: String,
    /// Clients at once.
    pub concurrency: usize,
    /// When the run stops.
    pub limit: Limit,
    /// Size of the key space.
    pub keys: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// Operations per batch, or keys per range page.
    pub batch_size: usize,
    /// Share of reads in the mixed scenario.
    pub read_ratio: f64,
    /// Extra librdkafka properties for the Kafka scenarios.
    pub librdkafka: BTreeMap<String, String>,
    /// Whether to write the key space first.
    pub prefill: bool,
    /// The topic whose replay the run lasts, for [`Limit::WhileReplaying`].
    pub while_replaying: Option<String>,
    /// The watch scenario: the replica watched, its streams, and their idle time first.
    pub watch: WatchPlan,
    /// Whether to print JSON.
    pub json: bool,
    /// The CA to trust and the bearer token to send.
    pub security: SecurityArgs,
}

/// The watch scenario's side of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchPlan {
    /// Base URL of the replica watched, without a trailing `/`.
    pub url: String,
    /// Streams following the topic.
    pub watchers: usize,
    /// How long they stay open before the PUTs start.
    pub idle: Duration,
    /// Whether watcher N follows key number N alone.
    pub own_key: bool,
}

impl BenchArgs {
    /// Checks the arguments against each other and returns what to run.
    pub fn validate(&self) -> Result<Plan, BenchError> {
        let invalid = |message: String| Err(BenchError::InvalidArgs(message));
        let scenario = self.scenario;
        if !(1..=10_000).contains(&self.concurrency) {
            return invalid("--concurrency must be from 1 to 10000".into());
        }
        if !(1..=MAX_KEYS).contains(&self.keys) {
            return invalid(format!("--keys must be from 1 to {MAX_KEYS}"));
        }
        if self.batch_size == 0 {
            return invalid("--batch-size must be at least 1".into());
        }
        if self.target == Target::Etcd
            && scenario == Scenario::Batch
            && self.batch_size > ETCD_MAX_TXN_OPS
        {
            return invalid(format!(
                "etcd takes at most {ETCD_MAX_TXN_OPS} operations per transaction; lower --batch-size"
            ));
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return invalid("--read-ratio must be from 0 to 1".into());
        }
        if let Err(message) = crate::topic_name::validate(&self.topic) {
            return invalid(format!("--topic: {message}"));
        }
        let limit = match (self.duration, self.requests) {
            (Some(duration), _) if duration.is_zero() => {
                return invalid("--duration must be more than 0".into());
            }
            (_, Some(0)) => return invalid("--requests must be at least 1".into()),
            (_, _) if scenario == Scenario::Consume => {
                if self.duration.is_some() || self.requests.is_some() {
                    return invalid(
                        "consume reads the whole topic; --duration and --requests do not apply"
                            .into(),
                    );
                }
                Limit::EndOfTopic
            }
            (Some(duration), _) => Limit::Duration(duration),
            (None, Some(requests)) => Limit::Requests(requests),
            (None, None) if self.while_replaying.is_some() => Limit::WhileReplaying,
            (None, None) => Limit::Duration(DEFAULT_DURATION),
        };
        if let Some(replayed) = &self.while_replaying {
            if scenario.is_kafka() || self.target != Target::Kvstore {
                return invalid("--while-replaying needs a kvstore HTTP scenario".into());
            }
            if let Err(message) = crate::topic_name::validate(replayed) {
                return invalid(format!("--while-replaying: {message}"));
            }
            if *replayed == self.topic {
                return invalid("--while-replaying needs a topic other than --topic".into());
            }
        }
        if scenario.is_kafka() {
            if self.target != Target::Kvstore {
                return invalid(format!(
                    "{} talks to the Kafka broker (--brokers), not to an HTTP --target",
                    scenario.name()
                ));
            }
            if self.concurrency != 1 {
                return invalid(format!(
                    "{} measures one record at a time; --concurrency must be 1",
                    scenario.name()
                ));
            }
            if self.prefill {
                return invalid(format!("--prefill does not apply to {}", scenario.name()));
            }
        }
        let mut librdkafka = BTreeMap::new();
        for property in &self.librdkafka {
            match property.split_once('=') {
                Some((key, value)) if !key.is_empty() => {
                    librdkafka.insert(key.to_owned(), value.to_owned());
                }
                _ => return invalid(format!("--librdkafka {property:?} is not KEY=VALUE")),
            }
        }
        let url = self.url.trim_end_matches('/').to_owned();
        if !scenario.is_kafka() {
            match reqwest::Url::parse(&url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                Ok(_) => return invalid("--url must be an http:// or https:// URL".into()),
                Err(error) => return invalid(format!("--url: {error}")),
            }
        }
        if scenario == Scenario::Watch {
            if self.target != Target::Kvstore {
                return invalid("watch needs a kvstore --target".into());
            }
            if self.watchers == 0 {
                return invalid("--watchers must be at least 1".into());
            }
        }
        let watch_url = self
            .watch_url
            .as_deref()
            .map_or_else(|| url.clone(), |u| u.trim_end_matches('/').to_owned());
        Ok(Plan {
            watch: WatchPlan {
                url: watch_url,
                watchers: self.watchers,
                idle: self.watch_idle,
                own_key: self.watch_own_key,
            },
            scenario,
            target: self.target,
            url,
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            concurrency: self.concurrency,
            limit,
            keys: self.keys,
            value_size: self.value_size,
            batch_size: self.batch_size,
            read_ratio: self.read_ratio,
            librdkafka,
            prefill: self.prefill,
            while_replaying: self.while_replaying.clone(),
            json: self.json,
            security: self.security.clone(),
        })
    }
}

/// The name of key number `index`: 16 bytes, so the key space sorts by number.
pub fn key_name(index: u64) -> String {
    format!("key-{index:012}")
}

/// `size` bytes of lowercase letters: valid UTF-8 and JSON-safe, so the same value can be sent
/// raw, in a JSON batch, in base64 or as a Kafka record.
pub fn value_bytes(size: usize) -> Vec<u8> {
    (b'a'..=b'z').cycle().take(size).collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.args.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_run_puts_for_ten_seconds() {
        let plan = parse(&[]).expect("valid");
        assert_eq!(plan.scenario, Scenario::Put);
        assert_eq!(plan.target, Target::Kvstore);
        assert_eq!(plan.limit, Limit::Duration(Duration::from_secs(10)));
        assert_eq!(plan.concurrency, 1);
        assert_eq!(plan.url, "http://127.0.0.1:8080");
    }

    #[test]
    fn duration_and_requests_set_the_limit() {
        let plan = parse(&["--duration", "1m 30s"]).expect("valid");
        assert_eq!(plan.limit, Limit::Duration(Duration::from_secs(90)));
        let plan = parse(&["-n", "500"]).expect("valid");
        assert_eq!(plan.limit, Limit::Requests(500));
        assert!(parse(&["--duration", "10s", "--requests", "5"]).is_err());
        assert!(parse(&["--duration", "0s"]).is_err());
        assert!(parse(&["--requests", "0"]).is_err());
        assert!(parse(&["--duration", "ten"]).is_err());
    }

    #[test]
    fn only_a_request_count_is_used_up_by_one_request() {
        assert_eq!(Limit::Requests(10).after_one(), Limit::Requests(9));
        let ten_seconds = Limit::Duration(DEFAULT_DURATION);
        assert_eq!(ten_seconds.after_one(), ten_seconds);
    }

    #[test]
    fn trailing_slash_is_dropped_and_only_http_and_https_are_accepted() {
        let plan = parse(&["--url", "http://localhost:2379/"]).expect("valid");
        assert_eq!(plan.url, "http://localhost:2379");
        let plan =
            parse(&["--url", "https://localhost:2379", "--ca-file", "ca.pem"]).expect("valid");
        assert_eq!(plan.security.ca_file, Some("ca.pem".into()));
        assert!(parse(&["--url", "ftp://localhost:2379"]).is_err());
        assert!(parse(&["--url", "localhost:2379"]).is_err());
    }

    #[test]
    fn numbers_out_of_range_are_refused() {
        assert!(parse(&["--concurrency", "0"]).is_err());
        assert!(parse(&["--keys", "0"]).is_err());
        assert!(parse(&["--batch-size", "0"]).is_err());
        assert!(parse(&["--read-ratio", "1.5"]).is_err());
        assert!(parse(&["--read-ratio", "NaN"]).is_err());
        assert!(parse(&["--scenario", "mixed", "--read-ratio", "0"]).is_ok());
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(parse(&["--topic", "bench-1.x"]).is_ok());
        assert!(parse(&["--topic", "no/slash"]).is_err());
    }

    #[test]
    fn etcd_batches_fit_one_transaction() {
        let etcd = ["--target", "etcd", "--scenario", "batch", "--batch-size"];
        assert!(parse(&[&etcd[..], &["128"]].concat()).is_ok());
        let error = parse(&[&etcd[..], &["129"]].concat()).expect_err("too many ops");
        assert!(error.contains("128"), "{error}");
        // kvstore takes larger batches.
        assert!(parse(&["--scenario", "batch", "--batch-size", "1000"]).is_ok());
    }

    #[test]
    fn kafka_floors_are_sequential_and_brokers_only() {
        let plan = parse(&["--scenario", "produce", "--brokers", "b:1"]).expect("valid");
        assert_eq!(plan.brokers, "b:1");
        assert!(parse(&["--scenario", "roundtrip", "-c", "2"]).is_err());
        assert!(parse(&["--scenario", "produce", "--target", "etcd"]).is_err());
        assert!(parse(&["--scenario", "produce", "--prefill"]).is_err());
    }

    #[test]
    fn librdkafka_properties_are_key_value_pairs() {
        let plan = parse(&[
            "--scenario",
            "produce",
            "--librdkafka",
            "socket.nagle.disable=true",
            "--librdkafka",
            "debug=",
        ])
        .expect("valid");
        assert_eq!(plan.librdkafka["socket.nagle.disable"], "true");
        assert_eq!(plan.librdkafka["debug"], "");
        assert!(parse(&["--librdkafka", "no-equals"]).is_err());
        assert!(parse(&["--librdkafka", "=x"]).is_err());
    }

    #[test]
    fn consume_reads_to_the_end_of_the_topic() {
        let plan = parse(&["--scenario", "consume"]).expect("valid");
        assert_eq!(plan.limit, Limit::EndOfTopic);
        assert!(parse(&["--scenario", "consume", "--duration", "5s"]).is_err());
        assert!(parse(&["--scenario", "consume", "-n", "5"]).is_err());
    }

    #[test]
    fn a_run_can_last_another_topic_s_replay() {
        let plan = parse(&["--scenario", "get", "--while-replaying", "big"]).expect("valid");
        assert_eq!(plan.limit, Limit::WhileReplaying);
        assert_eq!(plan.while_replaying.as_deref(), Some("big"));
        let with = |extra: &[&str]| parse(&[&["--while-replaying", "big"], extra].concat());
        assert!(with(&["--duration", "5s"]).is_err());
        assert!(with(&["-n", "5"]).is_err());
        assert!(with(&["--topic", "big"]).is_err());
        assert!(with(&["--target", "etcd"]).is_err());
        assert!(with(&["--scenario", "consume"]).is_err());
        assert!(parse(&["--while-replaying", "no/slash"]).is_err());
    }

    #[test]
    fn keys_are_sixteen_bytes_in_order() {
        assert_eq!(key_name(0), "key-000000000000");
        assert_eq!(key_name(42).len(), 16);
        assert_eq!(key_name(MAX_KEYS - 1).len(), 16);
        assert!(key_name(9) < key_name(10));
    }

    #[test]
    fn values_are_letters_of_the_asked_size() {
        assert_eq!(value_bytes(0), b"");
        assert_eq!(value_bytes(28), b"abcdefghijklmnopqrstuvwxyzab");
    }
}
