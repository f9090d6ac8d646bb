//! Transactions: conditional writes and atomic batches produce their records in a Kafka
//! transaction, which the writer commits once their conditions hold and aborts otherwise.
//!
//! A replica keeps a pool of transactional producers, one open transaction each. Each has a
//! `transactional.id` of its own, `<consistency.transactional_id>-<index>` by its entry's
//! index in the pool (from 0), the same across restarts of the replica: initialising a
//! producer with it fences the previous incarnation and aborts the transaction it left open,
//! instead of leaving it to stall every replica's `read_committed` reads of the topic until
//! `consistency.transaction_timeout`. The pool is initialised at startup for that reason
//! ([`Kafka::prepare_transactions`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::join_all;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::delivery::{self, Poller, ProducerEvents};
use super::{Kafka, KafkaContext, client_config};
use crate::config::Config;
use crate::log::{LogFuture, ProduceError, Transaction};
use crate::metrics;
use crate::record::Record;

/// The transactional producers of this replica, one transaction open on each at most.
pub(super) struct TransactionPool {
    /// The entries whose producer is not in a transaction.
    idle: Mutex<Vec<PoolEntry>>,
    available: Arc<Semaphore>,
    config: Arc<Config>,
    context: KafkaContext,
}

/// One entry of the pool: its `transactional.id` and, once initialised, its producer.
struct PoolEntry {
    transactional_id: String,
    producer: Option<Arc<TransactionalProducer>>,
}

/// A librdkafka producer with a `transactional.id`, and the thread that serves its
/// acknowledgements.
struct TransactionalProducer {
    // Declared before the client: dropping the producer stops the thread first, and the
    // client is then destroyed on the dropping thread, not the polling one.
    _poller: Poller,
    /// Answers each record's delivery to the writer waiting for it, and does nothing more.
    client: Arc<BaseProducer<ProducerEvents<()>>>,
}

/// The settings of a transactional producer.
fn settings(config: &Config, transactional_id: &str) -> Vec<(&'static str, String)> {
    let timeout = config.consistency.transaction_timeout;
    // librdkafka refuses a message timeout longer than the transaction's.
    let message_timeout = config.write_timeout.min(timeout);
    let mut settings = super::producer::settings(config);
    settings.retain(|(key, _)| *key != "message.timeout.ms");
    settings.extend([
        ("transactional.id", transactional_id.to_owned()),
        ("transaction.timeout.ms", timeout.as_millis().to_string()),
        (
            "message.timeout.ms",
            message_timeout.as_millis().to_string(),
        ),
    ]);
    settings
}

impl TransactionalProducer {
    /// Creates the producer and initialises its transactions, which fences any other
    /// producer with the same id and aborts what that one left open. Blocks.
    fn start(
        config: &Config,
        context: KafkaContext,
        transactional_id: &str,
        timeout: Duration,
    ) -> Result<TransactionalProducer, ProduceError> {
        let fail = |error: KafkaError| {
            ProduceError::NotWritten(format!("cannot start a transactional producer: {error}"))
        };
        let client: Arc<BaseProducer<ProducerEvents<()>>> = Arc::new(
            client_config(config, settings(config, transactional_id))
                .and_then(|client| client.create_with_context(ProducerEvents::new(context, ())))
                .map_err(fail)?,
        );
        let poller = Poller::start(client.clone(), "kvstore-txn").map_err(fail)?;
        let producer = TransactionalProducer {
            _poller: poller,
            client,
        };
        producer.client.init_transactions(timeout).map_err(fail)?;
        tracing::debug!(transactional_id, "transactional producer ready");
        Ok(producer)
    }
}

impl TransactionPool {
    /// A pool of `consistency.transactions` entries, none started yet. Fails if
    /// `consistency.transactional_id` is not set: the service sets it, from the port it
    /// listens on if the configuration names none, before it creates the clients.
    pub(super) fn new(config: Arc<Config>, context: KafkaContext) -> KafkaResult<TransactionPool> {
        let Some(prefix) = &config.consistency.transactional_id else {
            return Err(KafkaError::ClientCreation(
                "consistency.transactional_id is not set".into(),
            ));
        };
        let entries = (0..config.consistency.transactions)
            .map(|index| PoolEntry {
                transactional_id: format!("{prefix}-{index}"),
                producer: None,
            })
            .collect::<Vec<_>>();
        Ok(TransactionPool {
            available: Arc::new(Semaphore::new(entries.len())),
            idle: Mutex::new(entries),
            config,
            context,
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<PoolEntry>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes an idle entry, waiting up to `timeout` for one.
    async fn take(self: &Arc<Self>, timeout: Duration) -> Result<Taken, ProduceError> {
        let permit = tokio::time::timeout(timeout, self.available.clone().acquire_owned())
            .await
            .map_err(|_| ProduceError::NoTransactionFree {
                limit: self.config.consistency.transactions,
            })?
            .map_err(|_| ProduceError::NotWritten("the service is stopping".into()))?;
        let entry = self
            .idle()
            .pop()
            .ok_or_else(|| ProduceError::NotWritten("no transactional producer free".into()))?;
        Ok(Taken {
            entry: Some(entry),
            _permit: permit,
            pool: self.clone(),
        })
    }

    /// Initialises every entry's producer, so that transactions this replica left open before
    /// a restart are aborted now. An entry that fails is initialised again on first use.
    pub(super) async fn prepare(self: &Arc<Self>) {
        let timeout = self.config.kafka.admin_timeout.max(Duration::from_secs(10));
        let mut taken = Vec::new();
        for _ in 0..self.config.consistency.transactions {
            match self.take(timeout).await {
                Ok(entry) => taken.push(entry),
                Err(_) => break,
            }
        }
        let started = join_all(taken.into_iter().map(|mut entry| async move {
            let outcome = entry.producer(timeout).await.map(|_| ());
            (entry.transactional_id().to_owned(), outcome)
        }))
        .await;
        for (transactional_id, outcome) in started {
            if let Err(error) = outcome {
                tracing::warn!(transactional_id, %error, "transactional producer not ready yet; retrying on first use");
            }
        }
    }
}

/// An entry taken from the pool; it goes back when this is dropped.
struct Taken {
    entry: Option<PoolEntry>,
    _permit: OwnedSemaphorePermit,
    pool: Arc<TransactionPool>,
}

impl Taken {
    fn entry(&mut self) -> &mut PoolEntry {
        self.entry
            .as_mut()
            .expect("a taken entry is held until dropped")
    }

    fn transactional_id(&self) -> &str {
        &self
            .entry
            .as_ref()
            .expect("a taken entry is held until dropped")
            .transactional_id
    }

    /// The entry's producer, started first if it has none.
    async fn producer(
        &mut self,
        timeout: Duration,
    ) -> Result<Arc<TransactionalProducer>, ProduceError> {
        if let Some(producer) = &self.entry().producer {
            return Ok(producer.clone());
        }
        let config = self.pool.config.clone();
        let context = self.pool.context.clone();
        let transactional_id = self.transactional_id().to_owned();
        let producer = tokio::task::spawn_blocking(move || {
            TransactionalProducer::start(&config, context, &transactional_id, timeout)
        })
        .await
        .map_err(|error| ProduceError::NotWritten(format!("producer start aborted: {error}")))??;
        let producer = Arc::new(producer);
        self.entry().producer = Some(producer.clone());
        Ok(producer)
    }

    /// Drops the entry's producer after an error it cannot recover from; the next transaction
    /// on the entry starts a new one.
    fn discard_producer(&mut self, error: &KafkaError) {
        let fenced = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
        );
        let transactional_id = self.transactional_id().to_owned();
        if fenced {
            tracing::error!(
                transactional_id,
                "another producer uses this transactional id and fenced this one: give every \
                 replica its own consistency.transactional_id"
            );
        } else {
            tracing::warn!(transactional_id, %error, "transactional producer failed; starting a new one");
        }
        if let Some(producer) = self.entry().producer.take() {
            // Joining its thread waits on librdkafka: keep that off the async workers.
            tokio::task::spawn_blocking(move || drop(producer));
        }
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.pool.idle().push(entry);
        }
    }
}

/// An open transaction on one topic's partition 0.
struct KafkaTransaction {
    topic: String,
    taken: Option<Taken>,
    producer: Arc<TransactionalProducer>,
    /// When the transaction must have ended, by `write_timeout`.
    deadline: Instant,
}

impl Kafka {
    /// Starts a transaction on `topic`, waiting for a free producer up to `write_timeout`.
    pub async fn begin_transaction(
        &self,
        topic: &str,
    ) -> Result<Box<dyn Transaction>, ProduceError> {
        let deadline = Instant::now() + self.config().write_timeout;
        let mut taken = self
            .inner
            .transactions
            .take(self.config().write_timeout)
            .await?;
        let producer = taken.producer(remaining(deadline)).await?;
        if let Err(error) = producer.client.begin_transaction() {
            taken.discard_producer(&error);
            return Err(ProduceError::NotWritten(format!(
                "cannot begin a transaction: {error}"
            )));
        }
        Ok(Box::new(KafkaTransaction {
            topic: topic.to_owned(),
            taken: Some(taken),
            producer,
            deadline,
        }))
    }

    /// Initialises the transactional producers; see `TransactionPool::prepare`.
    pub async fn prepare_transactions(&self) {
        self.inner.transactions.prepare().await;
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

impl Transaction for KafkaTransaction {
    fn send(&mut self, records: &[Record]) -> LogFuture<'_, Result<Vec<i64>, ProduceError>> {
        let mut outcomes = Vec::with_capacity(records.len());
        let mut failure = None;
        for record in records {
            let (reply, outcome) = oneshot::channel();
            if let Err((error, _)) =
                delivery::send(&self.producer.client, &self.topic, record, reply)
            {
                failure = Some(error);
                break;
            }
            outcomes.push(outcome);
        }
        let deadline = self.deadline;
        Box::pin(async move {
            if let Some(error) = failure {
                return Err(error);
            }
            let delivered = tokio::time::timeout(remaining(deadline), join_all(outcomes))
                .await
                .map_err(|_| {
                    ProduceError::Unknown("no acknowledgement before the write timed out".into())
                })?;
            delivered
                .into_iter()
                .map(|outcome| {
                    outcome.unwrap_or_else(|_| {
                        Err(ProduceError::Unknown(
                            "the producer stopped before the broker answered".into(),
                        ))
                    })
                })
                .collect()
        })
    }

    fn commit(mut self: Box<Self>) -> LogFuture<'static, Result<(), ProduceError>> {
        let mut taken = self.taken.take();
        let producer = self.producer.clone();
        let deadline = self.deadline;
        Box::pin(async move {
            let outcome = tokio::task::spawn_blocking(move || commit(&producer, deadline))
                .await
                .unwrap_or_else(|error| {
                    Err((
                        ProduceError::Unknown(format!("commit aborted: {error}")),
                        None,
                    ))
                });
            let result = match outcome {
                Ok(()) => Ok(()),
                Err((error, broken)) => {
                    if let (Some(taken), Some(broken)) = (taken.as_mut(), broken) {
                        taken.discard_producer(&broken);
                    }
                    Err(error)
                }
            };
            metrics::transaction_ended(if result.is_ok() {
                "committed"
            } else {
                "failed"
            });
            drop(taken);
            result
        })
    }

    fn abort(mut self: Box<Self>) -> LogFuture<'static, ()> {
        let taken = self.taken.take();
        let producer = self.producer.clone();
        let deadline = self.deadline;
        Box::pin(async move {
            let _ = tokio::task::spawn_blocking(move || abort(taken, &producer, deadline)).await;
        })
    }
}

impl Drop for KafkaTransaction {
    /// A transaction neither committed nor aborted (its request was dropped, say) is aborted
    /// in the background; its entry is free once that is done.
    fn drop(&mut self) {
        if let Some(taken) = self.taken.take() {
            let producer = self.producer.clone();
            let deadline = self.deadline;
            tokio::task::spawn_blocking(move || abort(Some(taken), &producer, deadline));
        }
    }
}

/// Commits, retrying what librdkafka says may be retried until `deadline`. On failure, the
/// error for the writer and, if the producer cannot go on, librdkafka's error.
fn commit(
    producer: &TransactionalProducer,
    deadline: Instant,
) -> Result<(), (ProduceError, Option<KafkaError>)> {
    loop {
        let error = match producer.client.commit_transaction(remaining(deadline)) {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let KafkaError::Transaction(details) = &error else {
            // The flush before the commit failed: some record was not acknowledged.
            return Err((ProduceError::Unknown(error.to_string()), Some(error)));
        };
        if details.txn_requires_abort() {
            // The broker or librdkafka aborted it (an unacknowledged record, a transaction
            // timed out): nothing of it becomes visible.
            let _ = producer.client.abort_transaction(remaining(deadline));
            return Err((ProduceError::NotWritten(error.to_string()), None));
        }
        if details.is_fatal() {
            // Fenced by a producer with the same id, which aborts this transaction; any other
            // fatal error leaves the outcome to whoever initialises the id next.
            let fenced = details.code() == RDKafkaErrorCode::ProducerFenced;
            let outcome = if fenced {
                ProduceError::NotWritten(error.to_string())
            } else {
                ProduceError::Unknown(error.to_string())
            };
            return Err((outcome, Some(error)));
        }
        if details.is_retriable() && Instant::now() < deadline {
            continue;
        }
        // Timed out: the commit may still complete. The producer cannot start another
        // transaction until this one is resolved, so it is replaced; initialising the next
        // one with the same id completes or aborts this transaction.
        return Err((ProduceError::Unknown(error.to_string()), Some(error)));
    }
}

/// Aborts, then gives the entry back (or replaces its producer if the abort failed).
fn abort(mut taken: Option<Taken>, producer: &TransactionalProducer, deadline: Instant) {
    // At least a moment, even past the request's deadline: an abort that reaches the broker
    // frees every replica's reads at once instead of at the transaction's timeout.
    let timeout = remaining(deadline).max(Duration::from_secs(1));
    let result: KafkaResult<()> = producer.client.abort_transaction(timeout);
    metrics::transaction_ended("aborted");
    if let (Err(error), Some(taken)) = (result, taken.as_mut()) {
        taken.discard_producer(&error);
    }
}
