//! Configuration: defaults, then a TOML file, then `KVSTORE_*` environment variables, then
//! command-line flags, each layer overriding the one before.
//!
//! This module is the schema: every setting, its default and its documentation. Loading
//! ([`Config::figment`], in `load`) and checking ([`Config::from_figment`], with `validate`)
//! are separate steps so that every error names the key it is about.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::SecretRef;
use crate::topic_name::TopicPattern;

/// Prefix of the environment variables read as configuration; `__` separates nested keys
/// (`KVSTORE_LIMITS__MAX_KEY_BYTES`).
pub const ENV_PREFIX: &str = "KVSTORE_";

/// The file read when `--config` is not given, if it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "kvstore.toml";

/// Everything `kvstore serve` can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on. Default `127.0.0.1:8080`: this machine only. On
    /// any other address auth is on unless `auth.enabled = false`.
    pub listen: SocketAddr,
    /// Kafka bootstrap servers, comma-separated `host:port`. Default `localhost:9092`.
    pub brokers: String,
    /// How long a write waits for the broker and then for this replica to apply it before
    /// answering 504. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// How long shutdown waits for in-flight requests and background tasks. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Log output: `text` for people, `json` for log shippers. Default `text`.
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `kvstore=debug,rdkafka=warn`. Default `info`.
    pub log_level: String,
    /// How HTTP connections are treated.
    pub http: HttpConfig,
    /// How topics are found, created and preloaded.
    pub topics: TopicsConfig,
    /// Size and count limits on requests and state.
    pub limits: LimitsConfig,
    /// Kafka client tuning and security.
    pub kafka: KafkaConfig,
    /// Who may do what: bearer tokens and their scopes.
    pub auth: AuthConfig,
    /// Change streams (`/v1/{topic}/watch`): how many, how much history, how often.
    pub watch: WatchConfig,
    /// Conditional writes, atomic batches, and reads that wait for an offset.
    pub consistency: ConsistencyConfig,
}

/// Conditional writes and atomic batches (Kafka transactions), and reads that wait until this
/// replica has applied an offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsistencyConfig {
    /// The prefix of this replica's Kafka `transactional.id`s (`<prefix>-0`, `<prefix>-1`,
    /// ...). It must differ between replicas (two replicas sharing one fence each other's
    /// transactions) and stay the same across a replica's restarts, so that a restarted
    /// replica aborts at once the transactions it left open. Default
    /// `kvstore-<hostname>-<listen port>`: on Kubernetes use a StatefulSet, whose pod names
    /// are stable.
    pub transactional_id: Option<String>,
    /// Transactions this replica keeps open at once, each on a producer of its own; more
    /// conditional writes and atomic batches wait for one. Default `4`.
    pub transactions: usize,
    /// Kafka's `transaction.timeout.ms`: the broker aborts a transaction open longer, such as
    /// one left by a replica that died mid-write; until then the topic's later records wait,
    /// on every replica. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub transaction_timeout: Duration,
    /// How long a read with `min_offset` or `consistency=strong`, or a watch with `from` or
    /// `min_offset`, waits for this replica when it names no `wait`. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub default_wait: Duration,
    /// The longest `wait` a read or watch may ask for; longer ones are cut to it. Default
    /// `30s`.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// `kafka.fetch_wait_max` for a topic while it sees conditional writes, atomic batches or
    /// reads with `min_offset` or `consistency=strong` here (until 10 s after the last). A
    /// transaction's commit marker ends the log without a record after it, and the replay
    /// learns that it has read everything only from the answer to a fetch that found nothing
    /// new, which the broker holds for this long: each conditional write after another, and
    /// each strong read after one, may wait as long. An idle topic costs the broker a fetch
    /// per wait meanwhile. Default `1ms`.
    #[serde(with = "humantime_serde")]
    pub fetch_wait_max: Duration,
}

impl Default for ConsistencyConfig {
    fn default() -> Self {
        ConsistencyConfig {
            transactional_id: None,
            transactions: 4,
            transaction_timeout: Duration::from_secs(5),
            default_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(30),
            fetch_wait_max: Duration::from_millis(1),
        }
    }
}

impl ConsistencyConfig {
    /// The prefix of the `transactional.id`s of a replica listening on `port`; see
    /// [`ConsistencyConfig::transactional_id`].
    pub fn transactional_id_or_default(&self, port: u16) -> String {
        if let Some(id) = &self.transactional_id {
            return id.clone();
        }
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        format!("kvstore-{hostname}-{port}")
    }
}

/// How HTTP connections are treated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// How long a client may take to send a request's headers before its connection is
    /// closed. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body before it gets 408. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Most requests served at once; more get 503 at once rather than queueing. `/healthz`
    /// and `/readyz` are not counted. Default `1024`.
    pub max_concurrent_requests: usize,
    /// HTTPS on the listener. Default off.
    pub tls: TlsConfig,
}

/// HTTPS on the listener: on when both files are given, off when neither is. The files are
/// read again on SIGHUP and when they change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server's certificate, followed by any intermediate certificates.
    /// Default none (plain HTTP).
    pub cert_file: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1). Default none
    /// (plain HTTP).
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The certificate and key files, when HTTPS is configured.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert_file.as_deref()?, self.key_file.as_deref()?))
    }
}

/// How topics are found, created and preloaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Create a missing topic on its first write (one partition, compacted). Default `true`.
    pub auto_create: bool,
    /// Topics attached at startup; readiness waits until they have replayed. Default empty.
    pub preload: Vec<String>,
    /// Replication factor of created topics; `-1` uses the broker's default. Default `-1`.
    pub replication_factor: i32,
    /// How long a request waits for a topic that is still replaying before it gets 503.
    /// Default `30s`.
    #[serde(with = "humantime_serde")]
    pub attach_timeout: Duration,
    /// Topics never served, as patterns (`*` any characters, `?` one): requests naming them
    /// get 403. Default `["__*"]`, Kafka's internal topics such as `__consumer_offsets`.
    pub deny: Vec<String>,
}

/// Size and count limits on requests and state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest key, in bytes of UTF-8. Default `1024`.
    pub max_key_bytes: usize,
    /// Longest value, in bytes. Default `1048576` (1 MiB).
    pub max_value_bytes: usize,
    /// Most operations in one batch request; more gets 413. Default `10000`.
    pub max_batch_ops: usize,
    /// Largest batch request body, in bytes; more gets 413. Default `67108864` (64 MiB).
    pub max_batch_bytes: usize,
    /// Items in a range page when the request names no `limit`. Default `100`.
    pub default_range_limit: usize,
    /// Most items in one range page; larger `limit`s are capped to it. Default `1000`.
    pub max_range_limit: usize,
    /// A range page stops early once its values add up to this many bytes. Default
    /// `16777216` (16 MiB).
    pub max_range_bytes: usize,
    /// Most topics one replica serves at once; more gets 503. Default `1000`.
    pub max_topics: usize,
    /// Most writes waiting for the broker or for their apply at once; more gets 429.
    /// Default `10000`.
    pub max_pending_writes: usize,
    /// Most operations and checks in one atomic batch; more gets 413. Default `1000`.
    pub max_atomic_batch_ops: usize,
}

/// Change streams: `GET /v1/{topic}/watch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Most watch streams open at once on this replica; more get 503. They are not counted
    /// in `http.max_concurrent_requests`. Default `10000`.
    pub max_watchers: usize,
    /// Most recent changes each topic keeps, from which watchers are served and resume
    /// (`Last-Event-ID`, `from`); an older position gets 410, and a watcher that falls this
    /// far behind is ended. Default `100000`.
    pub retain_changes: usize,
    /// Most bytes of keys and values those changes may hold (plus 128 per change), per topic.
    /// Default `33554432` (32 MiB).
    pub retain_bytes: usize,
    /// Most bytes of keys and values one watcher holds at once beside the changes it shares
    /// with the others: a page of its snapshot, a batch of changes taken to send. Default
    /// `1048576` (1 MiB).
    pub max_buffer_bytes: usize,
    /// A `progress` event (the position reached, to resume from) after this long without an
    /// event, when the position moved. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
    /// A comment line after this long without anything sent, so that proxies keep the
    /// connection. Default `15s`.
    #[serde(with = "humantime_serde")]
    pub keep_alive_interval: Duration,
}

/// Kafka client tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// librdkafka `fetch.wait.max.ms` (whose default this is too): how long the broker may hold
    /// a fetch open waiting for new data. Apache Kafka answers a waiting fetch as soon as
    /// records arrive, so there this only sets how often an idle topic is fetched: every
    /// attached topic has a consumer of its own, and 50 idle topics cost a Kafka broker about
    /// 60% of a core at `10ms`, 10% at `500ms` (README, Performance). A broker that waits out
    /// the fetch even when records arrive (Tansu 0.6) shows this replica the other replicas'
    /// writes up to this late, and a write here that follows one of theirs waits as long: set
    /// `10ms` for such a broker. Default `500ms`.
    #[serde(with = "humantime_serde")]
    pub fetch_wait_max: Duration,
    /// How often the broker's reachability is checked for readiness. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// Timeout for metadata look-ups and topic creation. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub admin_timeout: Duration,
    /// How clients connect to the brokers: `plaintext`, `ssl`, `sasl_plaintext` or
    /// `sasl_ssl`. Default `plaintext`.
    pub security_protocol: SecurityProtocol,
    /// SASL credentials, used with `sasl_plaintext` and `sasl_ssl`.
    pub sasl: SaslConfig,
    /// TLS to the brokers, used with `ssl` and `sasl_ssl`.
    pub tls: KafkaTlsConfig,
    /// Extra librdkafka properties applied last to every Kafka client, overriding kvstore's
    /// own settings and the typed ones above. Prefer the typed settings for secrets: these
    /// values are plain text. Default empty.
    pub librdkafka: BTreeMap<String, String>,
}

/// How Kafka clients connect to the brokers (librdkafka `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No encryption, no authentication.
    Plaintext,
    /// TLS, optionally with a client certificate.
    Ssl,
    /// SASL authentication without encryption.
    SaslPlaintext,
    /// SASL authentication over TLS: what managed Kafka services use.
    SaslSsl,
}

/// SASL mechanisms (librdkafka `sasl.mechanisms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// User name and password, sent as they are (use with TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response, SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// SASL credentials for the brokers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`. Default `PLAIN`.
    pub mechanism: SaslMechanism,
    /// The user name. Default empty.
    pub username: String,
    /// Where the password is: `{ file = "..." }` or `{ env = "..." }`. Default none.
    pub password: Option<SecretRef>,
}

/// TLS to the brokers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaTlsConfig {
    /// CA certificates (PEM) to trust instead of the system's. Default none (system CAs).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS. Default none.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM). Default none.
    pub key_file: Option<PathBuf>,
    /// Where the private key's password is, if it has one. Default none.
    pub key_password: Option<SecretRef>,
    /// Check that the broker's certificate names the host connected to. Default `true`.
    pub verify_hostname: bool,
}

/// Who may do what. With auth on, every request but `/healthz` and `/readyz` (and, if so
/// configured, `/metrics` and `/docs`) needs `Authorization: Bearer <token>` naming one of
/// `tokens`, whose scopes must allow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether requests need a token. Default: on, unless `listen` is a loopback address.
    pub enabled: Option<bool>,
    /// Serve `/metrics` without a token; else it needs the `metrics` scope. Default `false`.
    pub open_metrics: bool,
    /// Serve `/docs` and `/openapi.json` without a token; else any valid token. Default
    /// `true`: the API's description holds no data.
    pub open_docs: bool,
    /// The tokens. Default none.
    pub tokens: Vec<TokenConfig>,
}

/// One bearer token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs, metrics and error messages (never the secret itself).
    pub name: String,
    /// Where the token is: `{ file = "..." }` or `{ env = "..." }`.
    pub secret: SecretRef,
    /// What it allows ([`Scope`]): `read:PATTERN` (GET keys, range, watch), `write:PATTERN`
    /// (PUT, DELETE, batch) on topics matching PATTERN (`users*`, `*`), `admin` (`/v1/topics`) and
    /// `metrics` (`/metrics`).
    pub scopes: Vec<String>,
}

/// One thing a token may do.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Read keys, ranges and watches of topics matching the pattern.
    Read(TopicPattern),
    /// Put, delete and batch-write keys of topics matching the pattern.
    Write(TopicPattern),
    /// List the topics this replica serves.
    Admin,
    /// Scrape `/metrics`.
    Metrics,
}

impl Scope {
    /// Parses `read:PATTERN`, `write:PATTERN`, `admin` or `metrics`.
    pub fn parse(scope: &str) -> Result<Scope, String> {
        match scope.split_once(':') {
            Some(("read", pattern)) => TopicPattern::new(pattern).map(Scope::Read),
            Some(("write", pattern)) => TopicPattern::new(pattern).map(Scope::Write),
            None if scope == "admin" => Ok(Scope::Admin),
            None if scope == "metrics" => Ok(Scope::Metrics),
            _ => Err(format!(
                "scope {scope:?} is not one of read:PATTERN, write:PATTERN, admin, metrics"
            )),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            brokers: "localhost:9092".to_owned(),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
            http: HttpConfig::default(),
            topics: TopicsConfig::default(),
            limits: LimitsConfig::default(),
            kafka: KafkaConfig::default(),
            auth: AuthConfig::default(),
            consistency: ConsistencyConfig::default(),
            watch: WatchConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_concurrent_requests: 1024,
            tls: TlsConfig::default(),
        }
    }
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            auto_create: true,
            preload: Vec::new(),
            replication_factor: -1,
            attach_timeout: Duration::from_secs(30),
            deny: vec!["__*".to_owned()],
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_key_bytes: 1024,
            max_value_bytes: 1024 * 1024,
            max_batch_ops: 10_000,
            max_batch_bytes: 64 * 1024 * 1024,
            default_range_limit: 100,
            max_range_limit: 1000,
            max_range_bytes: 16 * 1024 * 1024,
            max_topics: 1000,
            max_pending_writes: 10_000,
            max_atomic_batch_ops: 1000,
        }
    }
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            max_watchers: 10_000,
            retain_changes: 100_000,
            retain_bytes: 32 * 1024 * 1024,
            max_buffer_bytes: 1024 * 1024,
            progress_interval: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(15),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            fetch_wait_max: Duration::from_millis(500),
            health_interval: Duration::from_secs(2),
            admin_timeout: Duration::from_secs(5),
            security_protocol: SecurityProtocol::Plaintext,
            sasl: SaslConfig::default(),
            tls: KafkaTlsConfig::default(),
            librdkafka: BTreeMap::new(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: None,
            open_metrics: false,
            open_docs: true,
            tokens: Vec::new(),
        }
    }
}

impl Default for SaslConfig {
    fn default() -> Self {
        SaslConfig {
            mechanism: SaslMechanism::Plain,
            username: String::new(),
            password: None,
        }
    }
}

impl Default for KafkaTlsConfig {
    fn default() -> Self {
        KafkaTlsConfig {
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_password: None,
            verify_hostname: true,
        }
    }
}

impl SecurityProtocol {
    /// The librdkafka `security.protocol` value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether this protocol authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Whether this protocol encrypts with TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

impl SaslMechanism {
    /// The librdkafka `sasl.mechanisms` value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

mod load;
#[cfg(test)]
mod readme;
mod validate;

pub use load::{ConfigError, Overrides};

impl Config {
    /// Whether requests need a bearer token: as configured, else on unless the listener is
    /// a loopback address.
    pub fn auth_enabled(&self) -> bool {
        self.auth
            .enabled
            .unwrap_or_else(|| !self.listen.ip().is_loopback())
    }

    /// The `topics.deny` patterns (checked by [`Config::from_figment`]).
    pub fn denied_topics(&self) -> Vec<TopicPattern> {
        self.topics
            .deny
            .iter()
            .filter_map(|pattern| TopicPattern::new(pattern).ok())
            .collect()
    }
}
