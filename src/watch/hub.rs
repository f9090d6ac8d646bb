//! Waking only the watchers a change concerns. Without this, every watcher of a topic would
//! wake at each applied offset to look for changes in its range: a thousand watchers of one
//! key each cost a thousand wake-ups per write (measured: PUT throughput down to a fifth).
//!
//! One [`Hub`] per watched topic, with a task of its own, reads the topic's change log after
//! its position, finds the watchers whose range holds each change (an index by prefix, so a
//! change costs a look-up per distinct prefix length rather than one test per watcher), and
//! signals them. A watcher still reads the log itself, from its own position, so a signal
//! carries no data and may be spurious or merged with others; it only says "read now".
//!
//! So that a watcher that nothing concerns can still report its position (`progress`), the
//! hub publishes how far it has looked ([`Hub::through`]) after recording, per watcher, the
//! last offset it signalled ([`Signal::signalled`]): a watcher whose position is at or past
//! that offset has nothing pending up to [`Hub::through`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::KeyRange;
use crate::topic::Topic;

/// Most bytes of changes the hub takes from the log at once.
const HUB_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How one watcher is told to read.
#[derive(Debug)]
pub struct Signal {
    notify: Notify,
    /// The last offset of a change for this watcher the hub has signalled.
    signalled: AtomicI64,
}

impl Signal {
    /// Waits for a signal (one sent before the wait counts).
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// The last offset the hub signalled this watcher for.
    pub fn signalled(&self) -> i64 {
        self.signalled.load(Ordering::Acquire)
    }

    fn send(&self, offset: i64) {
        self.signalled.fetch_max(offset, Ordering::AcqRel);
        self.notify.notify_one();
    }
}

/// The watchers of one topic, indexed by what they watch.
#[derive(Default)]
struct Index {
    /// Watchers of a prefix alone, by prefix.
    by_prefix: BTreeMap<Vec<u8>, HashMap<u64, Arc<Signal>>>,
    /// The lengths of the prefixes in `by_prefix`, to look up only those of a key.
    prefix_lengths: BTreeMap<usize, usize>,
    /// Watchers with `start` or `end`, tested one by one.
    ranged: HashMap<u64, (KeyRange, Arc<Signal>)>,
}

impl Index {
    fn is_empty(&self) -> bool {
        self.by_prefix.is_empty() && self.ranged.is_empty()
    }

    fn signal(&self, key: &[u8], offset: i64) {
        for &length in self.prefix_lengths.keys() {
            if length > key.len() {
                break;
            }
            if let Some(watchers) = self.by_prefix.get(&key[..length]) {
                watchers.values().for_each(|signal| signal.send(offset));
            }
        }
        for (range, signal) in self.ranged.values() {
            if range.contains(key) {
                signal.send(offset);
            }
        }
    }

    fn signal_all(&self, offset: i64) {
        let prefixed = self
            .by_prefix
            .values()
            .flat_map(|watchers| watchers.values());
        let ranged = self.ranged.values().map(|(_, signal)| signal);
        prefixed
            .chain(ranged)
            .for_each(|signal| signal.send(offset));
    }
}

/// The hub of one watched topic.
pub struct Hub {
    topic: Arc<Topic>,
    // A std mutex, held only to change or walk the index, never across `.await`.
    index: Mutex<Index>,
    /// Every change at or below this offset has been signalled to the watchers it concerns.
    through: AtomicI64,
    next_id: AtomicU64,
    /// Fires when the hub's last watcher leaves (or at shutdown): its task ends.
    closed: CancellationToken,
}

impl Hub {
    /// Every change at or below this offset has been signalled to the watchers it concerns.
    pub fn through(&self) -> i64 {
        self.through.load(Ordering::Acquire)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Signals the watchers of every change after the hub's position, as changes are applied,
    /// until the hub closes.
    async fn run(self: Arc<Self>) {
        let store = self.topic.store();
        let mut applied = store.subscribe_applied();
        let mut position = self.through();
        loop {
            let last_applied = *applied.borrow_and_update() - 1;
            while position < last_applied {
                match store.changes_after(position, HUB_BATCH_BYTES) {
                    Ok(page) => {
                        {
                            let index = self.index();
                            for change in &page.changes {
                                index.signal(&change.key, change.offset);
                            }
                        }
                        position = page.through.max(position);
                    }
                    Err(expired) => {
                        // The log moved past the hub (it could not keep up): every watcher
                        // reads and learns for itself whether it fell behind too.
                        position = last_applied;
                        self.index().signal_all(expired.earliest);
                    }
                }
                self.through.store(position, Ordering::Release);
            }
            tokio::select! {
                () = self.closed.cancelled() => return,
                changed = applied.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// A watcher's entry in its topic's hub; leaves the hub when dropped.
pub struct Membership {
    hub: Arc<Hub>,
    id: u64,
    prefix_only: Option<Vec<u8>>,
    hubs: Arc<Hubs>,
    /// How this watcher is told to read.
    pub signal: Arc<Signal>,
    /// The hub's position when the watcher joined: it signals only changes after it.
    pub joined_at: i64,
}

impl Membership {
    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut hubs = self.hubs.lock();
        let mut index = self.hub.index();
        match &self.prefix_only {
            Some(prefix) => {
                if let Some(watchers) = index.by_prefix.get_mut(prefix) {
                    watchers.remove(&self.id);
                    if watchers.is_empty() {
                        index.by_prefix.remove(prefix);
                        if let Some(count) = index.prefix_lengths.get_mut(&prefix.len()) {
                            *count -= 1;
                            if *count == 0 {
                                index.prefix_lengths.remove(&prefix.len());
                            }
                        }
                    }
                }
            }
            None => {
                index.ranged.remove(&self.id);
            }
        }
        if index.is_empty() {
            self.hub.closed.cancel();
            let name = self.hub.topic.name();
            if hubs
                .get(name)
                .is_some_and(|hub| Arc::ptr_eq(hub, &self.hub))
            {
                hubs.remove(name);
            }
        }
    }
}

/// The hubs of a replica's watched topics, by topic name.
#[derive(Default)]
pub struct Hubs {
    // A std mutex: held only to find, add or remove a hub, never across `.await`.
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
}

impl Hubs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Hub>>> {
        self.hubs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a watcher of `range` in `topic`, starting the topic's hub if it has none;
    /// the hub ends with its last watcher or when `stopping` fires.
    pub fn join(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        range: &KeyRange,
        stopping: &CancellationToken,
    ) -> Membership {
        let mut hubs = self.lock();
        let hub = match hubs.get(topic.name()) {
            Some(hub) if Arc::ptr_eq(&hub.topic, topic) && !hub.closed.is_cancelled() => {
                hub.clone()
            }
            _ => {
                let hub = Arc::new(Hub {
                    topic: topic.clone(),
                    index: Mutex::new(Index::default()),
                    through: AtomicI64::new(topic.store().last_applied()),
                    next_id: AtomicU64::new(0),
                    closed: stopping.child_token(),
                });
                tokio::spawn(hub.clone().run());
                hubs.insert(topic.name().to_owned(), hub.clone());
                hub
            }
        };
        let signal = Arc::new(Signal {
            notify: Notify::new(),
            signalled: AtomicI64::new(-1),
        });
        let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
        let joined_at = hub.through();
        let prefix_only =
            (range.start.is_none() && range.end.is_none()).then(|| range.prefix.clone());
        {
            let mut index = hub.index();
            match &prefix_only {
                Some(prefix) => {
                    let watchers = index.by_prefix.entry(prefix.clone()).or_default();
                    let first = watchers.is_empty();
                    watchers.insert(id, signal.clone());
                    if first {
                        *index.prefix_lengths.entry(prefix.len()).or_default() += 1;
                    }
                }
                None => {
                    index.ranged.insert(id, (range.clone(), signal.clone()));
                }
            }
        }
        drop(hubs);
        Membership {
            hub,
            id,
            prefix_only,
            hubs: self.clone(),
            signal,
            joined_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::record::RecordRef;
    use crate::topic::ReplaySink;

    fn put(offset: i64, key: &str) -> RecordRef<'_> {
        RecordRef {
            offset,
            key: Some(key.as_bytes()),
            value: Some(b"v"),
            content_type: None,
            batch: None,
        }
    }

    fn range(prefix: &str, start: Option<&str>) -> KeyRange {
        KeyRange {
            prefix: prefix.as_bytes().to_vec(),
            start: start.map(|s| s.as_bytes().to_vec()),
            ..KeyRange::default()
        }
    }

    async fn signalled(membership: &Membership) -> bool {
        tokio::time::timeout(Duration::from_millis(100), membership.signal.wait())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn only_the_watchers_a_change_concerns_are_signalled() {
        let topic = Arc::new(Topic::new("t"));
        topic.reached_end(0);
        let hubs = Arc::new(Hubs::default());
        let stopping = CancellationToken::new();
        let a = hubs.join(&topic, &range("a/", None), &stopping);
        let b = hubs.join(&topic, &range("b/", None), &stopping);
        let from_b5 = hubs.join(&topic, &range("b/", Some("b/5")), &stopping);
        topic.apply(vec![put(0, "a/1")]);
        assert!(signalled(&a).await);
        assert!(!signalled(&b).await && !signalled(&from_b5).await);
        topic.apply(vec![put(1, "b/7")]);
        assert!(signalled(&b).await && signalled(&from_b5).await);
        assert!(!signalled(&a).await);
        assert_eq!((a.signal.signalled(), b.signal.signalled()), (0, 1));
        // Once it has looked at offset 2, the hub has signalled no one for it.
        topic.apply(vec![put(2, "c/1")]);
        tokio::time::timeout(Duration::from_secs(1), async {
            while a.hub().through() < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the hub moves on");
        assert!(!signalled(&a).await && !signalled(&b).await);
        // The last watcher to leave closes the hub.
        let hub = a.hub.clone();
        drop((a, b, from_b5));
        assert!(hub.closed.is_cancelled());
        assert!(hubs.lock().is_empty());
    }
}
