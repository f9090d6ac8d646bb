//! The log as the rest of the service sees it: a place to produce records, topics to look
//! up, create and replay, and what is known of the brokers. [`crate::kafka::Kafka`] is the
//! implementation; nothing here knows rdkafka.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::record::Record;
use crate::topic::ReplaySink;

/// The acknowledgement of one record: its offset, or why it was not (or may not have been)
/// written.
pub type Delivery = Pin<Box<dyn Future<Output = Result<i64, ProduceError>> + Send>>;

/// A future the log hands back.
pub type LogFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The log: where writes go, and where each topic's records come from.
pub trait Log: Send + Sync {
    /// What is known of the brokers' reachability.
    fn status(&self) -> &BrokerStatus;

    /// Whether `topic`'s partition had fewer in-sync replicas than its
    /// `min.insync.replicas` at the last look, so that the brokers refuse every write.
    fn in_sync_shortfall(&self, topic: &str) -> Option<Shortfall>;

    /// Hands `records` to the log, in order, all of them or none past the first that could
    /// not be handed over: a delivery per record handed over, and the error that stopped the
    /// rest, if any.
    fn send(&self, topic: &str, records: &[Record]) -> (Vec<Delivery>, Option<ProduceError>);

    /// Starts a transaction on `topic`'s partition: the records sent through it take offsets
    /// at once but stay invisible to every reader (replicas read `read_committed`) until it
    /// commits, and vanish if it aborts.
    fn begin(&self, topic: &str) -> LogFuture<'static, Result<Box<dyn Transaction>, ProduceError>>;

    /// `topic`'s last stable offset, asked of the broker now: every record below it is
    /// settled (committed, aborted or not transactional), and every write acknowledged before
    /// the question was asked lies below it.
    fn stable_end(&self, topic: &str) -> LogFuture<'static, Result<i64, Unreachable>>;

    /// Looks `topic` up without creating it.
    fn lookup_topic(&self, topic: &str) -> LogFuture<'static, Result<TopicLookup, AdminError>>;

    /// Creates `topic` as kvstore makes its topics: one partition, compacted.
    fn create_topic(&self, topic: &str) -> LogFuture<'static, Result<(), AdminError>>;

    /// Starts reading the topic of `sink` from its beginning into it, in offset order, on a
    /// task of `tracker`, until `cancel`; the sink hears of its progress and of errors.
    fn start_replay(
        &self,
        sink: Arc<dyn ReplaySink>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<(), ReplayNotStarted>;
}

/// What the log says about a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicLookup {
    /// The topic does not exist.
    Missing,
    /// The topic exists with this many partitions.
    Exists {
        /// Its partition count.
        partitions: usize,
    },
}

/// Why looking up or creating a topic failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdminError {
    /// The broker could not be reached or did not answer in time.
    #[error("Kafka broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the request.
    #[error("Kafka refused the request: {0}")]
    Refused(String),
}

/// A replay could not be started (its consumer could not be made).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ReplayNotStarted(pub String);

/// One open transaction on one partition; see [`Log::begin`]. Dropped unfinished, it is
/// aborted.
pub trait Transaction: Send {
    /// Sends `records` in order and waits until the broker holds them: their offsets, or why
    /// not. They are not visible to anyone yet.
    fn send(&mut self, records: &[Record]) -> LogFuture<'_, Result<Vec<i64>, ProduceError>>;

    /// Makes the records sent visible, all of them. `NotWritten` if the transaction was
    /// aborted instead (by the broker, or for an error); `Unknown` if the outcome is not
    /// known.
    fn commit(self: Box<Self>) -> LogFuture<'static, Result<(), ProduceError>>;

    /// Discards the records sent. Best effort: a transaction whose abort does not reach the
    /// broker is aborted by the broker when it times out, and never becomes visible.
    fn abort(self: Box<Self>) -> LogFuture<'static, ()>;
}

/// The broker could not answer a question.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// Why a record was not written, or whether that is known.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    /// The broker refused or could not be reached; the record was not written.
    #[error("{0}")]
    NotWritten(String),
    /// The producer's queue is full; the record was not written.
    #[error("the producer queue is full")]
    QueueFull,
    /// Every transactional producer was in a transaction for as long as the write could wait;
    /// nothing was written.
    #[error("all {limit} transactional producers stayed busy (consistency.transactions)")]
    NoTransactionFree {
        /// Transactions open at once at most.
        limit: usize,
    },
    /// The broker refused the record for its size; it was not written.
    #[error("{0}")]
    TooLarge(String),
    /// No acknowledgement came in time; the record may or may not have been written.
    #[error("{0}")]
    Unknown(String),
}

/// A partition with fewer in-sync replicas than its topic requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    /// Replicas in sync at the last probe.
    pub in_sync: usize,
    /// The topic's `min.insync.replicas`.
    pub required: usize,
}

/// Whether the broker answered lately. The probe ([`crate::kafka::Kafka::probe_broker`])
/// sets it at every check and is alone in finding the broker down; a topic look-up that the
/// broker answers finds it up too. Clients that lose their connections ask the probe to check
/// at once.
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
    /// The last check, or a topic look-up since, got an answer.
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

    /// The last client error, if it happened within `CLIENT_ERROR_MEMORY` (30 s).
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
    pub(crate) fn record_error(&self, error: String) -> bool {
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
