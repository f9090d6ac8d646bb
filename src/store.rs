//! The in-memory state of one topic: an ordered map from key to its latest value, rebuilt by
//! applying the topic's records in offset order, and a watch of how far it has applied.
//!
//! Nothing here knows about HTTP or Kafka; [`crate::kafka`] turns Kafka messages into
//! [`Record`]s and the HTTP handlers read through [`SharedStore`].

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;

/// The content type of values stored without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Most own writes held for applying ahead of the replay; past this, writes wait for the
/// replay as usual.
const MAX_OWN_PENDING: usize = 100_000;

/// Distinct content types kept shared between entries; past this many, each entry carries its
/// own copy, so a producer writing random content types cannot grow the table without bound.
const MAX_INTERNED_CONTENT_TYPES: usize = 1024;

/// One record of the topic, as the store needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's offset in its partition.
    pub offset: i64,
    /// The key; records without one advance the offset and change nothing.
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a tombstone that deletes the key.
    pub value: Option<Vec<u8>>,
    /// The value's content type, from the record's headers.
    pub content_type: Option<String>,
}

/// A value as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value's bytes.
    pub bytes: Vec<u8>,
    /// Its content type ([`DEFAULT_CONTENT_TYPE`] when the record named none).
    pub content_type: Arc<str>,
    /// The offset of the record that wrote it: its version.
    pub offset: i64,
}

/// What a stored key maps to; kept small because there is one per key.
#[derive(Debug)]
struct Entry {
    value: Box<[u8]>,
    /// `None` stands for [`DEFAULT_CONTENT_TYPE`].
    content_type: Option<Arc<str>>,
    offset: i64,
}

/// Which keys a scan covers: those at or after `start`, before `end`, beginning with `prefix`,
/// and strictly after `after` (the cursor of the previous page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// Only keys beginning with these bytes.
    pub prefix: Vec<u8>,
    /// Inclusive lower bound.
    pub start: Option<Vec<u8>>,
    /// Exclusive upper bound.
    pub end: Option<Vec<u8>>,
    /// Exclusive lower bound: the last key of the previous page.
    pub after: Option<Vec<u8>>,
}

/// One page of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// Keys and values in key order.
    pub items: Vec<(Vec<u8>, Value)>,
    /// Whether keys in the range remain after the last item.
    pub more: bool,
}

/// Sizes of a store, for the topics listing and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Number of live keys.
    pub keys: u64,
    /// Bytes of live keys and values.
    pub bytes: u64,
    /// The offset after the last applied record.
    pub next_offset: i64,
}

/// The ordered map of one topic and the offset up to which it has been applied.
#[derive(Debug, Default)]
pub struct TopicStore {
    map: BTreeMap<Box<[u8]>, Entry>,
    bytes: u64,
    next_offset: i64,
    /// This replica's own acknowledged writes at offsets not applied yet, by offset; see
    /// [`TopicStore::apply_own`].
    own: BTreeMap<i64, Record>,
    content_types: HashMap<Box<str>, Arc<str>>,
    last_content_type: Option<Arc<str>>,
    default_content_type: Arc<str>,
}

impl TopicStore {
    /// An empty store that expects offset 0 next.
    pub fn new() -> Self {
        TopicStore {
            default_content_type: Arc::from(DEFAULT_CONTENT_TYPE),
            ..TopicStore::default()
        }
    }

    /// Applies one record. Records at offsets already applied are ignored, so replaying a
    /// record twice cannot change the state. Returns whether the record was applied.
    pub fn apply(&mut self, record: Record) -> bool {
        if record.offset < self.next_offset {
            return false;
        }
        self.next_offset = record.offset + 1;
        let Some(key) = record.key else {
            return true;
        };
        match record.value {
            None => {
                if let Some((old_key, old)) = self.map.remove_entry(key.as_slice()) {
                    self.bytes -= (old_key.len() + old.value.len()) as u64;
                }
            }
            Some(value) => {
                let content_type = self.intern(record.content_type);
                self.bytes += (key.len() + value.len()) as u64;
                let entry = Entry {
                    value: value.into_boxed_slice(),
                    content_type,
                    offset: record.offset,
                };
                let key = key.into_boxed_slice();
                let key_len = key.len();
                if let Some(old) = self.map.insert(key, entry) {
                    self.bytes -= (key_len + old.value.len()) as u64;
                }
            }
        }
        true
    }

    /// Applies records this replica wrote itself and the broker acknowledged at their offsets.
    ///
    /// The log holds exactly these records at these offsets, so once every record before one
    /// of them is applied, it can be applied without waiting for the replay to fetch it back;
    /// the replay then skips it as already applied. Records with earlier offsets still missing
    /// wait here until the replay has applied those. Returns how many were applied.
    pub fn apply_own(&mut self, records: impl IntoIterator<Item = Record>) -> usize {
        for record in records {
            if record.offset >= self.next_offset && self.own.len() < MAX_OWN_PENDING {
                self.own.insert(record.offset, record);
            }
        }
        self.apply_own_ready()
    }

    /// Applies the own records that are next in line; drops those already applied.
    fn apply_own_ready(&mut self) -> usize {
        let mut applied = 0;
        while let Some(entry) = self.own.first_entry() {
            if *entry.key() > self.next_offset {
                break;
            }
            let record = entry.remove();
            if self.apply(record) {
                applied += 1;
            }
        }
        applied
    }

    /// The current value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Value> {
        self.map.get(key).map(|entry| self.value_of(entry))
    }

    /// Up to `limit` keys of `range` in order, stopping early once the values add up to
    /// `max_bytes` (at least one item is returned when any is in range).
    pub fn scan(&self, range: &KeyRange, limit: usize, max_bytes: usize) -> ScanPage {
        let mut items = Vec::new();
        let mut bytes = 0usize;
        let (lower, upper) = (lower_bound(range), upper_bound(range));
        if is_empty_range(lower, upper) {
            // BTreeMap::range panics on inverted bounds; an inverted range is simply empty.
            return ScanPage { items, more: false };
        }
        let mut iter = self.map.range::<[u8], _>((lower, upper));
        for (key, entry) in iter.by_ref() {
            if !key.starts_with(&range.prefix) {
                // Past the prefix's block of keys: nothing further can match.
                return ScanPage { items, more: false };
            }
            bytes += key.len() + entry.value.len();
            items.push((key.to_vec(), self.value_of(entry)));
            if items.len() >= limit || bytes >= max_bytes {
                break;
            }
        }
        let more = iter
            .next()
            .is_some_and(|(key, _)| key.starts_with(&range.prefix));
        ScanPage { items, more }
    }

    /// Counts for the topics listing and metrics.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            keys: self.map.len() as u64,
            bytes: self.bytes,
            next_offset: self.next_offset,
        }
    }

    /// The offset after the last applied record.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    fn value_of(&self, entry: &Entry) -> Value {
        Value {
            bytes: entry.value.to_vec(),
            content_type: entry
                .content_type
                .clone()
                .unwrap_or_else(|| self.default_content_type.clone()),
            offset: entry.offset,
        }
    }

    fn intern(&mut self, content_type: Option<String>) -> Option<Arc<str>> {
        let content_type = content_type.filter(|ct| ct != DEFAULT_CONTENT_TYPE)?;
        // Runs of records usually share one content type: skip the hash look-up for them.
        if let Some(last) = &self.last_content_type
            && **last == *content_type
        {
            return Some(last.clone());
        }
        let shared = match self.content_types.get(content_type.as_str()) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = Arc::from(content_type.as_str());
                if self.content_types.len() < MAX_INTERNED_CONTENT_TYPES {
                    self.content_types
                        .insert(content_type.into_boxed_str(), shared.clone());
                }
                shared
            }
        };
        self.last_content_type = Some(shared.clone());
        Some(shared)
    }
}

fn lower_bound(range: &KeyRange) -> Bound<&[u8]> {
    let mut bound = Bound::Included(range.prefix.as_slice());
    if let Some(start) = &range.start
        && start.as_slice() > range.prefix.as_slice()
    {
        bound = Bound::Included(start.as_slice());
    }
    if let Some(after) = &range.after {
        let beyond = match bound {
            Bound::Included(b) => after.as_slice() >= b,
            _ => true,
        };
        if beyond {
            bound = Bound::Excluded(after.as_slice());
        }
    }
    bound
}

fn is_empty_range(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Excluded(u)) | (Bound::Excluded(l), Bound::Excluded(u)) => {
            l >= u
        }
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Excluded(l), Bound::Included(u)) => l >= u,
        _ => false,
    }
}

fn upper_bound(range: &KeyRange) -> Bound<&[u8]> {
    match &range.end {
        Some(end) => Bound::Excluded(end.as_slice()),
        None => Bound::Unbounded,
    }
}

/// A [`TopicStore`] shared between its replay loop (the only writer) and the request handlers,
/// with a watch that wakes writers waiting for their offset to be applied.
#[derive(Debug)]
pub struct SharedStore {
    // A std lock, not tokio's: it is held only for in-memory work and never across `.await`.
    store: RwLock<TopicStore>,
    next_offset: watch::Sender<i64>,
}

/// Why waiting for an offset ended without it being applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The time ran out.
    #[error("not applied in time")]
    Timeout,
    /// The store is being dropped (the topic was detached or the service is stopping).
    #[error("the store was closed")]
    Closed,
}

impl Default for SharedStore {
    fn default() -> Self {
        SharedStore::new()
    }
}

impl SharedStore {
    /// An empty store.
    pub fn new() -> Self {
        SharedStore {
            store: RwLock::new(TopicStore::new()),
            next_offset: watch::Sender::new(0),
        }
    }

    /// Applies records in order under one lock, then wakes the writers waiting on them.
    /// Returns how many were applied.
    pub fn apply_all(&self, records: impl IntoIterator<Item = Record>) -> usize {
        let (applied, next_offset) = {
            let mut store = self.write();
            let applied = records
                .into_iter()
                .map(|record| store.apply(record))
                .filter(|applied| *applied)
                .count();
            let own = store.apply_own_ready();
            (applied + own, store.next_offset())
        };
        self.publish(next_offset);
        applied
    }

    /// Applies this replica's own acknowledged writes ahead of the replay where nothing
    /// unapplied precedes them (see [`TopicStore::apply_own`]), then wakes their writers.
    pub fn apply_own(&self, records: impl IntoIterator<Item = Record>) -> usize {
        let (applied, next_offset) = {
            let mut store = self.write();
            let applied = store.apply_own(records);
            (applied, store.next_offset())
        };
        self.publish(next_offset);
        applied
    }

    fn publish(&self, next_offset: i64) {
        self.next_offset.send_if_modified(|current| {
            let changed = *current != next_offset;
            *current = next_offset;
            changed
        });
    }

    /// The current value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Value> {
        self.read().get(key)
    }

    /// One page of keys in `range`; see [`TopicStore::scan`].
    pub fn scan(&self, range: &KeyRange, limit: usize, max_bytes: usize) -> ScanPage {
        self.read().scan(range, limit, max_bytes)
    }

    /// Counts for the topics listing and metrics.
    pub fn stats(&self) -> StoreStats {
        self.read().stats()
    }

    /// The offset after the last applied record.
    pub fn next_offset(&self) -> i64 {
        *self.next_offset.borrow()
    }

    /// Waits until the record at `offset` has been applied, or `timeout` passes.
    pub async fn wait_applied(&self, offset: i64, timeout: Duration) -> Result<(), WaitError> {
        let mut rx = self.next_offset.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|next| *next > offset)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(WaitError::Closed),
            Err(_) => Err(WaitError::Timeout),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, TopicStore> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters more than losing the topic, so keep serving what is there.
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, TopicStore> {
        self.store.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(offset: i64, key: &str, value: &str) -> Record {
        Record {
            offset,
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            content_type: None,
        }
    }

    fn delete(offset: i64, key: &str) -> Record {
        Record {
            offset,
            key: Some(key.as_bytes().to_vec()),
            value: None,
            content_type: None,
        }
    }

    fn keys(page: &ScanPage) -> Vec<String> {
        page.items
            .iter()
            .map(|(k, _)| String::from_utf8(k.clone()).expect("utf8"))
            .collect()
    }

    #[test]
    fn put_overwrite_and_delete() {
        let mut store = TopicStore::new();
        assert!(store.apply(put(0, "a", "1")));
        assert!(store.apply(put(1, "a", "22")));
        let value = store.get(b"a").expect("present");
        assert_eq!(value.bytes, b"22");
        assert_eq!(value.offset, 1);
        assert_eq!(&*value.content_type, DEFAULT_CONTENT_TYPE);
        assert_eq!(store.stats().bytes, 3);
        assert!(store.apply(delete(2, "a")));
        assert_eq!(store.get(b"a"), None);
        assert_eq!(
            store.stats(),
            StoreStats {
                keys: 0,
                bytes: 0,
                next_offset: 3
            }
        );
    }

    #[test]
    fn old_offsets_are_ignored() {
        let mut store = TopicStore::new();
        store.apply(put(5, "a", "new"));
        assert!(!store.apply(put(3, "a", "old")));
        assert!(!store.apply(delete(5, "a")));
        assert_eq!(store.get(b"a").expect("present").bytes, b"new");
        assert_eq!(store.next_offset(), 6);
    }

    #[test]
    fn keyless_records_only_advance_the_offset() {
        let mut store = TopicStore::new();
        store.apply(Record {
            offset: 0,
            key: None,
            value: Some(b"x".to_vec()),
            content_type: None,
        });
        assert_eq!(store.stats().keys, 0);
        assert_eq!(store.next_offset(), 1);
    }

    #[test]
    fn deleting_an_absent_key_is_harmless() {
        let mut store = TopicStore::new();
        assert!(store.apply(delete(0, "nothing")));
        assert_eq!(store.stats().keys, 0);
    }

    #[test]
    fn content_types_are_kept_and_shared() {
        let mut store = TopicStore::new();
        for offset in 0..3 {
            store.apply(Record {
                content_type: Some("application/json".into()),
                ..put(offset, &format!("k{offset}"), "{}")
            });
        }
        let a = store.get(b"k0").expect("present").content_type;
        let b = store.get(b"k2").expect("present").content_type;
        assert_eq!(&*a, "application/json");
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn scan_by_prefix_pages_through_everything() {
        let mut store = TopicStore::new();
        for (i, key) in ["a", "b/1", "b/2", "b/3", "b0", "c"].iter().enumerate() {
            store.apply(put(i as i64, key, "v"));
        }
        let mut range = KeyRange {
            prefix: b"b/".to_vec(),
            ..KeyRange::default()
        };
        let page = store.scan(&range, 2, usize::MAX);
        assert_eq!(keys(&page), ["b/1", "b/2"]);
        assert!(page.more);
        range.after = Some(b"b/2".to_vec());
        let page = store.scan(&range, 2, usize::MAX);
        assert_eq!(keys(&page), ["b/3"]);
        assert!(!page.more);
    }

    #[test]
    fn scan_by_start_and_end() {
        let mut store = TopicStore::new();
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            store.apply(put(i as i64, key, "v"));
        }
        let range = KeyRange {
            start: Some(b"b".to_vec()),
            end: Some(b"d".to_vec()),
            ..KeyRange::default()
        };
        let page = store.scan(&range, 10, usize::MAX);
        assert_eq!(keys(&page), ["b", "c"]);
        assert!(!page.more);
        let page = store.scan(&range, 2, usize::MAX);
        assert!(!page.more, "d is outside the range");
    }

    #[test]
    fn scan_with_start_before_prefix_and_after_before_start() {
        let mut store = TopicStore::new();
        for (i, key) in ["a", "p1", "p2", "q"].iter().enumerate() {
            store.apply(put(i as i64, key, "v"));
        }
        let range = KeyRange {
            prefix: b"p".to_vec(),
            start: Some(b"a".to_vec()),
            after: Some(b"0".to_vec()),
            ..KeyRange::default()
        };
        assert_eq!(keys(&store.scan(&range, 10, usize::MAX)), ["p1", "p2"]);
    }

    #[test]
    fn scan_stops_at_the_byte_budget_but_returns_one_item() {
        let mut store = TopicStore::new();
        store.apply(put(0, "a", "0123456789"));
        store.apply(put(1, "b", "0123456789"));
        let page = store.scan(&KeyRange::default(), 10, 5);
        assert_eq!(keys(&page), ["a"]);
        assert!(page.more);
    }

    #[test]
    fn inverted_or_empty_ranges_are_empty_not_a_panic() {
        let mut store = TopicStore::new();
        store.apply(put(0, "m", "v"));
        let cases = [
            KeyRange {
                prefix: b"z".to_vec(),
                end: Some(b"b".to_vec()),
                ..KeyRange::default()
            },
            KeyRange {
                start: Some(b"c".to_vec()),
                end: Some(b"c".to_vec()),
                ..KeyRange::default()
            },
            KeyRange {
                after: Some(b"x".to_vec()),
                end: Some(b"x".to_vec()),
                ..KeyRange::default()
            },
        ];
        for range in cases {
            let page = store.scan(&range, 10, usize::MAX);
            assert!(page.items.is_empty() && !page.more, "{range:?}");
        }
    }

    #[test]
    fn own_writes_apply_once_everything_before_them_has() {
        let mut store = TopicStore::new();
        store.apply(put(0, "a", "0"));
        // Offset 1 (someone else's) is not applied yet: 2 and 3 wait.
        assert_eq!(store.apply_own([put(2, "b", "2"), put(3, "c", "3")]), 0);
        assert_eq!(store.get(b"b"), None);
        assert_eq!(store.next_offset(), 1);
        store.apply(put(1, "x", "1"));
        assert_eq!(store.apply_own_ready(), 2);
        assert_eq!(store.next_offset(), 4);
        assert_eq!(store.get(b"c").expect("applied").offset, 3);
        // The replay delivering them later changes nothing.
        assert!(!store.apply(put(2, "b", "2")));
        assert!(!store.apply(put(3, "c", "3")));
        // Own writes the replay already applied are dropped.
        assert_eq!(store.apply_own([put(1, "x", "1")]), 0);
        assert!(store.own.is_empty());
    }

    #[tokio::test]
    async fn waiters_wake_when_their_offset_is_applied() {
        let store = Arc::new(SharedStore::new());
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.wait_applied(1, Duration::from_secs(5)).await })
        };
        store.apply_all([put(0, "a", "1")]);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        store.apply_all([put(1, "b", "2")]);
        assert_eq!(waiter.await.expect("joins"), Ok(()));
        assert_eq!(
            store.wait_applied(7, Duration::from_millis(10)).await,
            Err(WaitError::Timeout)
        );
    }
}
