//! The registry of the topics this replica serves: attaching a topic on first use (look it
//! up, create it if allowed, start its replay) and waiting until it has caught up. Each
//! attached topic is a [`Topic`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::log::{AdminError, Log, TopicLookup};
use crate::store::Retention;
use crate::topic::{NotReady, ReplayState, Topic};
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

/// What a request intends to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The topic must exist already: reads, and deletes (a tombstone in a topic created for
    /// it would be pointless). A missing topic is not found.
    Existing,
    /// A missing topic is created if `topics.auto_create` is on: puts and batches.
    MayCreate,
}

type AttachOutcome = Option<Result<Arc<Topic>, TopicError>>;

enum Attachment {
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
    log: Arc<dyn Log>,
    config: Arc<Config>,
    /// `topics.deny`, parsed.
    denied: Vec<TopicPattern>,
    // A std mutex: held only to look up or change the map, never across `.await`.
    attachments: Mutex<HashMap<String, Attachment>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Topics {
    /// An empty registry. Replay loops run on `tracker` and stop when `cancel` fires.
    pub fn new(
        log: Arc<dyn Log>,
        config: Arc<Config>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        Topics {
            inner: Arc::new(Inner {
                log,
                denied: config.denied_topics(),
                config,
                attachments: Mutex::new(HashMap::new()),
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
        let topic = self.attach_or_join(name, access).await?;
        match topic
            .wait_ready(self.inner.config.topics.attach_timeout)
            .await
        {
            Ok(()) => Ok(topic),
            Err(NotReady::StillReplaying(waited)) => Err(TopicError::StillReplaying {
                topic: name.to_owned(),
                waited,
            }),
            Err(NotReady::Failed(reason)) => Err(TopicError::ReplayFailed {
                topic: name.to_owned(),
                reason,
            }),
        }
    }

    /// The topic `name` if it is attached, whatever its state.
    pub fn get_attached(&self, name: &str) -> Option<Arc<Topic>> {
        match self.attachments().get(name) {
            Some(Attachment::Attached(topic)) => Some(topic.clone()),
            _ => None,
        }
    }

    /// Every attached topic, sorted by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<Arc<Topic>> = self
            .attachments()
            .values()
            .filter_map(|attachment| match attachment {
                Attachment::Attached(topic) => Some(topic.clone()),
                Attachment::Attaching(_) => None,
            })
            .collect();
        topics.sort_by(|a, b| a.name().cmp(b.name()));
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
                        attempt = topics.attach_or_join(&name, Access::MayCreate) => attempt,
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
        let attachments = self.attachments();
        let mut pending: Vec<String> = attachments
            .iter()
            .filter(|(_, attachment)| match attachment {
                Attachment::Attached(topic) => topic.state() != ReplayState::Ready,
                Attachment::Attaching(_) => false,
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &self.inner.config.topics.preload {
            if !matches!(attachments.get(name), Some(Attachment::Attached(_)))
                && !pending.contains(name)
            {
                pending.push(name.clone());
            }
        }
        pending.sort();
        pending
    }

    async fn attach_or_join(&self, name: &str, access: Access) -> Result<Arc<Topic>, TopicError> {
        // A reader's attach may find the topic missing while a writer waits on it; the writer
        // then tries again itself. Bounded, in case readers keep winning the race.
        for _ in 0..3 {
            let mut outcome = {
                let mut attachments = self.attachments();
                match attachments.get(name) {
                    Some(Attachment::Attached(topic))
                        if !matches!(topic.state(), ReplayState::Failed(_)) =>
                    {
                        return Ok(topic.clone());
                    }
                    Some(Attachment::Attaching(outcome)) => outcome.clone(),
                    existing => {
                        if existing.is_none()
                            && attachments.len() >= self.inner.config.limits.max_topics
                        {
                            return Err(TopicError::TooManyTopics {
                                limit: self.inner.config.limits.max_topics,
                            });
                        }
                        let (tx, rx) = watch::channel(None);
                        attachments.insert(name.to_owned(), Attachment::Attaching(rx.clone()));
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
                    if access == Access::MayCreate && self.inner.config.topics.auto_create =>
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
            let mut attachments = self.attachments();
            match &result {
                Ok(topic) => {
                    attachments.insert(name.clone(), Attachment::Attached(topic.clone()));
                }
                Err(_) => {
                    attachments.remove(&name);
                }
            }
        }
        if let Err(error) = &result {
            tracing::debug!(topic = %name, %error, "topic not attached");
        }
        tx.send_replace(Some(result));
    }

    async fn attach_inner(&self, name: &str, access: Access) -> Result<Arc<Topic>, TopicError> {
        let log = &self.inner.log;
        if log.status().is_down() {
            return Err(TopicError::BrokerUnavailable(log.status().down_reason()));
        }
        let mut lookup = log.lookup_topic(name).await?;
        if lookup == TopicLookup::Missing
            && access == Access::MayCreate
            && self.inner.config.topics.auto_create
        {
            log.create_topic(name).await?;
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
        let topic = Arc::new(Topic::new(name).retaining(Retention::from(&self.inner.config.watch)));
        log.start_replay(
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
            let lookup = self.inner.log.lookup_topic(name).await?;
            if lookup != TopicLookup::Missing || Instant::now() >= deadline {
                return Ok(lookup);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn attachments(&self) -> std::sync::MutexGuard<'_, HashMap<String, Attachment>> {
        self.inner
            .attachments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
