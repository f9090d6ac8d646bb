//! Configuration: defaults, then a TOML file, then `KVSTORE_*` environment variables, then
//! command-line flags, each layer overriding the one before.
//!
//! Loading ([`Config::figment`]) and checking ([`Config::from_figment`]) are separate steps so
//! that every error names the key it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
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
    /// What it allows: `read:PATTERN` (GET keys, range), `write:PATTERN` (PUT, DELETE,
    /// batch) on topics matching PATTERN (`users*`, `*`), `admin` (`/v1/topics`) and
    /// `metrics` (`/metrics`).
    pub scopes: Vec<String>,
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

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--brokers`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// `--log-format`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// `--log-level`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` named a file that does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// A value could not be read or has the wrong type; figment's message names the key.
    // Not a `source`: the message already holds figment's, which should not print twice.
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    /// A value has the right type but is out of range.
    #[error("invalid configuration: `{key}` {problem}")]
    Invalid {
        /// The dotted key, as in the TOML file.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl From<Box<figment::Error>> for ConfigError {
    fn from(error: Box<figment::Error>) -> Self {
        ConfigError::Parse(error)
    }
}

impl Config {
    /// The top-level keys, so that unrelated `KVSTORE_*` variables (such as the client's
    /// `KVSTORE_URL`) are not mistaken for server settings.
    const KEYS: [&'static str; 11] = [
        "listen",
        "brokers",
        "write_timeout",
        "shutdown_timeout",
        "log_format",
        "log_level",
        "http",
        "topics",
        "limits",
        "kafka",
        "auth",
    ];

    /// The layered sources: defaults, the TOML file, the environment, then `overrides`.
    ///
    /// `file` is the `--config` path; without it `kvstore.toml` is read if it exists in the
    /// working directory.
    pub fn figment(file: Option<&Path>, overrides: &Overrides) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.is_file() => {
                return Err(ConfigError::MissingFile(path.to_path_buf()));
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        let env = Env::prefixed(ENV_PREFIX).split("__").filter(|key| {
            let top = key.as_str().split('.').next().unwrap_or_default();
            Config::KEYS
                .iter()
                .any(|known| top.eq_ignore_ascii_case(known))
        });
        Ok(figment
            .merge(Environment::new(env))
            .merge(Serialized::defaults(overrides.clone())))
    }

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

    /// Extracts and checks the configuration.
    pub fn from_figment(figment: &Figment) -> Result<Config, ConfigError> {
        let config: Config = figment
            .extract()
            .map_err(|error| Box::new(redact_values(error)))?;
        config.validate()?;
        Ok(config)
    }

    /// Loads the configuration from every layer.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::from_figment(&Config::figment(file, overrides)?)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("limits.max_key_bytes", self.limits.max_key_bytes),
            ("limits.max_value_bytes", self.limits.max_value_bytes),
            ("limits.max_batch_ops", self.limits.max_batch_ops),
            ("limits.max_batch_bytes", self.limits.max_batch_bytes),
            (
                "limits.default_range_limit",
                self.limits.default_range_limit,
            ),
            ("limits.max_range_limit", self.limits.max_range_limit),
            ("limits.max_range_bytes", self.limits.max_range_bytes),
            ("limits.max_topics", self.limits.max_topics),
            ("limits.max_pending_writes", self.limits.max_pending_writes),
            (
                "http.max_concurrent_requests",
                self.http.max_concurrent_requests,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.limits.default_range_limit > self.limits.max_range_limit {
            return Err(invalid(
                "limits.default_range_limit",
                "must not exceed limits.max_range_limit",
            ));
        }
        // Kafka's own ceiling on a record is an i32 byte count; stay well inside it.
        if self.limits.max_value_bytes > 512 * 1024 * 1024 {
            return Err(invalid("limits.max_value_bytes", "must be at most 512 MiB"));
        }
        let durations = [
            ("write_timeout", self.write_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("http.body_read_timeout", self.http.body_read_timeout),
            ("topics.attach_timeout", self.topics.attach_timeout),
            ("kafka.health_interval", self.kafka.health_interval),
            ("kafka.admin_timeout", self.kafka.admin_timeout),
        ];
        for (key, value) in durations {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than 0s"));
            }
        }
        match (&self.http.tls.cert_file, &self.http.tls.key_file) {
            (Some(_), None) => {
                return Err(invalid(
                    "http.tls.key_file",
                    "must be set when http.tls.cert_file is",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "http.tls.cert_file",
                    "must be set when http.tls.key_file is",
                ));
            }
            _ => {}
        }
        if self.brokers.trim().is_empty() {
            return Err(invalid("brokers", "must name at least one host:port"));
        }
        if self.topics.replication_factor == 0 || self.topics.replication_factor < -1 {
            return Err(invalid(
                "topics.replication_factor",
                "must be -1 (broker default) or at least 1",
            ));
        }
        for pattern in &self.topics.deny {
            TopicPattern::new(pattern).map_err(|problem| invalid("topics.deny", problem))?;
        }
        let denied = self.denied_topics();
        for topic in &self.topics.preload {
            if let Err(problem) = crate::topic_name::validate(topic) {
                return Err(invalid("topics.preload", format!("{topic:?}: {problem}")));
            }
            if let Some(pattern) = denied.iter().find(|p| p.matches(topic)) {
                return Err(invalid(
                    "topics.preload",
                    format!("{topic:?} matches the topics.deny pattern {pattern:?}"),
                ));
            }
        }
        self.validate_kafka_security()?;
        self.validate_auth()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(invalid("log_level", "is not a valid tracing filter"));
        }
        Ok(())
    }

    fn validate_kafka_security(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        let protocol = kafka.security_protocol;
        if protocol.uses_sasl() {
            if kafka.sasl.username.is_empty() {
                return Err(invalid(
                    "kafka.sasl.username",
                    format!(
                        "must be set with security_protocol {}",
                        protocol.as_librdkafka()
                    ),
                ));
            }
            if kafka.sasl.password.is_none() {
                return Err(invalid(
                    "kafka.sasl.password",
                    "must name a file or environment variable: { file = \"...\" } or { env = \"...\" }",
                ));
            }
        }
        let tls = &kafka.tls;
        let tls_set = tls.ca_file.is_some()
            || tls.cert_file.is_some()
            || tls.key_file.is_some()
            || tls.key_password.is_some();
        if tls_set && !protocol.uses_tls() {
            return Err(invalid(
                "kafka.tls",
                "is only used with security_protocol ssl or sasl_ssl",
            ));
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(invalid(
                "kafka.tls.cert_file",
                "and kafka.tls.key_file must be given together",
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for token in &self.auth.tokens {
            if token.name.trim().is_empty() {
                return Err(invalid("auth.tokens", "every token needs a name"));
            }
            if !names.insert(token.name.as_str()) {
                return Err(invalid(
                    "auth.tokens",
                    format!("two tokens are named {:?}", token.name),
                ));
            }
            for scope in &token.scopes {
                crate::auth::Scope::parse(scope).map_err(|problem| {
                    invalid("auth.tokens", format!("token {:?}: {problem}", token.name))
                })?;
            }
        }
        if self.auth_enabled() && self.auth.tokens.is_empty() {
            let why = match self.auth.enabled {
                Some(_) => "auth.enabled is true".to_owned(),
                None => format!(
                    "auth is on by default when listening on {}, which is not a loopback address",
                    self.listen
                ),
            };
            return Err(invalid(
                "auth.tokens",
                format!(
                    "is empty but {why}: configure tokens, or set auth.enabled = false \
                     (KVSTORE_AUTH__ENABLED=false) to serve without authentication"
                ),
            ));
        }
        Ok(())
    }
}

/// figment's messages quote the value they could not use; a secret put in the wrong place
/// (say, a malformed `KVSTORE_KAFKA__LIBRDKAFKA`) must not reach the logs that way. The key
/// and the expected type are still named.
fn redact_values(error: figment::Error) -> figment::Error {
    use figment::error::{Actual, Kind};
    let hide = |actual: Actual| match actual {
        Actual::Str(_) => Actual::Other("a string (not shown)".into()),
        other => other,
    };
    error
        .into_iter()
        .map(|mut error| {
            error.kind = match error.kind {
                Kind::InvalidType(actual, expected) => Kind::InvalidType(hide(actual), expected),
                Kind::InvalidValue(actual, expected) => Kind::InvalidValue(hide(actual), expected),
                kind => kind,
            };
            error
        })
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .reduce(|earlier, error| earlier.chain(error))
        .unwrap_or_else(|| figment::Error::from("invalid configuration"))
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// The `KVSTORE_*` variables as figment's [`Env`] reads them, except that a setting whose
/// default is a string keeps the variable's text as it is. figment reads every value as TOML
/// would, so `KVSTORE_KAFKA__SASL__USERNAME=007` would be the number 7 (and refused), though a
/// Kafka user name taken from a Kubernetes Secret can be all digits. A quoted value (`"007"`)
/// is still read as the text inside the quotes.
struct Environment {
    env: Env,
    /// The dotted keys whose default is a string.
    string_keys: BTreeSet<String>,
}

impl Environment {
    fn new(env: Env) -> Environment {
        let mut string_keys = BTreeSet::new();
        if let Ok(defaults) = Value::serialize(Config::default()) {
            collect_string_keys("", &defaults, &mut string_keys);
        }
        Environment { env, string_keys }
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        self.env.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, text) in self.env.iter() {
            let parsed: Value = text.parse().unwrap_or_else(|never| match never {});
            let value = match parsed {
                Value::String(..) => parsed,
                _ if self.string_keys.contains(key.as_str()) => Value::from(text),
                _ => parsed,
            };
            if let Value::Dict(_, nested) = figment::util::nest(key.as_str(), value) {
                merge_dicts(&mut dict, nested);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn collect_string_keys(path: &str, value: &Value, keys: &mut BTreeSet<String>) {
    match value {
        Value::String(..) => {
            keys.insert(path.to_owned());
        }
        Value::Dict(_, dict) => {
            for (name, value) in dict {
                let path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                collect_string_keys(&path, value, keys);
            }
        }
        _ => {}
    }
}

/// Merges `from` into `into`, nested tables key by key.
fn merge_dicts(into: &mut Dict, from: Dict) {
    for (name, value) in from {
        match (into.get_mut(&name), value) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, nested)) => {
                merge_dicts(existing, nested);
            }
            (_, value) => {
                into.insert(name, value);
            }
        }
    }
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "figment's Jail closures must return figment::Error"
)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(overrides: &Overrides) -> Result<Config, String> {
        Config::load(None, overrides).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_documentation() {
        let config = Config::default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.brokers, "localhost:9092");
        assert_eq!(config.write_timeout, Duration::from_secs(10));
        assert_eq!(config.limits.max_key_bytes, 1024);
        assert_eq!(config.limits.max_value_bytes, 1 << 20);
        assert!(config.topics.auto_create);
        assert_eq!(config.kafka.fetch_wait_max, Duration::from_millis(500));
    }

    #[test]
    fn keys_list_matches_the_struct() {
        let value = serde_json::to_value(Config::default()).expect("serializes");
        let mut keys: Vec<&str> = value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut known = Config::KEYS.to_vec();
        keys.sort_unstable();
        known.sort_unstable();
        assert_eq!(keys, known);
    }

    #[test]
    fn file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                DEFAULT_CONFIG_FILE,
                r#"
                    brokers = "file:9092"
                    listen = "127.0.0.1:7000"
                    write_timeout = "3s"
                    [limits]
                    max_key_bytes = 10
                    max_value_bytes = 20
                "#,
            )?;
            let config = load_in_jail(&Overrides::default()).expect("loads");
            assert_eq!(config.brokers, "file:9092");
            assert_eq!(config.listen.port(), 7000);
            assert_eq!(config.write_timeout, Duration::from_secs(3));
            assert_eq!(config.limits.max_key_bytes, 10);

            jail.set_env("KVSTORE_BROKERS", "env:9092");
            jail.set_env("KVSTORE_LIMITS__MAX_VALUE_BYTES", "30");
            jail.set_env("KVSTORE_TOPICS__PRELOAD", "[a, b]");
            // Unrelated variables with the same prefix are not server settings.
            jail.set_env("KVSTORE_URL", "http://example");
            let config = load_in_jail(&Overrides::default()).expect("loads");
            assert_eq!(config.brokers, "env:9092");
            assert_eq!(config.limits.max_key_bytes, 10);
            assert_eq!(config.limits.max_value_bytes, 30);
            assert_eq!(config.topics.preload, vec!["a", "b"]);

            let flags = Overrides {
                brokers: Some("flag:9092".into()),
                ..Overrides::default()
            };
            let config = load_in_jail(&flags).expect("loads");
            assert_eq!(config.brokers, "flag:9092");
            assert_eq!(config.listen.port(), 7000);
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("KVSTORE_LIMITS__MAX_KEY_BYTES", "lots");
            let err = load_in_jail(&Overrides::default()).expect_err("rejects");
            assert!(err.to_lowercase().contains("limits.max_key_bytes"), "{err}");

            jail.set_env("KVSTORE_LIMITS__MAX_KEY_BYTES", "0");
            let err = load_in_jail(&Overrides::default()).expect_err("rejects");
            assert!(err.contains("limits.max_key_bytes"), "{err}");

            jail.set_env("KVSTORE_LIMITS__MAX_KEY_BYTES", "5");
            jail.set_env("KVSTORE_WRITE_TIMEOUT", "soon");
            let err = load_in_jail(&Overrides::default()).expect_err("rejects");
            assert!(err.to_lowercase().contains("write_timeout"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn errors_do_not_quote_values() {
        Jail::expect_with(|jail| {
            jail.set_env("KVSTORE_KAFKA__LIBRDKAFKA", "{sasl.password=hunter2hunter2");
            let err = load_in_jail(&Overrides::default()).expect_err("rejects");
            assert!(err.to_lowercase().contains("librdkafka"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn auth_is_on_by_default_off_loopback_and_needs_tokens() {
        Jail::expect_with(|jail| {
            let config = load_in_jail(&Overrides::default()).expect("loads");
            assert!(!config.auth_enabled(), "loopback by default");

            jail.set_env("KVSTORE_LISTEN", "0.0.0.0:8080");
            let err = load_in_jail(&Overrides::default()).expect_err("needs tokens");
            assert!(
                err.contains("auth.tokens") && err.contains("auth.enabled"),
                "{err}"
            );

            jail.set_env("KVSTORE_AUTH__ENABLED", "false");
            let config = load_in_jail(&Overrides::default()).expect("explicitly off");
            assert!(!config.auth_enabled());

            jail.set_env("KVSTORE_AUTH__ENABLED", "true");
            jail.set_env(
                "KVSTORE_AUTH__TOKENS",
                r#"[{name="app", secret={env="APP_TOKEN"}, scopes=["read:users*", "admin"]}]"#,
            );
            let config = load_in_jail(&Overrides::default()).expect("loads");
            assert!(config.auth_enabled());
            assert_eq!(
                config.auth.tokens[0].secret,
                SecretRef::Env("APP_TOKEN".into())
            );

            jail.set_env(
                "KVSTORE_AUTH__TOKENS",
                r#"[{name="app", secret={env="APP_TOKEN"}, scopes=["root"]}]"#,
            );
            let err = load_in_jail(&Overrides::default()).expect_err("bad scope");
            assert!(err.contains("root"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn denied_topics_and_kafka_security_are_checked() {
        Jail::expect_with(|jail| {
            let config = load_in_jail(&Overrides::default()).expect("loads");
            assert!(config.denied_topics()[0].matches("__consumer_offsets"));

            jail.set_env("KVSTORE_TOPICS__PRELOAD", "[__consumer_offsets]");
            let err = load_in_jail(&Overrides::default()).expect_err("denied");
            assert!(err.contains("topics.preload"), "{err}");
            jail.set_env("KVSTORE_TOPICS__PRELOAD", "[]");

            jail.set_env("KVSTORE_KAFKA__SECURITY_PROTOCOL", "sasl_ssl");
            let err = load_in_jail(&Overrides::default()).expect_err("needs a user");
            assert!(err.contains("kafka.sasl.username"), "{err}");
            jail.set_env("KVSTORE_KAFKA__SASL__USERNAME", "007");
            let err = load_in_jail(&Overrides::default()).expect_err("needs a password");
            assert!(err.contains("kafka.sasl.password"), "{err}");
            jail.set_env("KVSTORE_KAFKA__SASL__PASSWORD__FILE", "/run/secrets/kafka");
            jail.set_env("KVSTORE_KAFKA__SASL__MECHANISM", "SCRAM-SHA-512");
            let config = load_in_jail(&Overrides::default()).expect("loads");
            assert_eq!(config.kafka.sasl.mechanism, SaslMechanism::ScramSha512);
            // A string setting keeps the variable's text, digits and all; quoted, the text
            // inside the quotes.
            assert_eq!(config.kafka.sasl.username, "007");
            jail.set_env("KVSTORE_KAFKA__SASL__USERNAME", r#""true""#);
            let config = load_in_jail(&Overrides::default()).expect("loads");
            assert_eq!(config.kafka.sasl.username, "true");

            jail.set_env("KVSTORE_KAFKA__SECURITY_PROTOCOL", "sasl_plaintext");
            jail.set_env("KVSTORE_KAFKA__TLS__CA_FILE", "/etc/ca.pem");
            let err = load_in_jail(&Overrides::default()).expect_err("tls unused");
            assert!(err.contains("kafka.tls"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        Jail::expect_with(|jail| {
            jail.create_file(DEFAULT_CONFIG_FILE, "[limits]\nmax_kye_bytes = 3\n")?;
            let err = load_in_jail(&Overrides::default()).expect_err("rejects");
            assert!(err.contains("max_kye_bytes"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let err = Config::load(
            Some(Path::new("/nonexistent/kvstore.toml")),
            &Overrides::default(),
        )
        .expect_err("rejects");
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    #[test]
    fn tls_takes_both_files_or_neither() {
        Jail::expect_with(|jail| {
            assert_eq!(Config::default().http.tls.files(), None);
            jail.set_env("KVSTORE_HTTP__TLS__CERT_FILE", "/etc/kvstore/tls.crt");
            let err = load_in_jail(&Overrides::default()).expect_err("rejects");
            assert!(err.contains("http.tls.key_file"), "{err}");

            jail.set_env("KVSTORE_HTTP__TLS__KEY_FILE", "/etc/kvstore/tls.key");
            let config = load_in_jail(&Overrides::default()).expect("loads");
            assert_eq!(
                config.http.tls.files(),
                Some((
                    Path::new("/etc/kvstore/tls.crt"),
                    Path::new("/etc/kvstore/tls.key")
                ))
            );

            jail.clear_env();
            jail.create_file(
                DEFAULT_CONFIG_FILE,
                "[http.tls]\nkey_file = \"/etc/kvstore/tls.key\"\n",
            )?;
            let err = load_in_jail(&Overrides::default()).expect_err("rejects");
            assert!(err.contains("http.tls.cert_file"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn preload_topics_are_checked() {
        Jail::expect_with(|jail| {
            jail.set_env("KVSTORE_TOPICS__PRELOAD", "[\"bad topic\"]");
            let err = load_in_jail(&Overrides::default()).expect_err("rejects");
            assert!(err.contains("topics.preload"), "{err}");
            Ok(())
        });
    }
}
