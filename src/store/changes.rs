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
//! # What counts as kept
//!
//! The log promises that every change after its earliest position is in it. Offsets that
//! carry no record the store sees are of three kinds: transaction markers, aborted records,
//! and records the log cleaner removed because a later record of the same key superseded
//! them (or, after `delete.retention.ms`, tombstones). Only the last would make a watcher
//! miss a change, and the cleaner works only on the log's older segments: once the replica
//! has caught up (reached the log's end, or applied the end its first fetch saw; see
//! [`crate::topic::ReplaySink::caught_up`]) it reads records about as they are written, and
//! it trusts every gap. While it replays the history it cannot tell the kinds apart, so any gap starts
//! the log afresh after it ([`ChangeLog::skip_to`]). A replica that restarts thus keeps, for
//! clients to resume from, the history since the last gap of its replay: all of it, for a
//! topic without transactions that the cleaner has not compacted lately.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::{DEFAULT_CONTENT_TYPE, SharedStore, TopicStore};
use crate::config::WatchConfig;

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

impl From<&WatchConfig> for Retention {
    /// `watch.retain_changes` and `watch.retain_bytes`.
    fn from(watch: &WatchConfig) -> Self {
        Retention {
            changes: watch.retain_changes,
            bytes: watch.retain_bytes,
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention::from(&WatchConfig::default())
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

/// The ring of recent changes of one topic; empty, holding every change from offset 0 on.
#[derive(Debug, Default)]
pub struct ChangeLog {
    changes: VecDeque<Arc<Change>>,
    bytes: usize,
    /// Every change at or after this offset is in `changes`.
    floor: i64,
    /// Whether offsets without a record are known not to hide a change (see the module).
    trust_gaps: bool,
    retention: Retention,
}

impl ChangeLog {
    /// Keeps `retention` of the changes from now on.
    pub fn set_retention(&mut self, retention: Retention) {
        self.retention = retention;
    }

    /// From now on, offsets without a record hide no change: the replica has caught up with
    /// the log's end (see the module).
    pub fn trust_gaps(&mut self) {
        self.trust_gaps = true;
    }

    /// The store's applied offset jumped to `next_offset` over offsets without a record; if
    /// those may have been compacted, nothing before them can be vouched for.
    pub fn skip_to(&mut self, next_offset: i64) {
        if !self.trust_gaps && next_offset > self.floor {
            self.changes.clear();
            self.bytes = 0;
            self.floor = next_offset;
        }
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
    /// Keeps `retention` of the recent changes.
    pub fn set_change_retention(&self, retention: Retention) {
        self.write().changes.set_retention(retention);
    }

    /// The replica has caught up with the log: gaps in offsets from now on hide no change.
    pub fn trust_gaps(&self) {
        self.write().changes.trust_gaps();
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

    /// The earliest position from which every later change is kept.
    pub fn earliest_position(&self) -> i64 {
        self.read().changes.earliest_position()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(offsets: &[i64], retention: Retention) -> ChangeLog {
        let mut log = ChangeLog::default();
        log.set_retention(retention);
        log.trust_gaps();
        for &offset in offsets {
            log.record(offset, b"k", Some(b"v"), Arc::from("text/plain"));
        }
        log
    }

    fn offsets(page: &ChangePage) -> Vec<i64> {
        page.changes.iter().map(|c| c.offset).collect()
    }

    #[test]
    fn gaps_restart_the_log_until_they_are_trusted() {
        let mut log = ChangeLog::default();
        log.record(0, b"a", Some(b"0"), Arc::from("text/plain"));
        assert_eq!(log.earliest_position(), -1);
        // Offsets 1 and 2 carry nothing: perhaps compacted away.
        log.skip_to(3);
        log.record(3, b"a", Some(b"3"), Arc::from("text/plain"));
        assert_eq!(log.earliest_position(), 2);
        assert!(log.after(0, 3, usize::MAX).is_err());
        assert_eq!(offsets(&log.after(2, 3, usize::MAX).expect("kept")), [3]);
        log.trust_gaps();
        log.skip_to(6);
        log.record(6, b"a", Some(b"6"), Arc::from("text/plain"));
        assert_eq!(offsets(&log.after(2, 6, usize::MAX).expect("kept")), [3, 6]);
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
