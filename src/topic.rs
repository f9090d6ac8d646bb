//! One attached topic: its store, where its replay stands, and the [`ReplaySink`] through
//! which the replay loop (in [`crate::kafka::replay`]) hands it records and progress. The
//! registry that attaches topics is [`crate::topics`].

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::record::RecordRef;
use crate::store::{Retention, SharedStore, StoreStats};

/// What the replay loop of a topic hands its records and progress to. It knows nothing else
/// of the topic; [`Topic`] is the one implementation.
pub trait ReplaySink: Send + Sync {
    /// The topic's name, for logs and metrics.
    fn topic_name(&self) -> &str;
    /// Applies records fetched in offset order, under one lock; returns how many changed the
    /// state or advanced it.
    fn apply(&self, records: Vec<RecordRef<'_>>) -> usize;
    /// Records arrived beyond the end last reached.
    fn left_end(&self);
    /// The consumer reached the end of the partition at `position`: every record below it
    /// has been handed over, and the offsets among them that carried none (transaction
    /// markers, aborted or compacted records) count as applied. Returns whether this was the
    /// first time, when the topic becomes ready.
    fn reached_end(&self, position: i64) -> bool;
    /// The partition's end offset as the last fetch reported it.
    fn fetched_end_offset(&self, end_offset: i64);
    /// Whether everything below the end offset of the replay's first fetch is now applied:
    /// the topic has replayed what it held when attached, and becomes ready, even if writes
    /// keep the replay from ever finding the partition's end (each fetch bringing more).
    /// Returns whether this was the first time.
    fn caught_up(&self) -> bool;
    /// The replay stopped for good.
    fn failed(&self, reason: String);
    /// Where the topic stands.
    fn info(&self) -> TopicInfo;
    /// How long ago a request last waited for the replay to reach the end promptly (see
    /// [`Topic::follow_closely`]); `None` if none ever did.
    fn followed_closely(&self) -> Option<Duration>;
}

/// Why a topic is not ready to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Still replaying after waiting this long.
    StillReplaying(Duration),
    /// The replay stopped, for this reason.
    Failed(String),
}

/// Where a topic's replay stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayState {
    /// Reading the topic up to the end it had when attached.
    Replaying,
    /// Caught up once; serving.
    Ready,
    /// The replay loop stopped and will not resume.
    Failed(String),
}

/// One attached topic: its store and the progress of its replay.
#[derive(Debug)]
pub struct Topic {
    name: String,
    store: SharedStore,
    state: watch::Sender<ReplayState>,
    /// The partition's end offset as of the last fetch; -1 until known.
    end_offset: AtomicI64,
    /// The end offset of the first fetch: once it is applied the topic is ready; -1 until
    /// known.
    first_end_offset: AtomicI64,
    /// Whether the replay has applied everything up to `end_offset`.
    at_end: AtomicBool,
    /// When a conditional write or a read that waits for an offset was last made here, in
    /// milliseconds after `attached_at` plus one; 0 if never.
    followed_closely: AtomicU64,
    attached_at: Instant,
}

impl Topic {
    /// A topic about to be replayed from its beginning.
    pub fn new(name: &str) -> Self {
        Topic {
            name: name.to_owned(),
            store: SharedStore::new(),
            state: watch::Sender::new(ReplayState::Replaying),
            end_offset: AtomicI64::new(-1),
            first_end_offset: AtomicI64::new(-1),
            at_end: AtomicBool::new(false),
            followed_closely: AtomicU64::new(0),
            attached_at: Instant::now(),
        }
    }

    /// The topic, keeping `retention` of its recent changes for watchers.
    pub fn retaining(self, retention: Retention) -> Self {
        self.store.set_change_retention(retention);
        self
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's store.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// When the topic was attached.
    pub fn attached_at(&self) -> Instant {
        self.attached_at
    }

    /// The replay's state.
    pub fn state(&self) -> ReplayState {
        self.state.borrow().clone()
    }

    /// The partition's end offset as of the last fetch, or the applied offset if that is
    /// further (own writes applied ahead of the replay); `None` before the first fetch.
    pub fn end_offset(&self) -> Option<i64> {
        let fetched = Some(self.end_offset.load(Ordering::Relaxed)).filter(|o| *o >= 0)?;
        // Own writes applied ahead of the replay are in the log too, beyond what the last
        // fetch reported.
        Some(fetched.max(self.store.applied_offset()))
    }

    /// How many records the replica has yet to apply, as far as it knows.
    pub fn lag(&self) -> Option<i64> {
        if self.at_end.load(Ordering::Relaxed) {
            // Also covers offsets that are never delivered, such as transaction markers.
            return Some(0);
        }
        self.end_offset()
            .map(|end| (end - self.store.applied_offset()).max(0))
    }

    /// Notes that requests here wait for the replay to reach offsets at the end of the log
    /// (conditional writes, reads with `min_offset` or `consistency=strong`), so that it
    /// fetches with the shorter wait of `consistency.fetch_wait_max` while they go on.
    pub fn follow_closely(&self) {
        let now = u64::try_from(self.attached_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.followed_closely
            .store(now.saturating_add(1), Ordering::Relaxed);
    }

    /// Waits up to `timeout` for the topic to have replayed.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), NotReady> {
        let mut rx = self.state.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            rx.wait_for(|state| *state != ReplayState::Replaying),
        )
        .await;
        match waited {
            Ok(Ok(state)) => match &*state {
                ReplayState::Failed(reason) => Err(NotReady::Failed(reason.clone())),
                _ => Ok(()),
            },
            // The sender is the topic's own, borrowed here: it cannot close while we wait.
            Ok(Err(_closed)) => Err(NotReady::Failed("the topic's state was dropped".into())),
            Err(_elapsed) => Err(NotReady::StillReplaying(timeout)),
        }
    }

    /// Marks the topic ready; returns whether it was still replaying.
    fn become_ready(&self) -> bool {
        if *self.state.borrow() == ReplayState::Replaying {
            // Once caught up (at the log's end, or past the end its first fetch saw) the
            // replica reads records about as they are written, long before the cleaner could
            // reach their segment: an offset without one is a transaction marker or an
            // aborted record, never a compacted change (see `store::changes`).
            self.store.trust_gaps();
        }
        self.state.send_if_modified(|state| {
            let first = *state == ReplayState::Replaying;
            if first {
                *state = ReplayState::Ready;
            }
            first
        })
    }

    /// A snapshot for the topics listing, metrics and progress logs.
    pub fn info(&self) -> TopicInfo {
        TopicInfo {
            name: self.name.clone(),
            stats: self.store.stats(),
            end_offset: self.end_offset(),
            lag: self.lag(),
            state: self.state(),
        }
    }
}

impl ReplaySink for Topic {
    fn topic_name(&self) -> &str {
        &self.name
    }

    fn apply(&self, records: Vec<RecordRef<'_>>) -> usize {
        self.store.apply_all(records)
    }

    fn left_end(&self) {
        self.at_end.store(false, Ordering::Relaxed);
    }

    fn reached_end(&self, position: i64) -> bool {
        self.store.advance_to(position);
        self.at_end.store(true, Ordering::Relaxed);
        self.become_ready()
    }

    fn fetched_end_offset(&self, end_offset: i64) {
        self.end_offset.store(end_offset, Ordering::Relaxed);
        let _ = self.first_end_offset.compare_exchange(
            -1,
            end_offset,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn caught_up(&self) -> bool {
        let first_end = self.first_end_offset.load(Ordering::Relaxed);
        first_end >= 0 && self.store.applied_offset() >= first_end && self.become_ready()
    }

    fn failed(&self, reason: String) {
        self.state.send_replace(ReplayState::Failed(reason));
    }

    fn info(&self) -> TopicInfo {
        Topic::info(self)
    }

    fn followed_closely(&self) -> Option<Duration> {
        let at = self
            .followed_closely
            .load(Ordering::Relaxed)
            .checked_sub(1)?;
        Some(
            self.attached_at
                .elapsed()
                .saturating_sub(Duration::from_millis(at)),
        )
    }
}

/// A snapshot of one topic.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// Its store's counts.
    pub stats: StoreStats,
    /// The partition's end offset as of the last fetch (see [`Topic::end_offset`]).
    pub end_offset: Option<i64>,
    /// Records yet to apply.
    pub lag: Option<i64>,
    /// The replay's state.
    pub state: ReplayState,
}
