//! Change streams: a [`Watcher`] follows one topic's changes to a range of keys, from a
//! position (an offset, the same on every replica) onwards, and the [`Watchers`] of a replica
//! share its limits and its shutdown. The HTTP endpoint (`http::watch`) turns what a watcher
//! yields into Server-Sent Events.
//!
//! # Design
//!
//! Every applied change passes through the store's one apply method under its write lock, in
//! offset order, and is recorded there into the topic's change log (`store::changes`): a
//! bounded ring of recent changes. A watcher keeps a *position*, the offset through which it
//! has handed out every matching change, and reads the log strictly after it, under the
//! store's read lock, taking `Arc`s out and filtering outside it. It waits for its topic's
//! `hub` to signal a change in its range: one task per watched topic follows the applied
//! offset (published after the changes it covers are in the log) and wakes only the watchers
//! a change concerns, so that a thousand watchers of a thousand keys cost one wake-up per
//! write, not a thousand. So:
//!
//! - The replay and the writers never wait on a watcher: nothing is sent, queued or counted
//!   per watcher on the apply path. A watcher no one reads is not polled and costs nothing
//!   but its connection.
//! - A watcher is pulled by its connection: it takes from the log only as fast as its client
//!   reads. One that falls so far behind that the log no longer holds the changes after its
//!   position gets [`WatchError::FellBehind`] and ends: it never skips a change silently.
//! - The same position means the same thing on every replica, so a client resumes anywhere;
//!   a replica that has not applied the position yet simply has nothing to send until it has.
//!
//! # Snapshots
//!
//! A snapshot pages through the store (each page under one read lock, with the offset it was
//! read at), so a large range does not hold up the replay. Pages read later may already show
//! changes a page read earlier did not: once every page is sent, the watcher sends, in offset
//! order, the changes from the log made after the page that covered their key was read, up to
//! the offset of the last page. What the client then holds is the state as of that offset,
//! announced by [`WatchEvent::Synced`]; live changes follow from there.

mod hub;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

pub use hub::{Hubs, Membership};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::config::WatchConfig;
use crate::store::{Change, Expired, KeyRange, Value};
use crate::topic::{ReplayState, Topic};

/// Most keys in one page of a snapshot, read under one lock.
const SNAPSHOT_PAGE_KEYS: usize = 1000;

/// Why a watch cannot start or cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The position to resume from is older than the changes this replica keeps.
    #[error(
        "changes after offset {position} are no longer kept on this replica; resume from offset \
         {earliest} or later, or start again with snapshot=true"
    )]
    Expired {
        /// The position asked for.
        position: i64,
        /// The earliest position this replica can resume from.
        earliest: i64,
    },
    /// The watcher fell so far behind that the changes after its position are gone.
    #[error(
        "the watch fell behind: changes after offset {position} are no longer kept (earliest \
         {earliest}); resume from the last event's id, or start again with snapshot=true"
    )]
    FellBehind {
        /// Where the watcher was.
        position: i64,
        /// The earliest position this replica can resume from.
        earliest: i64,
    },
    /// This replica did not apply the offset asked for (`from`, `min_offset`) in time.
    #[error(
        "this replica has not applied offset {offset} yet (waited {waited:?}); retry, or ask another replica"
    )]
    NotReached {
        /// The offset.
        offset: i64,
        /// How long the request waited.
        waited: Duration,
    },
    /// The replica serves as many watchers as it may.
    #[error("this replica already serves its limit of {limit} watchers; retry shortly")]
    TooManyWatchers {
        /// `watch.max_watchers`.
        limit: usize,
    },
    /// The topic's replay stopped: no more changes will come.
    #[error("the topic's replay stopped: {0}")]
    TopicFailed(String),
    /// The service is shutting down.
    #[error("the service is shutting down; retry on another replica")]
    ShuttingDown,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the changes applied after this moment.
    Now,
    /// With the changes after this offset (`Last-Event-ID`, `from`).
    After(i64),
    /// With the current keys, then the changes after them.
    Snapshot,
}

/// What a watcher hands out, in order.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// A put or a delete at its offset. `resumable` is false for the changes that patch up a
    /// snapshot: a position among them is not one to resume from.
    Change {
        /// The change.
        change: Arc<Change>,
        /// Whether the position after it is one a client may resume from.
        resumable: bool,
    },
    /// A key of the snapshot and its value.
    SnapshotKey {
        /// The key.
        key: Vec<u8>,
        /// Its value as of the snapshot.
        value: Value,
    },
    /// The snapshot is complete: what was handed out is the state as of this offset.
    Synced(i64),
}

/// The watchers of one replica: their limit, their settings, and the token that ends them at
/// shutdown. Cheap to clone.
#[derive(Clone)]
pub struct Watchers {
    inner: Arc<WatchersInner>,
}

struct WatchersInner {
    permits: Arc<Semaphore>,
    config: WatchConfig,
    stopping: CancellationToken,
    hubs: Arc<Hubs>,
}

/// A watcher's admission among the [`Watchers`]; counted as open until dropped.
#[derive(Debug)]
pub struct WatcherPermit {
    _permit: OwnedSemaphorePermit,
}

impl Drop for WatcherPermit {
    fn drop(&mut self) {
        crate::metrics::watcher_closed();
    }
}

impl Watchers {
    /// The watchers of a replica configured with `config`; `stopping` fires when the service
    /// begins to shut down.
    pub fn new(config: &WatchConfig, stopping: CancellationToken) -> Self {
        Watchers {
            inner: Arc::new(WatchersInner {
                permits: Arc::new(Semaphore::new(config.max_watchers)),
                config: config.clone(),
                stopping,
                hubs: Arc::new(Hubs::default()),
            }),
        }
    }

    /// Registers a watcher of `range` in `topic` with the topic's hub, which tells it when a
    /// change concerns it (see `hub`).
    pub fn join(&self, topic: &Arc<Topic>, range: &KeyRange) -> Membership {
        self.inner.hubs.join(topic, range, &self.inner.stopping)
    }

    /// A place for one more watcher, or [`WatchError::TooManyWatchers`].
    pub fn admit(&self) -> Result<WatcherPermit, WatchError> {
        let permit = self
            .inner
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| WatchError::TooManyWatchers {
                limit: self.inner.config.max_watchers,
            })?;
        crate::metrics::watcher_opened();
        Ok(WatcherPermit { _permit: permit })
    }

    /// The settings.
    pub fn config(&self) -> &WatchConfig {
        &self.inner.config
    }

    /// Fires when the service begins to shut down: every stream ends.
    pub fn stopping(&self) -> &CancellationToken {
        &self.inner.stopping
    }
}

/// One watch of one topic.
pub struct Watcher {
    topic: Arc<Topic>,
    range: KeyRange,
    /// Every matching change at or below this offset has been handed out.
    position: i64,
    /// Matching changes taken from the log, not handed out yet.
    queue: VecDeque<Arc<Change>>,
    /// The position once `queue` is handed out.
    queue_through: i64,
    /// The store's applied offset: the offset after the last applied record.
    applied_offset: watch::Receiver<i64>,
    snapshot: Option<Snapshot>,
    max_bytes: usize,
    /// The topic's hub, which says when to read; without one, every applied offset does.
    membership: Option<Membership>,
}

/// A snapshot being handed out.
struct Snapshot {
    /// The range, its `after` moved along as pages are read.
    range: KeyRange,
    /// For each page read but the last: its last key and the offset it was read at.
    pages: Vec<(Vec<u8>, i64)>,
    /// The offset the first page was read at, and the last.
    first: Option<i64>,
    last: i64,
    /// Keys of the page being handed out.
    items: VecDeque<(Vec<u8>, Value)>,
    /// Whether the last page has been read.
    scanned: bool,
    /// The log has been read for patches through this offset.
    patched_through: i64,
    /// Changes to hand out before `Synced`.
    patches: VecDeque<Arc<Change>>,
}

impl Snapshot {
    /// Whether `change` happened after the page covering its key was read, so that the page
    /// does not show it.
    fn missed(&self, change: &Change) -> bool {
        let page = self
            .pages
            .partition_point(|(last_key, _)| **last_key < *change.key);
        let read_at = self.pages.get(page).map_or(self.last, |(_, at)| *at);
        read_at < change.offset
    }
}

impl Watcher {
    /// A watch of `range` in `topic` from `start`, taking at most `max_bytes` of keys and
    /// values at once. Fails with [`WatchError::Expired`] when this replica no longer keeps
    /// the changes after the position asked for.
    pub fn new(
        topic: Arc<Topic>,
        range: KeyRange,
        start: Start,
        max_bytes: usize,
    ) -> Result<Watcher, WatchError> {
        let store = topic.store();
        let applied_offset = store.subscribe_applied();
        let (position, snapshot) = match start {
            Start::Now => (store.last_applied(), None),
            Start::After(offset) => {
                let earliest = store.earliest_position();
                if offset < earliest {
                    return Err(WatchError::Expired {
                        position: offset,
                        earliest,
                    });
                }
                (offset, None)
            }
            Start::Snapshot => {
                let snapshot = Snapshot {
                    range: KeyRange {
                        after: None,
                        ..range.clone()
                    },
                    pages: Vec::new(),
                    first: None,
                    last: -1,
                    items: VecDeque::new(),
                    scanned: false,
                    patched_through: -1,
                    patches: VecDeque::new(),
                };
                (-1, Some(snapshot))
            }
        };
        Ok(Watcher {
            topic,
            range,
            position,
            queue: VecDeque::new(),
            queue_through: position,
            applied_offset,
            snapshot,
            max_bytes: max_bytes.max(1),
            membership: None,
        })
    }

    /// The watcher, told when to read by its topic's hub instead of by every applied offset.
    pub fn signalled_by(mut self, membership: Membership) -> Watcher {
        self.membership = Some(membership);
        self
    }

    /// With nothing to hand out, moves the position up to where the hub has looked if it
    /// signalled nothing this watcher has not read (see `hub`), so that `progress` can say
    /// so without reading the log.
    pub fn advance_idle(&mut self) {
        let Some(membership) = &self.membership else {
            return;
        };
        if self.snapshot.is_some() || !self.queue.is_empty() {
            return;
        }
        // The hub's position first: the signals it sent up to it are visible after it.
        let through = membership.hub().through();
        if membership.signal.signalled() <= self.position && self.position >= membership.joined_at {
            self.position = self.position.max(through);
            self.queue_through = self.position;
        }
    }

    /// The position: every matching change at or below it has been handed out; a client that
    /// has what was handed out may resume from it. `None` while a snapshot is handed out.
    pub fn position(&self) -> Option<i64> {
        self.snapshot.is_none().then_some(self.position)
    }

    /// The topic watched.
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// The next event, waiting for one as long as it takes. Cancel-safe: dropping the future
    /// loses nothing.
    pub async fn next(&mut self) -> Result<WatchEvent, WatchError> {
        loop {
            if self.snapshot.is_some() {
                if let Some(event) = self.snapshot_step()? {
                    return Ok(event);
                }
                continue;
            }
            if let Some(change) = self.queue.pop_front() {
                self.position = match self.queue.front() {
                    Some(_) => change.offset,
                    None => self.queue_through,
                };
                return Ok(WatchEvent::Change {
                    change,
                    resumable: true,
                });
            }
            // Marks the applied offset as seen before reading: anything applied after the
            // read wakes the wait below.
            let last_applied = *self.applied_offset.borrow_and_update() - 1;
            let page = self
                .topic
                .store()
                .changes_after(self.position, self.max_bytes)
                .map_err(|Expired { position, earliest }| {
                    crate::metrics::watcher_fell_behind();
                    WatchError::FellBehind { position, earliest }
                })?;
            let range = &self.range;
            self.queue.extend(
                page.changes
                    .into_iter()
                    .filter(|change| range.contains(&change.key)),
            );
            self.queue_through = page.through;
            if self.queue.is_empty() {
                self.position = page.through;
                if page.through >= last_applied {
                    self.wait_for_changes().await?;
                }
            }
        }
    }

    async fn wait_for_changes(&mut self) -> Result<(), WatchError> {
        if let Some(membership) = &self.membership {
            membership.signal.wait().await;
            return Ok(());
        }
        if self.applied_offset.changed().await.is_err() {
            return Err(WatchError::TopicFailed(
                "the topic's store was dropped".into(),
            ));
        }
        Ok(())
    }

    /// Whether the topic's replay has stopped for good.
    pub fn topic_failed(&self) -> Option<WatchError> {
        match self.topic.state() {
            ReplayState::Failed(reason) => Some(WatchError::TopicFailed(reason)),
            _ => None,
        }
    }

    /// One step of the snapshot: an event, or `None` when it only moved on.
    fn snapshot_step(&mut self) -> Result<Option<WatchEvent>, WatchError> {
        let Some(snapshot) = self.snapshot.as_mut() else {
            return Ok(None);
        };
        if let Some((key, value)) = snapshot.items.pop_front() {
            return Ok(Some(WatchEvent::SnapshotKey { key, value }));
        }
        if !snapshot.scanned {
            let page = self
                .topic
                .store()
                .scan(&snapshot.range, SNAPSHOT_PAGE_KEYS, self.max_bytes);
            // The page is the state as of the last record applied when it was read.
            let read_at = page.applied_offset - 1;
            let first = *snapshot.first.get_or_insert(read_at);
            snapshot.last = read_at;
            snapshot.patched_through = first;
            match page.items.last() {
                Some((last_key, _)) if page.more => {
                    snapshot.pages.push((last_key.clone(), read_at));
                    snapshot.range.after = Some(last_key.clone());
                }
                _ => snapshot.scanned = true,
            }
            snapshot.items = page.items.into();
            return Ok(None);
        }
        if let Some(change) = snapshot.patches.pop_front() {
            return Ok(Some(WatchEvent::Change {
                change,
                resumable: false,
            }));
        }
        if snapshot.patched_through < snapshot.last {
            let page = self
                .topic
                .store()
                .changes_until(snapshot.patched_through, snapshot.last, self.max_bytes)
                .map_err(|Expired { position, earliest }| {
                    crate::metrics::watcher_fell_behind();
                    WatchError::FellBehind { position, earliest }
                })?;
            let snapshot_ref = &*snapshot;
            let missed: Vec<Arc<Change>> = page
                .changes
                .into_iter()
                .filter(|change| snapshot_ref.range.contains(&change.key))
                .filter(|change| snapshot_ref.missed(change))
                .collect();
            snapshot.patches.extend(missed);
            snapshot.patched_through = page.through;
            return Ok(None);
        }
        let synced = snapshot.last;
        self.snapshot = None;
        self.position = synced;
        self.queue_through = synced;
        Ok(Some(WatchEvent::Synced(synced)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordRef;
    use crate::store::Retention;
    use crate::topic::ReplaySink;

    fn ready_topic(retention: Retention) -> Arc<Topic> {
        let topic = Arc::new(Topic::new("t").retaining(retention));
        topic.reached_end(0);
        topic
    }

    fn put<'a>(offset: i64, key: &'a str, value: &'a str) -> RecordRef<'a> {
        RecordRef {
            offset,
            key: Some(key.as_bytes()),
            value: Some(value.as_bytes()),
            content_type: None,
            batch: None,
        }
    }

    fn delete(offset: i64, key: &str) -> RecordRef<'_> {
        RecordRef {
            offset,
            key: Some(key.as_bytes()),
            value: None,
            content_type: None,
            batch: None,
        }
    }

    fn prefix(prefix: &str) -> KeyRange {
        KeyRange {
            prefix: prefix.as_bytes().to_vec(),
            ..KeyRange::default()
        }
    }

    /// The next event, as `(offset, key, value)`, failing if none comes at once.
    async fn next(watcher: &mut Watcher) -> Result<(i64, String, Option<String>), WatchError> {
        let event = tokio::time::timeout(Duration::from_secs(1), watcher.next())
            .await
            .expect("an event")?;
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).expect("utf8");
        Ok(match event {
            WatchEvent::Change { change, .. } => (
                change.offset,
                text(&change.key),
                change.value.as_deref().map(text),
            ),
            WatchEvent::SnapshotKey { key, value } => {
                (value.offset, text(&key), Some(text(&value.bytes)))
            }
            WatchEvent::Synced(offset) => (offset, "synced".into(), None),
        })
    }

    async fn nothing_more(watcher: &mut Watcher) {
        let waited = tokio::time::timeout(Duration::from_millis(50), watcher.next()).await;
        assert!(
            waited.is_err(),
            "unexpected {:?}",
            waited.map(|e| e.is_ok())
        );
    }

    #[tokio::test]
    async fn changes_after_the_start_in_the_range_in_order() {
        let topic = ready_topic(Retention::default());
        topic.apply(vec![put(0, "a/old", "x")]);
        let mut watcher =
            Watcher::new(topic.clone(), prefix("a/"), Start::Now, 1 << 20).expect("starts");
        assert_eq!(watcher.position(), Some(0));
        topic.apply(vec![
            put(1, "a/1", "1"),
            put(2, "b/1", "no"),
            delete(3, "a/old"),
        ]);
        assert_eq!(
            next(&mut watcher).await,
            Ok((1, "a/1".into(), Some("1".into())))
        );
        assert_eq!(next(&mut watcher).await, Ok((3, "a/old".into(), None)));
        assert_eq!(watcher.position(), Some(3));
        nothing_more(&mut watcher).await;
        // Changes outside the range still move the position on.
        topic.apply(vec![put(4, "b/2", "no")]);
        nothing_more(&mut watcher).await;
        assert_eq!(watcher.position(), Some(4));
    }

    #[tokio::test]
    async fn resumes_strictly_after_a_position_and_expires_what_is_gone() {
        let retention = Retention {
            changes: 3,
            bytes: usize::MAX,
        };
        let topic = ready_topic(retention);
        for offset in 0..5 {
            topic.apply(vec![put(offset, &format!("k{offset}"), "v")]);
        }
        // 2, 3 and 4 are kept.
        let mut watcher =
            Watcher::new(topic.clone(), KeyRange::default(), Start::After(2), 1).expect("kept");
        assert_eq!(next(&mut watcher).await.expect("change").0, 3);
        assert_eq!(next(&mut watcher).await.expect("change").0, 4);
        assert_eq!(
            Watcher::new(topic.clone(), KeyRange::default(), Start::After(0), 1).err(),
            Some(WatchError::Expired {
                position: 0,
                earliest: 1
            })
        );
        // A position ahead of what is applied waits for it.
        let mut ahead =
            Watcher::new(topic.clone(), KeyRange::default(), Start::After(6), 1).expect("ahead");
        topic.apply(vec![
            put(5, "k5", "v"),
            put(6, "k6", "v"),
            put(7, "k7", "v"),
        ]);
        assert_eq!(next(&mut ahead).await.expect("change").0, 7);
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_gets_an_error_not_a_gap() {
        let retention = Retention {
            changes: 2,
            bytes: usize::MAX,
        };
        let topic = ready_topic(retention);
        let mut watcher =
            Watcher::new(topic.clone(), KeyRange::default(), Start::Now, 1).expect("starts");
        topic.apply(vec![put(0, "a", "0")]);
        assert_eq!(next(&mut watcher).await.expect("change").0, 0);
        topic.apply(vec![put(1, "a", "1"), put(2, "a", "2"), put(3, "a", "3")]);
        assert_eq!(
            next(&mut watcher).await,
            Err(WatchError::FellBehind {
                position: 0,
                earliest: 1
            })
        );
    }

    #[tokio::test]
    async fn a_snapshot_taken_page_by_page_is_patched_to_one_offset() {
        let topic = ready_topic(Retention::default());
        let keys: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
        let records: Vec<RecordRef<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| put(i as i64, key, "old"))
            .collect();
        topic.apply(records);
        let mut watcher =
            Watcher::new(topic.clone(), prefix("k"), Start::Snapshot, usize::MAX).expect("starts");
        assert_eq!(watcher.position(), None);
        let mut state = std::collections::BTreeMap::new();
        let mut applied_during = false;
        let synced = loop {
            match next(&mut watcher).await.expect("event") {
                (offset, key, _) if key == "synced" => break offset,
                (_, key, value) => match value {
                    Some(value) => {
                        state.insert(key, value);
                    }
                    None => {
                        state.remove(&key);
                    }
                },
            }
            if !applied_during && state.len() == 10 {
                // While the first page is handed out: a key it showed changes, one a later
                // page shows is deleted, and one is added before the first.
                applied_during = true;
                topic.apply(vec![
                    put(2500, "k00001", "new"),
                    delete(2501, "k02000"),
                    put(2502, "k", "new"),
                ]);
            }
        };
        assert_eq!(synced, 2502);
        assert_eq!(watcher.position(), Some(2502));
        let mut expected: std::collections::BTreeMap<String, String> =
            keys.iter().map(|k| (k.clone(), "old".into())).collect();
        expected.insert("k00001".into(), "new".into());
        expected.remove("k02000");
        expected.insert("k".into(), "new".into());
        assert_eq!(state, expected);
        // Then live changes after the snapshot's offset, none twice.
        topic.apply(vec![put(2503, "k1", "live")]);
        assert_eq!(next(&mut watcher).await.expect("change").0, 2503);
        nothing_more(&mut watcher).await;
    }

    #[tokio::test]
    async fn a_snapshot_of_an_empty_range_is_synced_at_once() {
        let topic = ready_topic(Retention::default());
        topic.apply(vec![put(0, "a", "1")]);
        let mut watcher =
            Watcher::new(topic, prefix("z"), Start::Snapshot, 1 << 20).expect("starts");
        assert_eq!(next(&mut watcher).await, Ok((0, "synced".into(), None)));
    }

    #[test]
    fn ranges_select_by_prefix_and_bounds() {
        let range = KeyRange {
            prefix: b"a".to_vec(),
            start: Some(b"ab".to_vec()),
            end: Some(b"ad".to_vec()),
            after: None,
        };
        assert!(range.contains(b"ab"));
        assert!(range.contains(b"acz"));
        assert!(!range.contains(b"aa"));
        assert!(!range.contains(b"ad"));
        assert!(KeyRange::default().contains(b""));
    }

    #[test]
    fn the_watcher_limit_is_enforced_and_freed() {
        let config = WatchConfig {
            max_watchers: 1,
            ..WatchConfig::default()
        };
        let watchers = Watchers::new(&config, CancellationToken::new());
        let first = watchers.admit().expect("room");
        assert_eq!(
            watchers.admit().err(),
            Some(WatchError::TooManyWatchers { limit: 1 })
        );
        drop(first);
        assert!(watchers.admit().is_ok());
    }
}
