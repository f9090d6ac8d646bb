//! The write path: produce the records, then wait until this replica has applied them, so a
//! client that got an answer reads its own write here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::log::{Log, ProduceError};
use crate::metrics;
use crate::record::Record;
use crate::store::WaitError;
use crate::topic::Topic;

/// Why a write did not succeed, and whether it may still take effect.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The broker is unreachable or refused; nothing was written.
    #[error("Kafka broker unavailable; nothing was written: {0}")]
    BrokerUnavailable(String),
    /// The topic's partition has fewer in-sync replicas than its `min.insync.replicas`, so
    /// the brokers refuse every write; nothing was written.
    #[error(
        "topic {topic:?} has {in_sync} in-sync replicas, fewer than its min.insync.replicas \
         ({required}), so the brokers accept no write; nothing was written"
    )]
    NotEnoughReplicas {
        /// The topic.
        topic: String,
        /// Its partition's in-sync replicas at the last probe.
        in_sync: usize,
        /// Its `min.insync.replicas`.
        required: usize,
    },
    /// Too many writes are waiting already; nothing was written.
    #[error("too many writes in progress (limit {limit}); nothing was written, retry shortly")]
    Overloaded {
        /// `limits.max_pending_writes`.
        limit: usize,
    },
    /// The broker refused the record for its size; nothing was written.
    #[error("the broker refused the record as too large; nothing was written: {0}")]
    TooLargeForBroker(String),
    /// The broker did not acknowledge in time: the outcome is unknown.
    #[error(
        "the broker did not acknowledge the write within {waited:?}; it may or may not have \
         been stored, and may still apply: {reason}"
    )]
    ProduceTimeout {
        /// How long the request waited.
        waited: Duration,
        /// The producer's error.
        reason: String,
    },
    /// The write is in Kafka but this replica did not apply it in time.
    #[error(
        "the write was stored in Kafka at offset {offset} but this replica did not apply it \
         within {waited:?}; it may still apply"
    )]
    ApplyTimeout {
        /// The write's offset (the highest, for a batch).
        offset: i64,
        /// How long the request waited.
        waited: Duration,
    },
    /// A batch failed after some of its records were sent; those may apply.
    #[error(
        "the batch failed after {sent} of {total} operations were sent to Kafka; those may \
         apply, the rest were not written: {reason}"
    )]
    BatchIncomplete {
        /// Operations sent before the failure.
        sent: usize,
        /// Operations in the batch.
        total: usize,
        /// What failed.
        reason: String,
    },
    /// The service is stopping.
    #[error("the service is shutting down; the write may still apply")]
    ShuttingDown,
}

/// Produces writes and waits for them to be applied. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    log: Arc<dyn Log>,
    pending: Arc<Semaphore>,
    max_pending: usize,
    timeout: Duration,
}

impl Writer {
    /// A writer to `log` that lets at most `max_pending` records wait at once and
    /// gives up on each write after `timeout`.
    pub fn new(log: Arc<dyn Log>, max_pending: usize, timeout: Duration) -> Self {
        Writer {
            log,
            pending: Arc::new(Semaphore::new(max_pending)),
            max_pending,
            timeout,
        }
    }

    /// Writes `records` to `topic` in order and returns their offsets once this replica has
    /// applied all of them. Not atomic: if it fails part-way, earlier records may be written.
    /// Takes the records by value: once acknowledged they move into the store, which keeps them
    /// until it can apply them.
    pub async fn write(&self, topic: &Topic, records: Vec<Record>) -> Result<Vec<i64>, WriteError> {
        let started = Instant::now();
        let result = self.write_inner(topic, records, started).await;
        let outcome = match &result {
            Ok(_) => "applied",
            Err(WriteError::ApplyTimeout { .. } | WriteError::ProduceTimeout { .. }) => "timeout",
            Err(WriteError::Overloaded { .. }) => "overloaded",
            Err(_) => "failed",
        };
        metrics::write_finished(outcome, result.is_ok().then(|| started.elapsed()));
        result
    }

    async fn write_inner(
        &self,
        topic: &Topic,
        records: Vec<Record>,
        started: Instant,
    ) -> Result<Vec<i64>, WriteError> {
        if self.log.status().is_down() {
            return Err(WriteError::BrokerUnavailable(
                self.log.status().down_reason(),
            ));
        }
        if let Some(shortfall) = self.log.in_sync_shortfall(topic.name()) {
            return Err(WriteError::NotEnoughReplicas {
                topic: topic.name().to_owned(),
                in_sync: shortfall.in_sync,
                required: shortfall.required,
            });
        }
        let wanted = u32::try_from(records.len().min(self.max_pending)).unwrap_or(u32::MAX);
        let _permit =
            self.pending
                .try_acquire_many(wanted)
                .map_err(|_| WriteError::Overloaded {
                    limit: self.max_pending,
                })?;
        let (deliveries, failure) = self.log.send(topic.name(), &records);
        if let Some(error) = failure {
            let sent = deliveries.len();
            // Records queued before the failure are still sent.
            join_all(deliveries).await;
            return Err(self.produce_failed(error, started, sent, records.len()));
        }
        let mut offsets = Vec::with_capacity(records.len());
        let mut failure = None;
        for delivered in join_all(deliveries).await {
            match delivered {
                Ok(offset) => offsets.push(offset),
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        if let Some(error) = failure {
            return Err(self.produce_failed(error, started, offsets.len(), records.len()));
        }
        let Some(&last) = offsets.iter().max() else {
            return Ok(offsets);
        };
        // The broker stored exactly these records at these offsets: apply them now where the
        // replay has caught up to them, instead of waiting for it to fetch them back.
        let applied_here = topic
            .store()
            .apply_own(offsets.iter().copied().zip(records));
        if applied_here > 0 {
            metrics::records_applied(topic.name(), applied_here as u64);
        }
        let remaining = self.timeout.saturating_sub(started.elapsed());
        match topic.store().wait_applied(last, remaining).await {
            Ok(()) => Ok(offsets),
            Err(WaitError::Timeout) => Err(WriteError::ApplyTimeout {
                offset: last,
                waited: started.elapsed(),
            }),
            Err(WaitError::Closed) => Err(WriteError::ShuttingDown),
        }
    }

    fn produce_failed(
        &self,
        error: ProduceError,
        started: Instant,
        sent: usize,
        total: usize,
    ) -> WriteError {
        let error = match error {
            ProduceError::NotWritten(reason) => WriteError::BrokerUnavailable(reason),
            ProduceError::QueueFull => WriteError::Overloaded {
                limit: self.max_pending,
            },
            ProduceError::TooLarge(reason) => WriteError::TooLargeForBroker(reason),
            ProduceError::Unknown(reason) => WriteError::ProduceTimeout {
                waited: started.elapsed(),
                reason,
            },
        };
        if sent == 0 {
            return error;
        }
        WriteError::BatchIncomplete {
            sent,
            total,
            reason: error.to_string(),
        }
    }
}
