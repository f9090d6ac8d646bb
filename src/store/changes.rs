//! The change log of one topic: the most recent changes the store applied, in offset order, for
//! watchers to read after their position (see [`crate::watch`]).
//!
//! A bounded ring (by count and by bytes, `watch.retain_changes` and `watch.retain_bytes`)
//! kept inside the [`TopicStore`](super::TopicStore), filled under the store's write lock by
//! the one method every applied record passes through, so its order is the store's and a
//! change is in the log before the applied offset that includes it is published. Nothing is
//! sent from here: watchers copy `Arc`s out under the read lock and do their work outside it,
//! so the replay and the writers never wait on a watcher.
//!
//! Recording starts when the topic first catches up with its log ([`ChangeLog::start`]):
//! records replayed from the log's history may have lost predecessors to compaction, so they
//! are not offered as changes, and a replay from offset 0 costs nothing extra.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::{DEFAULT_CONTENT_TYPE, KeyRange, ScanPage, SharedStore, TopicStore};

/// What a change costs the log beyond its key and value (the `Arc`, the struct, the ring's
/// slot), counted against `watch.retain_bytes` so that many tiny changes are bounded too.
const CHANGE_OVERHEAD_BYTES: usize = 128;

/// One applied put or delete.
#[derive(Debug)]
pub struct Change {
    /// The offset of the record: its version, the same on every replica.
    pub offset: i64,
    /// The key.
    pub key: Box<[u8]>,
    /// The value; `None` for a delete.
    pub value: Option<Box<[u8]>>,
    /// The value's content type ([`super::DEFAULT_CONTENT_TYPE`] when the record named none).
    pub content_type: Arc<str>,
    /// The change as watchers send it, made once by the first that sends it and shared by
    /// the others.
    pub encoded: OnceLock<Bytes>,
}

impl Change {
    fn cost(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, |v| v.len()) + CHANGE_OVERHEAD_BYTES
    }
}

/// How much of its recent history a topic keeps for watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most changes kept.
    pub changes: usize,
    /// Most bytes of keys and values kept (plus a fixed cost per change).
    pub bytes: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            changes: 100_000,
            bytes: 32 * 1024 * 1024,
        }
    }
}

/// Changes read out of the log for one watcher.
#[derive(Debug, Clone, Default)]
pub struct ChangePage {
    /// Changes after the asked position, in offset order.
    pub changes: Vec<Arc<Change>>,
    /// The offset up to which the page is complete: every change at or below it, after the
    /// asked position, is in `changes`. The last applied offset when the page reached the
    /// end of what is applied.
    pub through: i64,
}

/// The log no longer holds (or never held) the changes just after a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "changes after offset {position} are no longer kept; the earliest position kept is {earliest}"
)]
pub struct Expired {
    /// The position asked for.
    pub position: i64,
    /// The earliest position from which every change is still kept.
    pub earliest: i64,
}

/// The ring of recent changes of one topic.
#[derive(Debug)]
pub struct ChangeLog {
    changes: VecDeque<Arc<Change>>,
    bytes: usize,
    /// Every change at or after this offset is in `changes`; `i64::MAX` until recording
    /// starts.
    floor: i64,
    retention: Retention,
}

impl Default for ChangeLog {
    fn default() -> Self {
        ChangeLog {
            changes: VecDeque::new(),
            bytes: 0,
            floor: i64::MAX,
            retention: Retention::default(),
        }
    }
}

impl ChangeLog {
    /// Starts recording: every change at or after `next_offset` will be kept, within
    /// `retention`. Does nothing if recording has started already.
    pub fn start(&mut self, next_offset: i64, retention: Retention) {
        if self.is_recording() {
            return;
        }
        self.floor = next_offset;
        self.retention = retention;
    }

    /// Whether changes are being recorded.
    pub fn is_recording(&self) -> bool {
        self.floor != i64::MAX
    }

    /// Records a change applied at `offset` (after every one recorded before it), then drops
    /// the oldest changes past the retention. The newest change is kept even alone over the
    /// byte bound.
    pub fn record(
        &mut self,
        offset: i64,
        key: &[u8],
        value: Option<&[u8]>,
        content_type: Arc<str>,
    ) {
        let change = Arc::new(Change {
            offset,
            key: key.into(),
            value: value.map(Into::into),
            content_type,
            encoded: OnceLock::new(),
        });
        self.bytes += change.cost();
        self.changes.push_back(change);
        while self.changes.len() > 1
            && (self.changes.len() > self.retention.changes || self.bytes > self.retention.bytes)
        {
            if let Some(oldest) = self.changes.pop_front() {
                self.bytes -= oldest.cost();
                self.floor = oldest.offset + 1;
            }
        }
    }

    /// The earliest position a watcher can continue from: the offset before the oldest one
    /// whose change may no longer be kept.
    pub fn earliest_position(&self) -> i64 {
        self.floor.saturating_sub(1)
    }

    /// The changes after `position` and at or below `until` (the last applied offset, or
    /// less), as many as fit in `max_bytes` (at least one when any is there).
    pub fn after(
        &self,
        position: i64,
        until: i64,
        max_bytes: usize,
    ) -> Result<ChangePage, Expired> {
        if position < self.earliest_position() {
            return Err(Expired {
                position,
                earliest: self.earliest_position(),
            });
        }
        let start = self.changes.partition_point(|c| c.offset <= position);
        let mut page = ChangePage {
            changes: Vec::new(),
            through: until.max(position),
        };
        let mut bytes = 0;
        for change in self.changes.range(start..) {
            if change.offset > until {
                break;
            }
            if !page.changes.is_empty() && bytes + change.cost() > max_bytes {
                page.through = page.changes.last().map_or(position, |c| c.offset);
                break;
            }
            bytes += change.cost();
            page.changes.push(change.clone());
        }
        Ok(page)
    }

    /// Changes kept.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether no change is kept.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl TopicStore {
    /// Records an applied put or delete; see [`TopicStore::apply`].
    pub(super) fn record_change(
        &mut self,
        offset: i64,
        key: &[u8],
        value: Option<&[u8]>,
        content_type: Option<&str>,
    ) {
        let content_type = match content_type.filter(|ct| *ct != DEFAULT_CONTENT_TYPE) {
            Some(name) if value.is_some() => self
                .content_types
                .get(name)
                .and_then(|&index| self.content_type_names.get(index as usize))
                .cloned()
                .unwrap_or_else(|| Arc::from(name)),
            _ => self.default_content_type.clone(),
        };
        self.changes.record(offset, key, value, content_type);
    }
}

/// What watchers read: the change log, with the applied offset read under the same lock.
impl SharedStore {
    /// Starts keeping the changes applied from now on (once; later calls change nothing).
    pub fn start_change_log(&self, retention: Retention) {
        let mut store = self.write();
        let next = store.applied_offset;
        store.changes.start(next, retention);
    }

    /// The changes after `position` that are applied, up to `max_bytes` of them; see
    /// [`ChangeLog::after`].
    pub fn changes_after(&self, position: i64, max_bytes: usize) -> Result<ChangePage, Expired> {
        self.changes_until(position, i64::MAX, max_bytes)
    }

    /// The changes after `position` and at or below `until` that are applied.
    pub fn changes_until(
        &self,
        position: i64,
        until: i64,
        max_bytes: usize,
    ) -> Result<ChangePage, Expired> {
        let store = self.read();
        let last_applied = store.applied_offset - 1;
        store
            .changes
            .after(position, until.min(last_applied), max_bytes)
    }

    /// The offset of the last record applied (-1 before the first), read under the lock that
    /// the change log is written under.
    pub fn last_applied(&self) -> i64 {
        self.read().applied_offset - 1
    }

    /// The earliest position from which every later change is kept.
    pub fn earliest_position(&self) -> i64 {
        self.read().changes.earliest_position()
    }

    /// One page of `range` and the last offset applied when it was read, under one lock: the
    /// page is the state as of that offset.
    pub fn scan_at(&self, range: &KeyRange, limit: usize, max_bytes: usize) -> (ScanPage, i64) {
        let store = self.read();
        (
            store.scan(range, limit, max_bytes),
            store.applied_offset - 1,
        )
    }

    /// A watch of the applied offset (the offset after the last applied record), which
    /// changes after the changes it covers are in the log.
    pub fn subscribe_applied(&self) -> tokio::sync::watch::Receiver<i64> {
        self.applied_offset.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(offsets: &[i64], retention: Retention) -> ChangeLog {
        let mut log = ChangeLog::default();
        log.start(offsets.first().copied().unwrap_or(0), retention);
        for &offset in offsets {
            log.record(offset, b"k", Some(b"v"), Arc::from("text/plain"));
        }
        log
    }

    fn offsets(page: &ChangePage) -> Vec<i64> {
        page.changes.iter().map(|c| c.offset).collect()
    }

    #[test]
    fn nothing_is_served_before_recording_starts() {
        let log = ChangeLog::default();
        assert!(log.after(5, 10, usize::MAX).is_err());
    }

    #[test]
    fn pages_follow_the_position_and_stop_at_until() {
        let log = log_of(&[3, 4, 7, 9], Retention::default());
        let page = log.after(2, 9, usize::MAX).expect("kept");
        assert_eq!((offsets(&page), page.through), (vec![3, 4, 7, 9], 9));
        let page = log.after(4, 8, usize::MAX).expect("kept");
        assert_eq!((offsets(&page), page.through), (vec![7], 8));
        let page = log.after(9, 12, usize::MAX).expect("kept");
        assert_eq!((offsets(&page), page.through), (vec![], 12));
    }

    #[test]
    fn a_byte_budget_ends_the_page_at_its_last_change() {
        let log = log_of(&[0, 1, 2, 3], Retention::default());
        let page = log.after(-1, 3, 1).expect("kept");
        assert_eq!((offsets(&page), page.through), (vec![0], 0));
        let page = log
            .after(0, 3, 2 * (CHANGE_OVERHEAD_BYTES + 2))
            .expect("kept");
        assert_eq!((offsets(&page), page.through), (vec![1, 2], 2));
    }

    #[test]
    fn dropped_changes_make_older_positions_expire() {
        let retention = Retention {
            changes: 2,
            bytes: usize::MAX,
        };
        let log = log_of(&[10, 11, 15, 16], retention);
        assert_eq!(log.len(), 2);
        assert_eq!(log.earliest_position(), 11);
        assert_eq!(
            log.after(10, 16, usize::MAX).expect_err("dropped"),
            Expired {
                position: 10,
                earliest: 11
            }
        );
        // 12 to 14 carried no change: continuing from any of them misses nothing.
        let page = log.after(13, 16, usize::MAX).expect("kept");
        assert_eq!(offsets(&page), [15, 16]);
        let page = log.after(11, 16, usize::MAX).expect("kept");
        assert_eq!(offsets(&page), [15, 16]);
    }

    #[test]
    fn the_byte_bound_keeps_the_newest_change_alone() {
        let retention = Retention {
            changes: 100,
            bytes: 10,
        };
        let log = log_of(&[0, 1, 2], retention);
        assert_eq!(log.len(), 1);
        assert_eq!(log.earliest_position(), 1);
    }
}
