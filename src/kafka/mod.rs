//! Everything that talks to Kafka, and the only place rdkafka is used.
//!
//! - [`Kafka`]: the shared clients (a producer and an admin client) and how every client is
//!   configured.
//! - [`admin`]: topic look-up and creation, and the broker reachability probe.
//! - [`producer`]: writing records, holding a topic's back while five of them are in
//!   flight, and classifying the failures.
//! - [`replay`]: the per-topic loop that reads a topic from its beginning into its store.

pub mod admin;
pub mod producer;
pub mod replay;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};

use crate::config::{Config, KafkaConfig};
use crate::secret::SecretError;

/// The record header that carries a value's content type.
pub const CONTENT_TYPE_HEADER: &str = "content-type";

/// Whether the broker answered lately. Only the probe ([`Kafka::probe_broker`]) decides;
/// clients that lose their connections ask it to check at once.
#[derive(Debug, Default)]
pub struct BrokerStatus {
    reachability: AtomicU8,
    recheck: tokio::sync::Notify,
    /// When the broker last answered, for telling readers how stale they may be.
    last_up: std::sync::Mutex<Option<std::time::Instant>>,
    /// The last error a client reported (a refused TLS handshake or SASL login, say) and
    /// when, so that "unreachable" can say why and repeats are not logged every retry.
    last_error: std::sync::Mutex<Option<(String, std::time::Instant)>>,
}

/// How long a client error explains a broker that does not answer, and how long the same
/// error is not logged again.
const CLIENT_ERROR_MEMORY: std::time::Duration = std::time::Duration::from_secs(30);

/// What is known of the broker's reachability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// Not checked yet.
    Unknown,
    /// The last check succeeded.
    Up,
    /// The last check failed, or every broker connection is down.
    Down,
}

impl BrokerStatus {
    /// The current reachability.
    pub fn get(&self) -> Reachability {
        match self.reachability.load(Ordering::Relaxed) {
            1 => Reachability::Up,
            2 => Reachability::Down,
            _ => Reachability::Unknown,
        }
    }

    /// Records the outcome of a check. Returns the previous reachability.
    pub fn set(&self, reachability: Reachability) -> Reachability {
        if reachability == Reachability::Up {
            *self
                .last_up
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(std::time::Instant::now());
        }
        let value = match reachability {
            Reachability::Unknown => 0,
            Reachability::Up => 1,
            Reachability::Down => 2,
        };
        match self.reachability.swap(value, Ordering::Relaxed) {
            1 => Reachability::Up,
            2 => Reachability::Down,
            _ => Reachability::Unknown,
        }
    }

    /// While the broker is not known to be up: how long since it last answered (`None` if it
    /// never did). Data read meanwhile may be at least that stale.
    pub fn unreachable_for(&self) -> Option<Option<std::time::Duration>> {
        if self.get() == Reachability::Up {
            return None;
        }
        let last_up = *self
            .last_up
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(last_up.map(|at| at.elapsed()))
    }

    /// Whether the broker is known to be down.
    pub fn is_down(&self) -> bool {
        self.get() == Reachability::Down
    }

    /// Why the broker counts as unreachable, with the last client error if it is recent.
    pub fn down_reason(&self) -> String {
        let base = "the broker did not answer the last check";
        match self.recent_error() {
            Some(error) => format!("{base}; the last Kafka client error: {error}"),
            None => base.to_owned(),
        }
    }

    /// The last client error, if it happened within [`CLIENT_ERROR_MEMORY`].
    pub fn recent_error(&self) -> Option<String> {
        let last = self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.as_ref()
            .filter(|(_, at)| at.elapsed() < CLIENT_ERROR_MEMORY)
            .map(|(error, _)| error.clone())
    }

    /// Records a client error; returns whether it is news (not the same as the last one
    /// within [`CLIENT_ERROR_MEMORY`]), that is, worth logging.
    fn record_error(&self, error: String) -> bool {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let repeat = last
            .as_ref()
            .is_some_and(|(seen, at)| *seen == error && at.elapsed() < CLIENT_ERROR_MEMORY);
        if !repeat {
            *last = Some((error, std::time::Instant::now()));
        }
        !repeat
    }

    /// Asks the probe to check now rather than at its next interval.
    pub fn request_check(&self) {
        self.recheck.notify_one();
    }

    /// Completes when someone asks for a check.
    pub async fn check_requested(&self) {
        self.recheck.notified().await;
    }
}

/// The context of every Kafka client: routes librdkafka's logs into `tracing` and notices when
/// all brokers are down.
#[derive(Debug, Clone)]
pub struct KafkaContext {
    status: Arc<BrokerStatus>,
    /// Which client this is, for the logs.
    client: &'static str,
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let client = self.client;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", client, facility, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", client, facility, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", client, facility, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", client, facility, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::PartitionEOF) {
            // Reaching the end of a partition is news for the replay loop, not an error.
            return;
        }
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            // This client lost its connections; whether the broker is down is the probe's
            // call (this event can also arrive late, after the broker is back).
            tracing::debug!(client = self.client, %reason, "all broker connections down");
            self.status.request_check();
        } else if code == Some(RDKafkaErrorCode::BrokerTransportFailure) {
            // Connection failures repeat while a broker is away; librdkafka logs them too.
            tracing::debug!(client = self.client, %reason, "broker connection failed");
            self.status.request_check();
        } else if self.status.record_error(format!("{error} ({reason})")) {
            tracing::warn!(client = self.client, %error, %reason, "Kafka client error");
        } else {
            // The same error again: librdkafka retries every few hundred milliseconds.
            tracing::debug!(client = self.client, %error, %reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for KafkaContext {}

/// The shared Kafka clients. Cheap to clone.
#[derive(Clone)]
pub struct Kafka {
    inner: Arc<Inner>,
}

struct Inner {
    // Replaced when the broker goes down (see `reset_producer`); a std lock held only to
    // clone or swap the handle.
    producer: std::sync::RwLock<Arc<producer::RecordProducer>>,
    admin: rdkafka::admin::AdminClient<KafkaContext>,
    status: Arc<BrokerStatus>,
    config: Arc<Config>,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka")
            .field("brokers", &self.inner.config.brokers)
            .finish_non_exhaustive()
    }
}

impl Kafka {
    /// Creates the producer and admin clients. They connect lazily, so this succeeds while
    /// the broker is down; it fails only on invalid client configuration.
    pub fn new(config: Arc<Config>) -> KafkaResult<Kafka> {
        let status = Arc::new(BrokerStatus::default());
        let producer = producer::create(&config, context(&status, "producer"))?;
        let admin = client_config(&config, [])?.create_with_context(context(&status, "admin"))?;
        Ok(Kafka {
            inner: Arc::new(Inner {
                producer: std::sync::RwLock::new(Arc::new(producer)),
                admin,
                status,
                config,
            }),
        })
    }

    /// The broker's reachability.
    pub fn status(&self) -> &BrokerStatus {
        &self.inner.status
    }

    fn config(&self) -> &Config {
        &self.inner.config
    }

    fn context(&self, client: &'static str) -> KafkaContext {
        context(&self.inner.status, client)
    }
}

fn context(status: &Arc<BrokerStatus>, client: &'static str) -> KafkaContext {
    KafkaContext {
        status: status.clone(),
        client,
    }
}

/// The configuration of one client: the brokers, settings every client shares, the client's
/// own `settings`, the typed security settings, and last the operator's `kafka.librdkafka`
/// overrides. Fails if a secret the security settings name cannot be read.
pub fn client_config<'a>(
    config: &Config,
    settings: impl IntoIterator<Item = (&'a str, String)>,
) -> KafkaResult<ClientConfig> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        // kvstore creates topics itself, with one partition and compaction; a broker-created
        // topic would get the broker's defaults.
        .set("allow.auto.create.topics", "false")
        // Notice a returning broker within a second rather than librdkafka's default of up to
        // ten: until then writes fail and readiness is down.
        .set("reconnect.backoff.max.ms", "1000")
        .set("client.id", "kvstore");
    for (key, value) in settings {
        client.set(key, value);
    }
    let security = security_settings(&config.kafka)
        .map_err(|error| KafkaError::ClientCreation(error.to_string()))?;
    for (key, value) in security {
        client.set(key, value);
    }
    for (key, value) in &config.kafka.librdkafka {
        client.set(key, value);
    }
    Ok(client)
}

/// Why the Kafka security settings cannot be used. Names the setting and the file or
/// variable, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A password could not be read.
    #[error("{setting}: {source}")]
    Secret {
        /// The setting naming the password.
        setting: &'static str,
        /// Why.
        source: SecretError,
    },
    /// A certificate or key file cannot be read (librdkafka's own message names neither).
    #[error("{setting}: cannot read {path}: {source}")]
    File {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// librdkafka properties for `kafka.security_protocol`, `kafka.sasl` and `kafka.tls`, with
/// the secrets they name read now (so a rotated password file is used by the next client).
pub fn security_settings(
    kafka: &KafkaConfig,
) -> Result<Vec<(&'static str, String)>, SecurityError> {
    let secret = |setting, reference: &crate::secret::SecretRef| {
        reference
            .resolve()
            .map_err(|source| SecurityError::Secret { setting, source })
    };
    let protocol = kafka.security_protocol;
    let mut settings = vec![("security.protocol", protocol.as_librdkafka().to_owned())];
    if protocol.uses_sasl() {
        settings.push((
            "sasl.mechanisms",
            kafka.sasl.mechanism.as_librdkafka().to_owned(),
        ));
        settings.push(("sasl.username", kafka.sasl.username.clone()));
        if let Some(password) = &kafka.sasl.password {
            settings.push(("sasl.password", secret("kafka.sasl.password", password)?));
        }
    }
    if protocol.uses_tls() {
        let tls = &kafka.tls;
        let files = [
            ("ssl.ca.location", "kafka.tls.ca_file", &tls.ca_file),
            (
                "ssl.certificate.location",
                "kafka.tls.cert_file",
                &tls.cert_file,
            ),
            ("ssl.key.location", "kafka.tls.key_file", &tls.key_file),
        ];
        for (key, setting, file) in files {
            if let Some(path) = file {
                std::fs::File::open(path).map_err(|source| SecurityError::File {
                    setting,
                    path: path.clone(),
                    source,
                })?;
                settings.push((key, path.display().to_string()));
            }
        }
        if let Some(password) = &tls.key_password {
            settings.push((
                "ssl.key.password",
                secret("kafka.tls.key_password", password)?,
            ));
        }
        let check = if tls.verify_hostname { "https" } else { "none" };
        settings.push(("ssl.endpoint.identification.algorithm", check.to_owned()));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SaslMechanism, SecurityProtocol};
    use crate::secret::SecretRef;

    fn as_map(
        settings: Vec<(&'static str, String)>,
    ) -> std::collections::BTreeMap<&'static str, String> {
        settings.into_iter().collect()
    }

    #[test]
    fn plaintext_sets_only_the_protocol() {
        let settings = as_map(security_settings(&KafkaConfig::default()).expect("no secrets"));
        assert_eq!(settings.len(), 1);
        assert_eq!(settings["security.protocol"], "plaintext");
    }

    #[test]
    fn sasl_ssl_maps_to_librdkafka_properties_with_the_secret_read() {
        let dir = std::env::temp_dir().join(format!("kvstore-kafka-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let password = dir.join("password");
        std::fs::write(&password, "pa55word\n").expect("write");
        let mut kafka = KafkaConfig {
            security_protocol: SecurityProtocol::SaslSsl,
            ..KafkaConfig::default()
        };
        kafka.sasl.mechanism = SaslMechanism::ScramSha256;
        kafka.sasl.username = "kv".into();
        kafka.sasl.password = Some(SecretRef::File(password.clone()));
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not checked here").expect("write");
        kafka.tls.ca_file = Some(ca.clone());
        kafka.tls.verify_hostname = false;
        let settings = as_map(security_settings(&kafka).expect("reads the password"));
        assert_eq!(settings["security.protocol"], "sasl_ssl");
        assert_eq!(settings["sasl.mechanisms"], "SCRAM-SHA-256");
        assert_eq!(settings["sasl.username"], "kv");
        assert_eq!(settings["sasl.password"], "pa55word");
        assert_eq!(settings["ssl.ca.location"], ca.display().to_string());
        assert_eq!(settings["ssl.endpoint.identification.algorithm"], "none");
        assert!(!settings.contains_key("ssl.certificate.location"));

        kafka.sasl.password = Some(SecretRef::File(dir.join("missing")));
        let err = security_settings(&kafka)
            .expect_err("unreadable")
            .to_string();
        assert!(
            err.contains("kafka.sasl.password") && err.contains("missing"),
            "{err}"
        );

        kafka.sasl.password = Some(SecretRef::File(password));
        kafka.tls.ca_file = Some(dir.join("no-ca.pem"));
        let err = security_settings(&kafka).expect_err("no CA").to_string();
        assert!(
            err.contains("kafka.tls.ca_file") && err.contains("no-ca.pem"),
            "{err}"
        );
    }
}
