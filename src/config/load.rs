//! Loading the configuration's layers (defaults, file, environment, flags) with figment,
//! and the errors that name the key they are about.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Serialize;

use super::{Config, DEFAULT_CONFIG_FILE, ENV_PREFIX, LogFormat};

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
    const KEYS: [&'static str; 13] = [
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
        "consistency",
        "watch",
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
    use std::time::Duration;

    use figment::Jail;

    use super::*;
    use crate::config::SaslMechanism;
    use crate::secret::SecretRef;

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
