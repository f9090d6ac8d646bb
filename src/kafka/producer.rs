//! Writing records: one idempotent producer shared by every topic, and what its failures mean
//! for the client.

use std::future::Future;

use std::sync::{Arc, PoisonError};

use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};

use super::{CONTENT_TYPE_HEADER, Kafka, KafkaContext, client_config};
use crate::config::Config;

/// Room for a record's framing and headers on top of its key and value, used when sizing the
/// producer's and created topics' byte limits.
pub const RECORD_OVERHEAD: usize = 64 * 1024;

/// One record to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    /// The key.
    pub key: Vec<u8>,
    /// The value; `None` writes a tombstone.
    pub value: Option<Vec<u8>>,
    /// The value's content type, written as the `content-type` header.
    pub content_type: Option<String>,
}

/// Why a record was not written, or whether that is known.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    /// The broker refused or could not be reached; the record was not written.
    #[error("{0}")]
    NotWritten(String),
    /// The producer's queue is full; the record was not written.
    #[error("the producer queue is full")]
    QueueFull,
    /// The broker refused the record for its size; it was not written.
    #[error("{0}")]
    TooLarge(String),
    /// No acknowledgement came in time; the record may or may not have been written.
    #[error("{0}")]
    Unknown(String),
}

/// The producer settings: idempotent with `acks=all`, so an acknowledged write is on every
/// in-sync replica exactly once and in order.
pub fn settings(config: &Config) -> Vec<(&'static str, String)> {
    let max_record = config.limits.max_value_bytes + config.limits.max_key_bytes + RECORD_OVERHEAD;
    vec![
        ("enable.idempotence", "true".into()),
        ("acks", "all".into()),
        // Send at once: a single write should not wait for company. Under load, records
        // queued while a request is in flight still go out together.
        ("linger.ms", "0".into()),
        // Give up on a record when its request has no more time to wait for it.
        (
            "message.timeout.ms",
            config.write_timeout.as_millis().to_string(),
        ),
        ("message.max.bytes", max_record.to_string()),
    ]
}

/// A producer with [`settings`].
pub(super) fn create(
    config: &Config,
    context: KafkaContext,
) -> KafkaResult<FutureProducer<KafkaContext>> {
    client_config(config, settings(config))?.create_with_context(context)
}

impl Kafka {
    fn producer(&self) -> Arc<FutureProducer<KafkaContext>> {
        self.inner
            .producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the producer with a fresh one and fails everything the old one still holds:
    /// records not yet sent (not written: 503) and records sent but not acknowledged (outcome
    /// unknown: 504). Called when the broker is found down, so that writes in flight fail
    /// promptly instead of waiting out `write_timeout`, and so that the old producer does not
    /// resend its unacknowledged batches to a restarted broker: some Kafka-compatible brokers
    /// (Tansu 0.6 with SQLite storage) fail on such resends of an idempotent producer.
    pub fn reset_producer(&self) {
        let fresh = match create(self.config(), self.context("producer")) {
            Ok(producer) => Arc::new(producer),
            Err(error) => {
                tracing::error!(%error, "could not create a new producer; keeping the old one");
                return;
            }
        };
        let old = std::mem::replace(
            &mut *self
                .inner
                .producer
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        tracing::info!("broker down: failing the writes in flight and starting a new producer");
        // Purging and dropping wait on librdkafka's threads: keep that off the async workers.
        tokio::task::spawn_blocking(move || {
            old.purge(PurgeConfig::default().queue().inflight());
            drop(old);
        });
    }

    /// Queues `record` for `topic`'s partition 0. Records queued one after another are written
    /// in that order. The returned future resolves to the record's offset.
    pub fn send(
        &self,
        topic: &str,
        record: &OutgoingRecord,
    ) -> Result<impl Future<Output = Result<i64, ProduceError>> + use<>, ProduceError> {
        let headers = record.content_type.as_deref().map(|content_type| {
            OwnedHeaders::new().insert(Header {
                key: CONTENT_TYPE_HEADER,
                value: Some(content_type),
            })
        });
        let mut future_record = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(0)
            .key(record.key.as_slice());
        if let Some(value) = &record.value {
            future_record = future_record.payload(value.as_slice());
        }
        if let Some(headers) = headers {
            future_record = future_record.headers(headers);
        }
        let delivery = self
            .producer()
            .send_result(future_record)
            .map_err(|(error, _)| classify(&error))?;
        Ok(async move {
            match delivery.await {
                Ok(Ok(delivered)) => Ok(delivered.offset),
                Ok(Err((error, _))) => Err(classify(&error)),
                Err(_canceled) => Err(ProduceError::Unknown(
                    "the producer shut down before the broker answered".into(),
                )),
            }
        })
    }

    /// Waits up to `timeout` for queued records to be sent, at shutdown.
    pub fn flush(&self, timeout: std::time::Duration) {
        if let Err(error) = self.producer().flush(timeout) {
            tracing::warn!(%error, "producer flush did not complete");
        }
    }
}

fn classify(error: &KafkaError) -> ProduceError {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => ProduceError::QueueFull,
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge,
        ) => ProduceError::TooLarge(error.to_string()),
        // Purged before it was sent: not written.
        Some(RDKafkaErrorCode::PurgeQueue) => {
            ProduceError::NotWritten("the broker went down before the write was sent".into())
        }
        // The broker may have written the record and its answer was lost.
        Some(
            RDKafkaErrorCode::PurgeInflight
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut,
        ) => ProduceError::Unknown(error.to_string()),
        // The idempotent producer retries everything retriable until the message times out,
        // so any other error is one the broker answered with: nothing was written.
        _ => ProduceError::NotWritten(error.to_string()),
    }
}
