//! The topics this replica serves: attaching a topic on first use (look it up, create it if
//! allowed, start its replay), waiting until it has caught up, and what is known of each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::kafka::Kafka;
use crate::kafka::admin::{AdminError, TopicLookup};
use crate::store::{SharedStore, StoreStats};
use crate::topic_name::TopicPattern;

/// Why a topic cannot be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TopicError {
    /// The topic does not exist (and may not be created by this request).
    #[error("topic {0:?} does not exist")]
    NotFound(String),
    /// The topic has more than one partition, which this service cannot serve in order.
    #[error(
        "topic {topic:?} has {partitions} partitions; kvstore serves only single-partition topics"
    )]
    NotSinglePartition {
        /// The topic.
        topic: String,
        /// Its partition count.
        partitions: usize,
    },
    /// The topic is still being replayed.
    #[error("topic {topic:?} is still replaying (waited {waited:?}); retry shortly")]
    StillReplaying {
        /// The topic.
        topic: String,
        /// How long the request waited.
        waited: Duration,
    },
    /// The topic's replay stopped.
    #[error("topic {topic:?} cannot be served: {reason}")]
    ReplayFailed {
        /// The topic.
        topic: String,
        /// What happened.
        reason: String,
    },
    /// The replica serves as many topics as it may.
    #[error("this replica already serves its limit of {limit} topics")]
    TooManyTopics {
        /// `limits.max_topics`.
        limit: usize,
    },
    /// The topic matches a `topics.deny` pattern.
    #[error("topic {topic:?} is not served: it matches the deny pattern {pattern:?}")]
    Denied {
        /// The topic.
        topic: String,
        /// The pattern it matches.
        pattern: String,
    },
    /// The broker could not be reached.
    #[error("Kafka broker unavailable: {0}")]
    BrokerUnavailable(String),
    /// The broker refused a metadata or admin request.
    #[error("Kafka refused the request: {0}")]
    Refused(String),
}

impl From<AdminError> for TopicError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::Unavailable(message) => TopicError::BrokerUnavailable(message),
            AdminError::Refused(message) => TopicError::Refused(message),
        }
    }
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
    /// Whether the replay has applied everything up to `end_offset`.
    at_end: AtomicBool,
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
            at_end: AtomicBool::new(false),
            attached_at: Instant::now(),
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's state.
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

    /// Records the partition's end offset as the last fetch reported it.
    pub fn set_end_offset(&self, end_offset: i64) {
        self.end_offset.store(end_offset, Ordering::Relaxed);
    }

    /// The partition's end offset as of the last fetch, if known.
    pub fn end_offset(&self) -> Option<i64> {
        let fetched = Some(self.end_offset.load(Ordering::Relaxed)).filter(|o| *o >= 0)?;
        // Own writes applied ahead of the replay are in the log too, beyond what the last
        // fetch reported.
        Some(fetched.max(self.store.next_offset()))
    }

    /// Notes that the replay applied everything fetched so far: the first time, the topic
    /// becomes ready. Returns whether this was the first time.
    pub fn reached_end(&self) -> bool {
        self.at_end.store(true, Ordering::Relaxed);
        self.state.send_if_modified(|state| {
            let first = *state == ReplayState::Replaying;
            if first {
                *state = ReplayState::Ready;
            }
            first
        })
    }

    /// Notes that records beyond the last known end arrived.
    pub fn left_end(&self) {
        self.at_end.store(false, Ordering::Relaxed);
    }

    /// How many records the replica has yet to apply, as far as it knows.
    pub fn lag(&self) -> Option<i64> {
        if self.at_end.load(Ordering::Relaxed) {
            // Also covers offsets that are never delivered, such as transaction markers.
            return Some(0);
        }
        self.end_offset()
            .map(|end| (end - self.store.next_offset()).max(0))
    }

    /// Marks the replay as stopped for good.
    pub fn fail(&self, reason: String) {
        self.state.send_replace(ReplayState::Failed(reason));
    }

    /// Waits up to `timeout` for the topic to have replayed.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), TopicError> {
        let mut rx = self.state.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            rx.wait_for(|state| *state != ReplayState::Replaying),
        )
        .await;
        match waited {
            Ok(Ok(state)) => match &*state {
                ReplayState::Failed(reason) => Err(TopicError::ReplayFailed {
                    topic: self.name.clone(),
                    reason: reason.clone(),
                }),
                _ => Ok(()),
            },
            Ok(Err(_closed)) => Err(TopicError::ReplayFailed {
                topic: self.name.clone(),
                reason: "the topic was detached".into(),
            }),
            Err(_elapsed) => Err(TopicError::StillReplaying {
                topic: self.name.clone(),
                waited: timeout,
            }),
        }
    }

    /// A snapshot for the topics listing.
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

/// A snapshot of one topic.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// Its store's counts.
    pub stats: StoreStats,
    /// The partition's end offset as of the last fetch.
    pub end_offset: Option<i64>,
    /// Records yet to apply.
    pub lag: Option<i64>,
    /// The replay's state.
    pub state: ReplayState,
}

/// What a request intends to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read: a missing topic is not found.
    Read,
    /// Write: a missing topic is created if `topics.auto_create` is on.
    Write,
}

type AttachOutcome = Option<Result<Arc<Topic>, TopicError>>;

enum Slot {
    /// Someone is looking the topic up; the outcome arrives on the channel.
    Attaching(watch::Receiver<AttachOutcome>),
    Attached(Arc<Topic>),
}

/// The registry of attached topics. Cheap to clone.
#[derive(Clone)]
pub struct Topics {
    inner: Arc<Inner>,
}

struct Inner {
    kafka: Kafka,
    config: Arc<Config>,
    /// `topics.deny`, parsed.
    denied: Vec<TopicPattern>,
    // A std mutex: held only to look up or change the map, never across `.await`.
    slots: Mutex<HashMap<String, Slot>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Topics {
    /// An empty registry. Replay loops run on `tracker` and stop when `cancel` fires.
    pub fn new(
        kafka: Kafka,
        config: Arc<Config>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        Topics {
            inner: Arc::new(Inner {
                kafka,
                denied: config.denied_topics(),
                config,
                slots: Mutex::new(HashMap::new()),
                tracker,
                cancel,
            }),
        }
    }

    /// The topic `name`, attached and replayed; attaches it on first use.
    pub async fn get(&self, name: &str, access: Access) -> Result<Arc<Topic>, TopicError> {
        if let Some(pattern) = self.inner.denied.iter().find(|p| p.matches(name)) {
            return Err(TopicError::Denied {
                topic: name.to_owned(),
                pattern: pattern.to_string(),
            });
        }
        let topic = self.attached(name, access).await?;
        topic
            .wait_ready(self.inner.config.topics.attach_timeout)
            .await?;
        Ok(topic)
    }

    /// The topic `name` if it is attached, whatever its state.
    pub fn get_attached(&self, name: &str) -> Option<Arc<Topic>> {
        match self.slots().get(name) {
            Some(Slot::Attached(topic)) => Some(topic.clone()),
            _ => None,
        }
    }

    /// Every attached topic, sorted by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<Arc<Topic>> = self
            .slots()
            .values()
            .filter_map(|slot| match slot {
                Slot::Attached(topic) => Some(topic.clone()),
                Slot::Attaching(_) => None,
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Attaches the `topics.preload` topics, retrying until each is attached or `cancel`.
    pub fn preload(&self) {
        for name in self.inner.config.topics.preload.clone() {
            let topics = self.clone();
            let cancel = self.inner.cancel.clone();
            self.inner.tracker.spawn(async move {
                loop {
                    let attempt = tokio::select! {
                        () = cancel.cancelled() => return,
                        attempt = topics.attached(&name, Access::Write) => attempt,
                    };
                    match attempt {
                        Ok(_) => return,
                        Err(error) => {
                            tracing::warn!(topic = %name, %error, "preloading topic failed; retrying")
                        }
                    }
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            });
        }
    }

    /// Topics that keep the replica from being ready: preloaded topics not yet attached and
    /// attached topics still replaying or failed.
    pub fn not_ready(&self) -> Vec<String> {
        let slots = self.slots();
        let mut pending: Vec<String> = slots
            .iter()
            .filter(|(_, slot)| match slot {
                Slot::Attached(topic) => topic.state() != ReplayState::Ready,
                Slot::Attaching(_) => false,
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &self.inner.config.topics.preload {
            if !matches!(slots.get(name), Some(Slot::Attached(_))) && !pending.contains(name) {
                pending.push(name.clone());
            }
        }
        pending.sort();
        pending
    }

    async fn attached(&self, name: &str, access: Access) -> Result<Arc<Topic>, TopicError> {
        // A reader's attach may find the topic missing while a writer waits on it; the writer
        // then tries again itself. Bounded, in case readers keep winning the race.
        for _ in 0..3 {
            let mut outcome = {
                let mut slots = self.slots();
                match slots.get(name) {
                    Some(Slot::Attached(topic))
                        if !matches!(topic.state(), ReplayState::Failed(_)) =>
                    {
                        return Ok(topic.clone());
                    }
                    Some(Slot::Attaching(outcome)) => outcome.clone(),
                    existing => {
                        if existing.is_none() && slots.len() >= self.inner.config.limits.max_topics
                        {
                            return Err(TopicError::TooManyTopics {
                                limit: self.inner.config.limits.max_topics,
                            });
                        }
                        let (tx, rx) = watch::channel(None);
                        slots.insert(name.to_owned(), Slot::Attaching(rx.clone()));
                        // A task of its own, so that a client hanging up cannot abandon it.
                        let topics = self.clone();
                        let name = name.to_owned();
                        self.inner.tracker.spawn(async move {
                            topics.attach(name, access, tx).await;
                        });
                        rx
                    }
                }
            };
            let result = match outcome.wait_for(Option::is_some).await {
                Ok(result) => result.clone().unwrap_or_else(|| {
                    Err(TopicError::ReplayFailed {
                        topic: name.to_owned(),
                        reason: "attach did not finish".into(),
                    })
                }),
                Err(_) => Err(TopicError::ReplayFailed {
                    topic: name.to_owned(),
                    reason: "attach was abandoned".into(),
                }),
            };
            match result {
                Err(TopicError::NotFound(_))
                    if access == Access::Write && self.inner.config.topics.auto_create =>
                {
                    continue;
                }
                other => return other,
            }
        }
        Err(TopicError::NotFound(name.to_owned()))
    }

    async fn attach(&self, name: String, access: Access, tx: watch::Sender<AttachOutcome>) {
        let result = self.attach_inner(&name, access).await;
        {
            let mut slots = self.slots();
            match &result {
                Ok(topic) => {
                    slots.insert(name.clone(), Slot::Attached(topic.clone()));
                }
                Err(_) => {
                    slots.remove(&name);
                }
            }
        }
        if let Err(error) = &result {
            tracing::debug!(topic = %name, %error, "topic not attached");
        }
        tx.send_replace(Some(result));
    }

    async fn attach_inner(&self, name: &str, access: Access) -> Result<Arc<Topic>, TopicError> {
        let kafka = &self.inner.kafka;
        if kafka.status().is_down() {
            return Err(TopicError::BrokerUnavailable(kafka.status().down_reason()));
        }
        let mut lookup = kafka.lookup_topic(name).await?;
        if lookup == TopicLookup::Missing
            && access == Access::Write
            && self.inner.config.topics.auto_create
        {
            kafka.create_topic(name).await?;
            lookup = self.lookup_after_create(name).await?;
        }
        match lookup {
            TopicLookup::Missing => return Err(TopicError::NotFound(name.to_owned())),
            TopicLookup::Exists { partitions: 1 } => {}
            TopicLookup::Exists { partitions } => {
                return Err(TopicError::NotSinglePartition {
                    topic: name.to_owned(),
                    partitions,
                });
            }
        }
        let topic = Arc::new(Topic::new(name));
        kafka
            .start_replay(
                topic.clone(),
                &self.inner.tracker,
                self.inner.cancel.child_token(),
            )
            .map_err(|e| TopicError::ReplayFailed {
                topic: name.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(topic)
    }

    /// A created topic can take a moment to show in the metadata of every broker.
    async fn lookup_after_create(&self, name: &str) -> Result<TopicLookup, TopicError> {
        let deadline = Instant::now() + self.inner.config.kafka.admin_timeout;
        loop {
            let lookup = self.inner.kafka.lookup_topic(name).await?;
            if lookup != TopicLookup::Missing || Instant::now() >= deadline {
                return Ok(lookup);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
