//! Every Kafka client of the service, and the only place the service uses rdkafka (the
//! `kvstore bench` tool has its own bare clients in [`crate::bench`]).
//!
//! - [`Kafka`]: the shared clients (the producer, the admin client, the pool of transactional
//!   producers and the stable-end consumer) and how every client is configured.
//! - [`admin`]: topic look-up and creation, and the broker reachability probe.
//! - [`producer`]: writing records, holding a topic's back while five of them are in
//!   flight.
//! - [`replay`]: the per-topic loop that reads a topic from its beginning into its store.
//! - [`replicas`]: the in-sync replicas of the topics written to, from the probe's metadata.
//! - `delivery`: what both producers share: handing a record over, answering its outcome
//!   from the thread that polls the producer, and classifying the failures.
//! - `transactions`: the transactional producers of conditional writes and atomic batches.
//! - `offsets`: a topic's stable end (Kafka's last stable offset), for reads that must see
//!   every acknowledged write.

pub mod admin;
mod delivery;
mod offsets;
pub mod producer;
pub mod replay;
pub mod replicas;
mod transactions;

use std::sync::Arc;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};

use crate::config::{Config, KafkaConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::log::{
    AdminError, BrokerStatus, Delivery, Log, LogFuture, ProduceError, Reachability,
    ReplayNotStarted, Shortfall, TopicLookup, Transaction, Unreachable,
};
use crate::record::Record;
use crate::secret::SecretError;
use crate::topic::ReplaySink;

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

impl Log for Kafka {
    fn status(&self) -> &BrokerStatus {
        &self.inner.status
    }

    /// As the broker probe last saw it (see [`replicas`]).
    fn in_sync_shortfall(&self, topic: &str) -> Option<Shortfall> {
        self.inner.in_sync.shortfall(topic)
    }

    fn send(&self, topic: &str, records: &[Record]) -> (Vec<Delivery>, Option<ProduceError>) {
        let (deliveries, failure) = self.produce(topic, records);
        let deliveries = deliveries
            .into_iter()
            .map(|delivery| Box::pin(delivery) as Delivery)
            .collect();
        (deliveries, failure)
    }

    fn begin(&self, topic: &str) -> LogFuture<'static, Result<Box<dyn Transaction>, ProduceError>> {
        let kafka = self.clone();
        let topic = topic.to_owned();
        Box::pin(async move { kafka.begin_transaction(&topic).await })
    }

    fn stable_end(&self, topic: &str) -> LogFuture<'static, Result<i64, Unreachable>> {
        let kafka = self.clone();
        let topic = topic.to_owned();
        Box::pin(async move { kafka.ask_stable_end(&topic).await })
    }

    fn lookup_topic(&self, topic: &str) -> LogFuture<'static, Result<TopicLookup, AdminError>> {
        let kafka = self.clone();
        let topic = topic.to_owned();
        Box::pin(async move { kafka.look_up(&topic).await })
    }

    fn create_topic(&self, topic: &str) -> LogFuture<'static, Result<(), AdminError>> {
        let kafka = self.clone();
        let topic = topic.to_owned();
        Box::pin(async move { kafka.create(&topic).await })
    }

    fn start_replay(
        &self,
        sink: Arc<dyn ReplaySink>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<(), ReplayNotStarted> {
        self.replay_into(sink, tracker, cancel)
            .map_err(|error| ReplayNotStarted(error.to_string()))
    }
}

/// The Kafka clients could not be created: the librdkafka configuration is invalid.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ClientsNotCreated(#[from] KafkaError);

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
    in_sync: replicas::InSyncReplicas,
    transactions: Arc<transactions::TransactionPool>,
    stable_ends: offsets::StableEnds,
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
    /// Creates the producer, the admin client and the stable-end consumer, and the pool of
    /// transactional producers, whose producers start at [`Kafka::prepare_transactions`] or on
    /// first use. They connect lazily, so this succeeds while the broker is down; it fails
    /// only on invalid client configuration, `consistency.transactional_id` left unset
    /// included ([`crate::app::run`] sets it).
    pub fn new(config: Arc<Config>) -> Result<Kafka, ClientsNotCreated> {
        let status = Arc::new(BrokerStatus::default());
        let producer = producer::create(&config, context(&status, "producer"))?;
        let admin = client_config(&config, [])?.create_with_context(context(&status, "admin"))?;
        let transactions = Arc::new(transactions::TransactionPool::new(
            config.clone(),
            context(&status, "transactions"),
        )?);
        let stable_ends = offsets::StableEnds::new(&config, context(&status, "offsets"))?;
        Ok(Kafka {
            inner: Arc::new(Inner {
                producer: std::sync::RwLock::new(Arc::new(producer)),
                admin,
                status,
                in_sync: replicas::InSyncReplicas::default(),
                transactions,
                stable_ends,
                config,
            }),
        })
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
