//! The write path: produce the records, then wait until this replica has applied them, so a
//! client that got an answer reads its own write here.
//!
//! A conditional write or an atomic batch ([`Writer::write_if`]) produces its records in a
//! transaction and judges its conditions before the transaction ends: once this replica has
//! applied everything below the transaction's first offset, the keys' versions there are
//! their latest in log order, the same on every replica; the transaction commits if every
//! condition holds and aborts otherwise. The log so holds only writes that were accepted, and
//! replay and compaction never judge anything (docs/consistency.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::condition::{Precondition, Unmet, unmet};
use crate::log::{Log, ProduceError};
use crate::metrics;
use crate::record::{Record, mark_batch};
use crate::store::NotAppliedInTime;
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
    /// The producer could not take the write (its queue full, or every transaction busy);
    /// nothing was written.
    #[error("the producer is busy: {0}; nothing was written, retry shortly")]
    ProducerBusy(String),
    /// The broker refused the record for its size; nothing was written.
    #[error("the broker refused the record as too large; nothing was written: {0}")]
    TooLargeForBroker(String),
    /// The broker did not confirm the write in time, or its commit failed on the way: the
    /// outcome is unknown.
    #[error(
        "the broker did not confirm the write within {waited:?}; it may or may not have been \
         stored, and may still apply: {reason}"
    )]
    OutcomeUnknown {
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
    /// A condition did not hold; nothing was written.
    #[error("{} of the write's conditions did not hold; nothing was written", unmet.len())]
    PreconditionFailed {
        /// The conditions that did not hold, with their keys' versions.
        unmet: Vec<Unmet>,
    },
    /// This replica did not catch up with the log in time to judge the write's conditions.
    #[error(
        "this replica did not apply the topic up to the write's position within {waited:?}, \
         so its conditions could not be judged; nothing was written"
    )]
    NotJudged {
        /// How long the request waited.
        waited: Duration,
    },
    /// Other producers' records kept landing between the batch's records.
    #[error(
        "other writes landed between the atomic batch's records in each of {attempts} \
         attempts; nothing was written, retry"
    )]
    Interleaved {
        /// Transactions tried.
        attempts: usize,
    },
}

/// Transactions an atomic batch tries before giving up because other producers' records
/// landed between its records.
const CONTIGUOUS_ATTEMPTS: usize = 3;

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
        finished(&result, started);
        result
    }

    /// Refuses at once what cannot succeed: the broker down, too few in-sync replicas, too
    /// many writes waiting. Otherwise holds `count` places among the pending writes.
    fn admit(
        &self,
        topic: &Topic,
        count: usize,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, WriteError> {
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
        let wanted = u32::try_from(count.min(self.max_pending)).unwrap_or(u32::MAX);
        self.pending
            .try_acquire_many(wanted)
            .map_err(|_| WriteError::Overloaded {
                limit: self.max_pending,
            })
    }

    async fn write_inner(
        &self,
        topic: &Topic,
        records: Vec<Record>,
        started: Instant,
    ) -> Result<Vec<i64>, WriteError> {
        let _permit = self.admit(topic, records.len())?;
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
        self.apply_and_wait(topic, offsets, records, started).await
    }

    /// Applies this replica's own records, which the log holds at `offsets`, where the
    /// replay has caught up to them (instead of waiting for it to fetch them back), then waits
    /// until the last is applied.
    async fn apply_and_wait(
        &self,
        topic: &Topic,
        offsets: Vec<i64>,
        records: Vec<Record>,
        started: Instant,
    ) -> Result<Vec<i64>, WriteError> {
        let applied_here = topic
            .store()
            .apply_own(offsets.iter().copied().zip(records));
        if applied_here > 0 {
            metrics::records_applied(topic.name(), applied_here as u64);
        }
        self.wait_for(topic, offsets, started).await
    }

    /// Waits until this replica has applied the last of `offsets`.
    async fn wait_for(
        &self,
        topic: &Topic,
        offsets: Vec<i64>,
        started: Instant,
    ) -> Result<Vec<i64>, WriteError> {
        let Some(&last) = offsets.iter().max() else {
            return Ok(offsets);
        };
        let remaining = self.timeout.saturating_sub(started.elapsed());
        match topic.store().wait_applied(last, remaining).await {
            Ok(()) => Ok(offsets),
            Err(NotAppliedInTime) => Err(WriteError::ApplyTimeout {
                offset: last,
                waited: started.elapsed(),
            }),
        }
    }

    /// Writes `records` to `topic` all together or not at all, and only if every one of
    /// `preconditions` holds at the records' place in the log; returns their offsets once this
    /// replica has applied them. Several records form an atomic batch: no reader on any
    /// replica sees some of them without the others.
    ///
    /// The records go into a transaction, whose first offset fixes their place in the log.
    /// Once this replica has applied everything below it (the broker's last stable offset has
    /// reached it: earlier transactions have ended), the versions read here are the keys'
    /// latest in log order, and nothing else can come before the records. A batch whose
    /// records another producer's record came between is tried again in a new transaction.
    pub async fn write_if(
        &self,
        topic: &Topic,
        mut records: Vec<Record>,
        preconditions: Vec<Precondition>,
    ) -> Result<Vec<i64>, WriteError> {
        let started = Instant::now();
        topic.follow_closely();
        if records.len() > 1 {
            mark_batch(&mut records, batch_id());
        }
        let result = self
            .write_if_inner(topic, records, &preconditions, started)
            .await;
        finished(&result, started);
        result
    }

    async fn write_if_inner(
        &self,
        topic: &Topic,
        records: Vec<Record>,
        preconditions: &[Precondition],
        started: Instant,
    ) -> Result<Vec<i64>, WriteError> {
        let _permit = self.admit(topic, records.len())?;
        for _ in 0..CONTIGUOUS_ATTEMPTS {
            let mut transaction = self
                .log
                .begin(topic.name())
                .await
                .map_err(|error| self.not_written(error, started))?;
            let offsets = match transaction.send(&records).await {
                Ok(offsets) => offsets,
                Err(error) => {
                    transaction.abort().await;
                    return Err(self.not_written(error, started));
                }
            };
            let Some(first) = offsets.first().copied() else {
                transaction.abort().await;
                return Ok(offsets);
            };
            let contiguous = offsets
                .iter()
                .zip(first..)
                .all(|(&offset, at)| offset == at);
            if !contiguous {
                transaction.abort().await;
                continue;
            }
            if let Err(error) = self.judge(topic, first, preconditions, started).await {
                transaction.abort().await;
                return Err(error);
            }
            let judged = started.elapsed();
            if let Err(error) = transaction.commit().await {
                return Err(self.produce_error(error, started));
            }
            tracing::debug!(
                topic = topic.name(),
                first,
                ?judged,
                committed = ?started.elapsed(),
                "transaction committed"
            );
            // Not applied ahead of the replay, unlike plain writes: the commit returns once
            // the coordinator has decided, before the commit marker is in the partition, and
            // until then readers elsewhere (a strong read asking the broker for the last
            // stable offset) would not see the records yet. The replay applies them once the
            // marker is there, so the answer below implies every reader can see them.
            drop(records);
            return self.wait_for(topic, offsets, started).await;
        }
        Err(WriteError::Interleaved {
            attempts: CONTIGUOUS_ATTEMPTS,
        })
    }

    /// Waits until this replica has applied everything below `first`, the transaction's
    /// first offset, then judges `preconditions` against the keys' versions there.
    async fn judge(
        &self,
        topic: &Topic,
        first: i64,
        preconditions: &[Precondition],
        started: Instant,
    ) -> Result<(), WriteError> {
        if preconditions.is_empty() {
            return Ok(());
        }
        let remaining = self.timeout.saturating_sub(started.elapsed());
        if let Err(NotAppliedInTime) = topic.store().wait_applied(first - 1, remaining).await {
            return Err(WriteError::NotJudged {
                waited: started.elapsed(),
            });
        }
        // Fault injection for tests: stay inside the transaction (`FAILPOINTS=judge=sleep(N)`).
        #[cfg(feature = "failpoints")]
        fail::fail_point!("judge", |_| Ok(()));
        let keys = preconditions.iter().map(|p| p.key.as_slice());
        let (applied, versions) = topic.store().versions(keys);
        if applied != first {
            // The records are invisible until the commit, so nothing at or past `first` can
            // have been applied: if it was, this replica does not read the log as it must.
            tracing::error!(
                topic = topic.name(),
                applied,
                first,
                "applied past an open transaction; refusing to judge"
            );
            return Err(WriteError::NotJudged {
                waited: started.elapsed(),
            });
        }
        let unmet = unmet(preconditions, &versions);
        if unmet.is_empty() {
            Ok(())
        } else {
            Err(WriteError::PreconditionFailed { unmet })
        }
    }

    /// A failure before the transaction committed: it is aborted (or the broker aborts it
    /// when it times out), so nothing was written, whatever the log could tell.
    fn not_written(&self, error: ProduceError, started: Instant) -> WriteError {
        match error {
            ProduceError::Unknown(reason) => WriteError::BrokerUnavailable(reason),
            error => self.produce_error(error, started),
        }
    }

    /// What a failure of the log means for the write.
    fn produce_error(&self, error: ProduceError, started: Instant) -> WriteError {
        match error {
            ProduceError::NotWritten(reason) => WriteError::BrokerUnavailable(reason),
            error @ (ProduceError::QueueFull | ProduceError::NoTransactionFree { .. }) => {
                WriteError::ProducerBusy(error.to_string())
            }
            ProduceError::TooLarge(reason) => WriteError::TooLargeForBroker(reason),
            ProduceError::Unknown(reason) => WriteError::OutcomeUnknown {
                waited: started.elapsed(),
                reason,
            },
        }
    }

    /// A plain write's failure after `sent` of its `total` records were handed over.
    fn produce_failed(
        &self,
        error: ProduceError,
        started: Instant,
        sent: usize,
        total: usize,
    ) -> WriteError {
        let error = self.produce_error(error, started);
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

/// Counts a write's outcome, and how long it took if it was applied.
fn finished(result: &Result<Vec<i64>, WriteError>, started: Instant) {
    let outcome = match result {
        Ok(_) => "applied",
        Err(WriteError::PreconditionFailed { .. }) => {
            metrics::precondition_failed();
            "precondition_failed"
        }
        Err(WriteError::ApplyTimeout { .. } | WriteError::OutcomeUnknown { .. }) => "timeout",
        Err(WriteError::Overloaded { .. } | WriteError::ProducerBusy(_)) => "overloaded",
        Err(_) => "failed",
    };
    metrics::write_finished(outcome, result.is_ok().then(|| started.elapsed()));
}

/// A random id for an atomic batch's mark.
fn batch_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Each RandomState is seeded afresh by the standard library; the counter keeps ids of
    // batches built in the same instant apart.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}
