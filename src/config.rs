//! Configuration: defaults, then a TOML file, then `KVSTORE_*` environment variables, then
//! command-line flags, each layer overriding the one before.
//!
//! Loading ([`Config::figment`]) and checking ([`Config::from_figment`]) are separate steps so
//! that every error names the key it is about.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables read as configuration; `__` separates nested keys
/// (`KVSTORE_LIMITS__MAX_KEY_BYTES`).
pub const ENV_PREFIX: &str = "KVSTORE_";

/// The file read when `--config` is not given, if it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "kvstore.toml";

/// Everything `kvstore serve` can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on. Default `0.0.0.0:8080`.
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
    /// Kafka client tuning.
    pub kafka: KafkaConfig,
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
    /// librdkafka `fetch.wait.max.ms`: how long the broker may hold a fetch open waiting for
    /// new data. Kept small because some Kafka-compatible brokers (Tansu) do not answer a
    /// waiting fetch when data arrives, so this bounds how soon a write is seen. Default `10ms`.
    #[serde(with = "humantime_serde")]
    pub fetch_wait_max: Duration,
    /// How often the broker's reachability is checked for readiness. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// Timeout for metadata look-ups and topic creation. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub admin_timeout: Duration,
    /// Extra librdkafka properties (`security.protocol`, `sasl.mechanism`, ...) applied last to
    /// every Kafka client, overriding kvstore's own settings. Default empty.
    pub librdkafka: BTreeMap<String, String>,
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
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            brokers: "localhost:9092".to_owned(),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
            http: HttpConfig::default(),
            topics: TopicsConfig::default(),
            limits: LimitsConfig::default(),
            kafka: KafkaConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
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
            fetch_wait_max: Duration::from_millis(10),
            health_interval: Duration::from_secs(2),
            admin_timeout: Duration::from_secs(5),
            librdkafka: BTreeMap::new(),
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
    #[error("invalid configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value has the right type but is out of range.
    #[error("invalid configuration: `{key}` {problem}")]
    Invalid {
        /// The dotted key, as in the TOML file.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl Config {
    /// The top-level keys, so that unrelated `KVSTORE_*` variables (such as the client's
    /// `KVSTORE_URL`) are not mistaken for server settings.
    const KEYS: [&'static str; 10] = [
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
            .merge(env)
            .merge(Serialized::defaults(overrides.clone())))
    }

    /// Extracts and checks the configuration.
    pub fn from_figment(figment: &Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Loads the configuration from every layer.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::from_figment(&Config::figment(file, overrides)?)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                problem: problem.into(),
            }
        }
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
        for topic in &self.topics.preload {
            if let Err(problem) = crate::topic_name::validate(topic) {
                return Err(invalid("topics.preload", format!("{topic:?}: {problem}")));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(invalid("log_level", "is not a valid tracing filter"));
        }
        Ok(())
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
        assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(config.brokers, "localhost:9092");
        assert_eq!(config.write_timeout, Duration::from_secs(10));
        assert_eq!(config.limits.max_key_bytes, 1024);
        assert_eq!(config.limits.max_value_bytes, 1 << 20);
        assert!(config.topics.auto_create);
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
