//! Topic look-up and creation, and the probe that tells whether the broker answers.

use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use tokio_util::sync::CancellationToken;

use super::producer::max_record_bytes;
use super::{Kafka, Reachability};
use crate::config::Config;
use crate::log::{AdminError, TopicLookup};

/// The settings of a topic kvstore creates: compacted, so that the log keeps each key's
/// latest record, and with room for the largest record this service writes.
pub fn topic_settings(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("cleanup.policy", "compact".into()),
        // Let the largest record through the broker's per-topic limit (Kafka's default is
        // 1 MiB, less than `limits.max_value_bytes` plus a key).
        ("max.message.bytes", max_record_bytes(config).to_string()),
    ]
}

/// The topic `topic` as kvstore creates it: one partition, `topics.replication_factor`
/// replicas, and `settings` (from [`topic_settings`]).
pub fn new_topic<'a>(
    topic: &'a str,
    config: &Config,
    settings: &'a [(&'static str, String)],
) -> NewTopic<'a> {
    settings.iter().fold(
        NewTopic::new(
            topic,
            1,
            TopicReplication::Fixed(config.topics.replication_factor),
        ),
        |new_topic, (key, value)| new_topic.set(key, value),
    )
}

impl Kafka {
    /// Looks `topic` up in the broker's metadata without creating it.
    pub(super) async fn look_up(&self, topic: &str) -> Result<TopicLookup, AdminError> {
        let kafka = self.clone();
        let topic = topic.to_owned();
        let timeout = self.config().kafka.admin_timeout;
        // librdkafka's metadata call blocks its thread until the broker answers.
        tokio::task::spawn_blocking(move || kafka.lookup_topic_blocking(&topic, timeout))
            .await
            .map_err(|e| AdminError::Unavailable(format!("metadata look-up aborted: {e}")))?
    }

    fn lookup_topic_blocking(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<TopicLookup, AdminError> {
        let metadata = self
            .inner
            .admin
            .inner()
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| self.unavailable(e))?;
        // The broker answered, so it is up; finding it down is left to the probe. Said here
        // when this is how the replica learns it is back, as the probe would have.
        if self.inner.status.set(Reachability::Up) == Reachability::Down {
            tracing::info!(brokers = %self.config().brokers, "Kafka broker reachable");
        }
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(TopicLookup::Missing);
        };
        match found.error() {
            None => Ok(TopicLookup::Exists {
                partitions: found.partitions().len(),
            }),
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
                Ok(TopicLookup::Missing)
            }
            Some(other) => Err(AdminError::Refused(format!(
                "metadata for topic {topic:?}: {}",
                RDKafkaErrorCode::from(other)
            ))),
        }
    }

    /// Creates `topic` as [`topic_settings`] says, with one partition and
    /// `topics.replication_factor` replicas. A topic that already exists (another replica may
    /// have won the race) is not an error.
    pub(super) async fn create(&self, topic: &str) -> Result<(), AdminError> {
        let config = self.config();
        let settings = topic_settings(config);
        let new_topic = new_topic(topic, config, &settings);
        let options = AdminOptions::new().operation_timeout(Some(config.kafka.admin_timeout));
        let results = tokio::time::timeout(
            config.kafka.admin_timeout,
            self.inner.admin.create_topics([&new_topic], &options),
        )
        .await
        .map_err(|_| AdminError::Unavailable("topic creation timed out".into()))?
        .map_err(|e| self.unavailable(e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(AdminError::Refused(format!(
                        "creating topic {name:?}: {code}"
                    )));
                }
            }
        }
        tracing::info!(topic, "created topic");
        Ok(())
    }

    /// Checks every `kafka.health_interval` whether the broker answers, until `cancel`.
    pub async fn probe_broker(&self, cancel: CancellationToken) {
        let interval = self.config().kafka.health_interval;
        loop {
            let kafka = self.clone();
            let timeout = interval.clamp(Duration::from_secs(1), self.config().kafka.admin_timeout);
            let check = tokio::task::spawn_blocking(move || {
                // A metadata request for no particular topic lists the brokers.
                kafka.inner.admin.inner().fetch_metadata(None, timeout)
            });
            let reachable = tokio::select! {
                // Do not hold shutdown up for a check in progress.
                () = cancel.cancelled() => return,
                reachable = check => reachable,
            };
            let now = match reachable {
                Ok(Ok(metadata)) => {
                    self.inner.in_sync.update(&metadata);
                    Reachability::Up
                }
                _ => Reachability::Down,
            };
            if now == Reachability::Up {
                self.look_up_min_in_sync().await;
            }
            let before = self.inner.status.set(now);
            match (before, now) {
                (Reachability::Up, Reachability::Up) | (Reachability::Down, Reachability::Down) => {
                }
                (_, Reachability::Up) => {
                    tracing::info!(brokers = %self.config().brokers, "Kafka broker reachable")
                }
                (_, _) => {
                    let cause = self.inner.status.recent_error();
                    tracing::warn!(brokers = %self.config().brokers, cause, "Kafka broker unreachable");
                    self.reset_producer();
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
                () = self.inner.status.check_requested() => {}
            }
        }
    }

    /// Looks up `min.insync.replicas` of the written topics that lack it (the topic's own
    /// setting, else the broker's default, as DescribeConfigs reports it).
    async fn look_up_min_in_sync(&self) {
        let topics = self.inner.in_sync.unknown_requirements();
        if topics.is_empty() {
            return;
        }
        let specifiers: Vec<ResourceSpecifier<'_>> = topics
            .iter()
            .map(|topic| ResourceSpecifier::Topic(topic))
            .collect();
        let timeout = self.config().kafka.admin_timeout;
        let options = AdminOptions::new().request_timeout(Some(timeout));
        let described = tokio::time::timeout(
            timeout,
            self.inner.admin.describe_configs(&specifiers, &options),
        )
        .await;
        // A failure is tried again at the next probe.
        let Ok(Ok(results)) = described else {
            return;
        };
        for (topic, result) in topics.iter().zip(results) {
            let required = result
                .ok()
                .and_then(|resource| resource.get("min.insync.replicas")?.value.clone())
                .and_then(|value| value.parse().ok());
            if let Some(required) = required {
                self.inner.in_sync.set_required(topic, required);
            }
        }
    }

    fn unavailable(&self, error: KafkaError) -> AdminError {
        let transport = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::RequestTimedOut
                    | RDKafkaErrorCode::NetworkException
            )
        );
        if transport {
            self.inner.status.request_check();
        }
        AdminError::Unavailable(error.to_string())
    }
}
