//! The in-memory state of one topic: an ordered map from key to its latest value, rebuilt by
//! applying the topic's records in offset order, a watch of how far it has applied, and a log
//! of the most recent changes for watchers ([`ChangeLog`]).
//!
//! Nothing here knows about HTTP or Kafka: the replay hands it Kafka messages as
//! [`RecordRef`]s, the write path this replica's own acknowledged [`Record`]s, and the HTTP
//! handlers read through [`SharedStore`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;

mod changes;
mod slot;

pub use changes::{Change, ChangeLog, ChangePage, Expired, Retention};
use slot::{ContentTypeCode, DescendingKey, Slot};

use crate::record::{Record, RecordRef};

/// The content type of values stored without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Most own writes held for applying ahead of the replay; past this, writes wait for the
/// replay as usual.
const MAX_OWN_PENDING: usize = 100_000;

/// Distinct content types kept shared between entries; past this many, each entry carries its
/// own copy, so a producer writing random content types cannot grow the table without bound.
const MAX_INTERNED_CONTENT_TYPES: usize = 1024;

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

impl KeyRange {
    /// Whether `key` is in the range (its `after` is not used: that is a page's place).
    pub fn contains(&self, key: &[u8]) -> bool {
        key.starts_with(&self.prefix)
            && self.start.as_deref().is_none_or(|start| key >= start)
            && self.end.as_deref().is_none_or(|end| key < end)
    }
}

/// One page of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// Keys and values in key order.
    pub items: Vec<(Vec<u8>, Value)>,
    /// Whether keys in the range remain after the last item.
    pub more: bool,
    /// The applied offset the page was read at.
    pub applied_offset: i64,
}

/// Sizes of a store, for the topics listing and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Number of live keys.
    pub keys: u64,
    /// Bytes of live keys and values.
    pub bytes: u64,
    /// The offset after the last applied record.
    pub applied_offset: i64,
}

/// The ordered map of one topic and the offset up to which it has been applied.
#[derive(Debug, Default)]
pub struct TopicStore {
    /// The live keys, each with its value, from the largest key down.
    map: BTreeSet<Slot>,
    bytes: u64,
    applied_offset: i64,
    /// This replica's own acknowledged writes at offsets not applied yet, by offset; see
    /// [`TopicStore::apply_own`].
    own: BTreeMap<i64, Record>,
    /// Interned content types: the index of each in `content_type_names`.
    content_types: HashMap<Box<str>, u32>,
    content_type_names: Vec<Arc<str>>,
    /// The index of the last content type interned or looked up.
    last_content_type: Option<u32>,
    default_content_type: Arc<str>,
    /// The recent changes, for watchers; see [`changes`].
    changes: ChangeLog,
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
    /// record twice cannot change the state. Returns whether the record was applied. Every
    /// applied record passes here, from the replay and from [`TopicStore::apply_own`] alike,
    /// which is why the change log is written here.
    pub fn apply(&mut self, record: RecordRef<'_>) -> bool {
        if record.offset < self.applied_offset {
            return false;
        }
        if record.offset > self.applied_offset {
            self.changes.skip_to(record.offset);
        }
        self.applied_offset = record.offset + 1;
        let Some(key) = record.key else {
            return true;
        };
        let replaced = match record.value {
            None => self.map.take(DescendingKey::new(key)),
            Some(value) => {
                let content_type = self.intern(record.content_type);
                self.bytes += (key.len() + value.len()) as u64;
                self.map
                    .replace(Slot::new(key, record.offset, content_type, value))
            }
        };
        if let Some(old) = replaced {
            let old = old.parts();
            self.bytes -= (old.key.len() + old.value.len()) as u64;
        }
        self.record_change(record.offset, key, record.value, record.content_type);
        true
    }

    /// Applies records this replica wrote itself and the broker acknowledged at their offsets.
    ///
    /// The log holds exactly these records at these offsets, so once every record before one
    /// of them is applied, it can be applied without waiting for the replay to fetch it back;
    /// the replay then skips it as already applied. Records with earlier offsets still missing
    /// wait here until the replay has applied those. Returns how many were applied.
    pub fn apply_own(&mut self, records: impl IntoIterator<Item = (i64, Record)>) -> usize {
        for (offset, record) in records {
            if offset >= self.applied_offset && self.own.len() < MAX_OWN_PENDING {
                self.own.insert(offset, record);
            }
        }
        self.apply_own_ready()
    }

    /// Applies the own records that are next in line; drops those already applied.
    fn apply_own_ready(&mut self) -> usize {
        let mut applied = 0;
        while let Some(entry) = self.own.first_entry() {
            let offset = *entry.key();
            if offset > self.applied_offset {
                break;
            }
            let record = entry.remove();
            if self.apply(record.at(offset)) {
                applied += 1;
            }
        }
        applied
    }

    /// Notes that the log holds no record below `position` that has not been applied: the
    /// offsets between the last applied record and `position` carry none this store sees
    /// (transaction markers, aborted records, records the log cleaner removed). Returns how
    /// many own records this let through.
    pub fn advance_to(&mut self, position: i64) -> usize {
        if position > self.applied_offset {
            self.changes.skip_to(position);
            self.applied_offset = position;
        }
        self.apply_own_ready()
    }

    /// The current value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Value> {
        self.map
            .get(DescendingKey::new(key))
            .map(|slot| self.value_of(slot))
    }

    /// The version of `key`: the offset of the record that wrote its value.
    pub fn get_version(&self, key: &[u8]) -> Option<i64> {
        self.map
            .get(DescendingKey::new(key))
            .map(|slot| slot.parts().offset)
    }

    /// Up to `limit` keys of `range` in order, stopping early once the values add up to
    /// `max_bytes` (at least one item is returned when any is in range).
    pub fn scan(&self, range: &KeyRange, limit: usize, max_bytes: usize) -> ScanPage {
        let mut items = Vec::new();
        let mut bytes = 0usize;
        let (lower, upper) = (lower_bound(range), upper_bound(range));
        if is_empty_range(lower, upper) {
            // BTreeMap::range panics on inverted bounds; an inverted range is simply empty.
            return ScanPage {
                items,
                more: false,
                applied_offset: self.applied_offset,
            };
        }
        // The map runs from the largest key down: the range is read backwards, from its
        // lower bound up.
        let mut iter = self
            .map
            .range::<DescendingKey, _>((descending(upper), descending(lower)))
            .rev();
        for slot in iter.by_ref() {
            let key = slot.key();
            if !key.starts_with(&range.prefix) {
                // Past the prefix's block of keys: nothing further can match.
                return ScanPage {
                    items,
                    more: false,
                    applied_offset: self.applied_offset,
                };
            }
            let value = self.value_of(slot);
            bytes += key.len() + value.bytes.len();
            items.push((key.to_vec(), value));
            if items.len() >= limit || bytes >= max_bytes {
                break;
            }
        }
        let more = iter
            .next()
            .is_some_and(|slot| slot.key().starts_with(&range.prefix));
        ScanPage {
            items,
            more,
            applied_offset: self.applied_offset,
        }
    }

    /// Counts for the topics listing and metrics.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            keys: self.map.len() as u64,
            bytes: self.bytes,
            applied_offset: self.applied_offset,
        }
    }

    /// The offset after the last applied record.
    pub fn applied_offset(&self) -> i64 {
        self.applied_offset
    }

    fn value_of(&self, slot: &Slot) -> Value {
        let parts = slot.parts();
        let content_type = match parts.content_type {
            ContentTypeCode::Default => None,
            ContentTypeCode::Interned(index) => {
                self.content_type_names.get(index as usize).cloned()
            }
            ContentTypeCode::Inline(name) => Some(Arc::from(name)),
        };
        Value {
            bytes: parts.value.to_vec(),
            content_type: content_type.unwrap_or_else(|| self.default_content_type.clone()),
            offset: parts.offset,
        }
    }

    fn intern<'a>(&mut self, content_type: Option<&'a str>) -> ContentTypeCode<'a> {
        let Some(content_type) = content_type.filter(|ct| *ct != DEFAULT_CONTENT_TYPE) else {
            return ContentTypeCode::Default;
        };
        // Runs of records usually share one content type: skip the hash look-up for them.
        if let Some(last) = self.last_content_type
            && self
                .content_type_names
                .get(last as usize)
                .is_some_and(|name| **name == *content_type)
        {
            return ContentTypeCode::Interned(last);
        }
        let index = match self.content_types.get(content_type) {
            Some(&index) => index,
            None if self.content_type_names.len() < MAX_INTERNED_CONTENT_TYPES => {
                let index = self.content_type_names.len() as u32;
                self.content_type_names.push(Arc::from(content_type));
                self.content_types.insert(content_type.into(), index);
                index
            }
            None => return ContentTypeCode::Inline(content_type),
        };
        self.last_content_type = Some(index);
        ContentTypeCode::Interned(index)
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

fn descending(bound: Bound<&[u8]>) -> Bound<&DescendingKey> {
    bound.map(DescendingKey::new)
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

/// A [`TopicStore`] shared between the request handlers and its two writers: the replay loop,
/// which applies the log in order, and the write path, which applies this replica's own
/// acknowledged records ahead of it where nothing unapplied precedes them
/// ([`SharedStore::apply_own`]). A watch wakes writers waiting for their offset.
#[derive(Debug)]
pub struct SharedStore {
    // A std lock, not tokio's: it is held only for in-memory work and never across `.await`.
    store: RwLock<TopicStore>,
    applied_offset: watch::Sender<i64>,
}

/// Waiting for an offset ended, at its timeout, without it being applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not applied in time")]
pub struct NotAppliedInTime;

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
            applied_offset: watch::Sender::new(0),
        }
    }

    /// Applies records in order under one lock, then wakes the writers waiting on them.
    /// Returns how many were applied.
    pub fn apply_all<'a>(&self, records: impl IntoIterator<Item = RecordRef<'a>>) -> usize {
        let (applied, applied_offset) = {
            let mut store = self.write();
            let applied = records
                .into_iter()
                .map(|record| store.apply(record))
                .filter(|applied| *applied)
                .count();
            let own = store.apply_own_ready();
            (applied + own, store.applied_offset())
        };
        self.publish(applied_offset);
        applied
    }

    /// Applies this replica's own acknowledged writes ahead of the replay where nothing
    /// unapplied precedes them (see [`TopicStore::apply_own`]), then wakes their writers.
    pub fn apply_own(&self, records: impl IntoIterator<Item = (i64, Record)>) -> usize {
        let (applied, applied_offset) = {
            let mut store = self.write();
            let applied = store.apply_own(records);
            (applied, store.applied_offset())
        };
        self.publish(applied_offset);
        applied
    }

    /// Moves the applied offset up to `position`, the consumer's position after everything
    /// fetched so far was applied (see [`TopicStore::advance_to`]), then wakes the writers
    /// waiting on it.
    pub fn advance_to(&self, position: i64) {
        let applied_offset = {
            let mut store = self.write();
            store.advance_to(position);
            store.applied_offset()
        };
        self.publish(applied_offset);
    }

    fn publish(&self, applied_offset: i64) {
        self.applied_offset.send_if_modified(|current| {
            let changed = *current != applied_offset;
            *current = applied_offset;
            changed
        });
    }

    /// The current value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Value> {
        self.read().get(key)
    }

    /// The current value of `key` and the applied offset it is the value at, read together.
    pub fn get_at(&self, key: &[u8]) -> (Option<Value>, i64) {
        let store = self.read();
        (store.get(key), store.applied_offset())
    }

    /// One page of keys in `range`; see [`TopicStore::scan`].
    pub fn scan(&self, range: &KeyRange, limit: usize, max_bytes: usize) -> ScanPage {
        self.read().scan(range, limit, max_bytes)
    }

    /// Counts for the topics listing and metrics.
    pub fn stats(&self) -> StoreStats {
        self.read().stats()
    }

    /// The versions of `keys` (`None` for an absent key) and the applied offset they are the
    /// versions at, read together.
    pub fn versions<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> (i64, Vec<Option<i64>>) {
        let store = self.read();
        let versions = keys.into_iter().map(|key| store.get_version(key)).collect();
        (store.applied_offset(), versions)
    }

    /// The offset after the last applied record.
    pub fn applied_offset(&self) -> i64 {
        *self.applied_offset.borrow()
    }

    /// The offset of the last record applied (-1 before the first), read under the lock that
    /// the change log is written under.
    pub fn last_applied(&self) -> i64 {
        self.read().applied_offset - 1
    }

    /// A watch of the applied offset (the offset after the last applied record), which
    /// changes after the changes it covers are in the log.
    pub fn subscribe_applied(&self) -> tokio::sync::watch::Receiver<i64> {
        self.applied_offset.subscribe()
    }

    /// Waits until the record at `offset` has been applied, or `timeout` passes.
    pub async fn wait_applied(
        &self,
        offset: i64,
        timeout: Duration,
    ) -> Result<(), NotAppliedInTime> {
        let mut rx = self.applied_offset.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|next| *next > offset)).await {
            Ok(Ok(_)) => Ok(()),
            // The sender is this store's, which the caller borrows: it cannot close while we
            // wait. Were it closed, the offset would never come, which is what a timeout says.
            Ok(Err(_)) | Err(_) => Err(NotAppliedInTime),
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
    use proptest::prelude::*;

    use super::*;

    /// Any record of a log (keyless ones too, as other producers may write), owned.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Record {
        offset: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        content_type: Option<String>,
    }

    impl Record {
        fn borrowed(&self) -> RecordRef<'_> {
            RecordRef {
                offset: self.offset,
                key: self.key.as_deref(),
                value: self.value.as_deref(),
                content_type: self.content_type.as_deref(),
                batch: None,
            }
        }

        /// The record as this replica would have written it.
        fn written(&self) -> (i64, crate::record::Record) {
            let record = crate::record::Record {
                key: self.key.clone().expect("own writes have keys"),
                value: self.value.clone(),
                content_type: self.content_type.clone(),
                batch: None,
            };
            (self.offset, record)
        }
    }

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
        assert!(store.apply(put(0, "a", "1").borrowed()));
        assert!(store.apply(put(1, "a", "22").borrowed()));
        let value = store.get(b"a").expect("present");
        assert_eq!(value.bytes, b"22");
        assert_eq!(value.offset, 1);
        assert_eq!(&*value.content_type, DEFAULT_CONTENT_TYPE);
        assert_eq!(store.stats().bytes, 3);
        assert!(store.apply(delete(2, "a").borrowed()));
        assert_eq!(store.get(b"a"), None);
        assert_eq!(
            store.stats(),
            StoreStats {
                keys: 0,
                bytes: 0,
                applied_offset: 3
            }
        );
    }

    #[test]
    fn old_offsets_are_ignored() {
        let mut store = TopicStore::new();
        store.apply(put(5, "a", "new").borrowed());
        assert!(!store.apply(put(3, "a", "old").borrowed()));
        assert!(!store.apply(delete(5, "a").borrowed()));
        assert_eq!(store.get(b"a").expect("present").bytes, b"new");
        assert_eq!(store.applied_offset(), 6);
    }

    #[test]
    fn the_position_moves_the_applied_offset_over_offsets_without_records() {
        let mut store = TopicStore::new();
        store.apply(put(0, "a", "1").borrowed());
        // Offset 1 is a transaction marker; an own write at 2 waits for it.
        assert_eq!(store.apply_own([put(2, "b", "own").written()]), 0);
        assert_eq!(store.applied_offset(), 1);
        assert_eq!(store.advance_to(2), 1);
        assert_eq!(store.applied_offset(), 3);
        assert_eq!(store.get(b"b").expect("applied").bytes, b"own");
        // A position behind what is applied changes nothing.
        assert_eq!(store.advance_to(1), 0);
        assert_eq!(store.applied_offset(), 3);
    }

    #[test]
    fn keyless_records_only_advance_the_offset() {
        let mut store = TopicStore::new();
        store.apply(RecordRef {
            offset: 0,
            key: None,
            value: Some(b"x"),
            content_type: None,
            batch: None,
        });
        assert_eq!(store.stats().keys, 0);
        assert_eq!(store.applied_offset(), 1);
    }

    #[test]
    fn deleting_an_absent_key_is_harmless() {
        let mut store = TopicStore::new();
        assert!(store.apply(delete(0, "nothing").borrowed()));
        assert_eq!(store.stats().keys, 0);
    }

    #[test]
    fn content_types_are_kept_and_shared() {
        let mut store = TopicStore::new();
        for offset in 0..3 {
            store.apply(RecordRef {
                content_type: Some("application/json"),
                ..put(offset, &format!("k{offset}"), "{}").borrowed()
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
            store.apply(put(i as i64, key, "v").borrowed());
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
            store.apply(put(i as i64, key, "v").borrowed());
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
            store.apply(put(i as i64, key, "v").borrowed());
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
        store.apply(put(0, "a", "0123456789").borrowed());
        store.apply(put(1, "b", "0123456789").borrowed());
        let page = store.scan(&KeyRange::default(), 10, 5);
        assert_eq!(keys(&page), ["a"]);
        assert!(page.more);
    }

    #[test]
    fn inverted_or_empty_ranges_are_empty_not_a_panic() {
        let mut store = TopicStore::new();
        store.apply(put(0, "m", "v").borrowed());
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
        store.apply(put(0, "a", "0").borrowed());
        // Offset 1 (someone else's) is not applied yet: 2 and 3 wait.
        assert_eq!(
            store.apply_own([put(2, "b", "2").written(), put(3, "c", "3").written()]),
            0
        );
        assert_eq!(store.get(b"b"), None);
        assert_eq!(store.applied_offset(), 1);
        store.apply(put(1, "x", "1").borrowed());
        assert_eq!(store.apply_own_ready(), 2);
        assert_eq!(store.applied_offset(), 4);
        assert_eq!(store.get(b"c").expect("applied").offset, 3);
        // The replay delivering them later changes nothing.
        assert!(!store.apply(put(2, "b", "2").borrowed()));
        assert!(!store.apply(put(3, "c", "3").borrowed()));
        // Own writes the replay already applied are dropped.
        assert_eq!(store.apply_own([put(1, "x", "1").written()]), 0);
        assert!(store.own.is_empty());
    }

    #[test]
    fn content_types_past_the_interned_ones_are_kept_per_entry() {
        let mut store = TopicStore::new();
        let types: Vec<String> = (0..MAX_INTERNED_CONTENT_TYPES + 10)
            .map(|i| format!("application/x-{i}"))
            .collect();
        for (i, content_type) in types.iter().enumerate() {
            store.apply(RecordRef {
                content_type: Some(content_type),
                ..put(i as i64, &format!("k{i}"), "v").borrowed()
            });
        }
        assert_eq!(store.content_type_names.len(), MAX_INTERNED_CONTENT_TYPES);
        for (i, content_type) in types.iter().enumerate() {
            let value = store.get(format!("k{i}").as_bytes()).expect("present");
            assert_eq!(&*value.content_type, content_type.as_str());
        }
        // An interned type written again is still shared.
        let offset = types.len() as i64;
        store.apply(RecordRef {
            content_type: Some(&types[3]),
            ..put(offset, "again", "v").borrowed()
        });
        let again = store.get(b"again").expect("present").content_type;
        assert!(Arc::ptr_eq(
            &again,
            &store.get(b"k3").expect("present").content_type
        ));
    }

    /// What [`TopicStore`] must behave like: a plain map from key to value, content type and
    /// offset.
    #[derive(Default)]
    struct Model {
        map: BTreeMap<Vec<u8>, (Vec<u8>, String, i64)>,
        applied_offset: i64,
    }

    impl Model {
        fn apply(&mut self, record: &Record) -> bool {
            if record.offset < self.applied_offset {
                return false;
            }
            self.applied_offset = record.offset + 1;
            if let Some(key) = &record.key {
                match &record.value {
                    None => {
                        self.map.remove(key);
                    }
                    Some(value) => {
                        let content_type = record
                            .content_type
                            .clone()
                            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into());
                        self.map
                            .insert(key.clone(), (value.clone(), content_type, record.offset));
                    }
                }
            }
            true
        }

        fn value(&self, key: &[u8]) -> Option<(Vec<u8>, String, i64)> {
            self.map.get(key).cloned()
        }

        fn scan(&self, range: &KeyRange, limit: usize, max_bytes: usize) -> (Vec<Vec<u8>>, bool) {
            let mut matching = self.map.iter().filter(|(key, _)| {
                key.starts_with(&range.prefix)
                    && range.start.as_ref().is_none_or(|start| *key >= start)
                    && range.end.as_ref().is_none_or(|end| *key < end)
                    && range.after.as_ref().is_none_or(|after| *key > after)
            });
            let (mut keys, mut bytes) = (Vec::new(), 0);
            for (key, (value, _, _)) in matching.by_ref() {
                keys.push(key.clone());
                bytes += key.len() + value.len();
                if keys.len() >= limit || bytes >= max_bytes {
                    break;
                }
            }
            (keys, matching.next().is_some())
        }
    }

    fn small_key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            8 => proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), Just(0xff)], 0..4),
            1 => proptest::collection::vec(Just(b'a'), 120..140),
        ]
    }

    fn record_strategy() -> impl Strategy<Value = (i64, Record)> {
        let content_type = prop_oneof![
            Just(None),
            Just(Some(DEFAULT_CONTENT_TYPE.to_owned())),
            Just(Some("application/json".to_owned())),
            Just(Some("text/plain".to_owned())),
        ];
        (
            prop_oneof![8 => 0i64..3, 1 => -3i64..0, 1 => Just(1i64 << 30)],
            proptest::option::weighted(0.95, small_key()),
            proptest::option::weighted(0.7, proptest::collection::vec(any::<u8>(), 0..200)),
            content_type,
        )
            .prop_map(|(step, key, value, content_type)| {
                (
                    step,
                    Record {
                        offset: 0,
                        key,
                        value,
                        content_type,
                    },
                )
            })
    }

    fn range_strategy() -> impl Strategy<Value = KeyRange> {
        (
            proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 0..2),
            proptest::option::of(small_key()),
            proptest::option::of(small_key()),
            proptest::option::of(small_key()),
        )
            .prop_map(|(prefix, start, end, after)| KeyRange {
                prefix,
                start,
                end,
                after,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn behaves_like_a_plain_map(
            records in proptest::collection::vec(record_strategy(), 0..120),
            ranges in proptest::collection::vec((range_strategy(), 1usize..6, 1usize..400), 0..8),
        ) {
            let mut store = TopicStore::new();
            let mut model = Model::default();
            let mut offset = 0;
            for (step, mut record) in records {
                offset = (offset + step).max(0);
                record.offset = offset;
                prop_assert_eq!(store.apply(record.borrowed()), model.apply(&record));
                if let Some(key) = &record.key {
                    let got = store
                        .get(key)
                        .map(|v| (v.bytes, v.content_type.to_string(), v.offset));
                    prop_assert_eq!(got, model.value(key));
                }
            }
            let bytes = model.map.iter().map(|(k, (v, _, _))| (k.len() + v.len()) as u64).sum();
            prop_assert_eq!(
                store.stats(),
                StoreStats {
                    keys: model.map.len() as u64,
                    bytes,
                    applied_offset: model.applied_offset,
                }
            );
            for (key, value) in &model.map {
                let got = store.get(key).map(|v| (v.bytes, v.content_type.to_string(), v.offset));
                prop_assert_eq!(got.as_ref(), Some(value));
            }
            for (range, limit, max_bytes) in ranges {
                let page = store.scan(&range, limit, max_bytes);
                let (keys, more) = model.scan(&range, limit, max_bytes);
                let got: Vec<Vec<u8>> = page.items.iter().map(|(k, _)| k.clone()).collect();
                prop_assert_eq!(&got, &keys, "{:?}", range);
                prop_assert_eq!(page.more, more, "{:?}", range);
                for (key, value) in &page.items {
                    let expected = model.value(key);
                    prop_assert_eq!(
                        Some((value.bytes.clone(), value.content_type.to_string(), value.offset)),
                        expected
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn waiters_wake_when_their_offset_is_applied() {
        let store = Arc::new(SharedStore::new());
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.wait_applied(1, Duration::from_secs(5)).await })
        };
        store.apply_all([put(0, "a", "1").borrowed()]);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        store.apply_all([put(1, "b", "2").borrowed()]);
        assert_eq!(waiter.await.expect("joins"), Ok(()));
        assert_eq!(
            store.wait_applied(7, Duration::from_millis(10)).await,
            Err(NotAppliedInTime)
        );
    }
}
