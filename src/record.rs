//! The records kvstore writes and applies: plain Kafka records (key, value, a `content-type`
//! header), with nothing of rdkafka in them.
//!
//! A write builds [`Record`]s and hands them to the log; the broker's acknowledgement gives
//! each its offset. The store applies records as [`RecordRef`]s: borrowed from a Kafka
//! message by the replay, or from this replica's own acknowledged [`Record`] ([`Record::at`]).
//!
//! The records of an atomic batch carry a [`BatchMark`] (the `kvstore-batch` header), so that
//! a replica applies them together: [`incomplete_tail`] tells the replay which records to hold
//! back until the rest of their batch has arrived.

/// A record as a write produces it. A `None` value is a tombstone: it deletes the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key.
    pub key: Vec<u8>,
    /// The value; `None` writes a tombstone.
    pub value: Option<Vec<u8>>,
    /// The value's content type, written as the `content-type` header.
    pub content_type: Option<String>,
    /// Set on each record of an atomic batch, written as the `kvstore-batch` header.
    pub batch: Option<BatchMark>,
}

impl Record {
    /// A put of `value` under `key`.
    pub fn put(key: Vec<u8>, value: Vec<u8>, content_type: Option<String>) -> Record {
        Record {
            key,
            value: Some(value),
            content_type,
            batch: None,
        }
    }

    /// A tombstone for `key`.
    pub fn delete(key: Vec<u8>) -> Record {
        Record {
            key,
            value: None,
            content_type: None,
            batch: None,
        }
    }

    /// The record as the log holds it at `offset`.
    pub fn at(&self, offset: i64) -> RecordRef<'_> {
        RecordRef {
            offset,
            key: Some(&self.key),
            value: self.value.as_deref(),
            content_type: self.content_type.as_deref(),
            batch: self.batch,
        }
    }
}

/// A record of a topic's log, owned: what the replay keeps of the records it holds back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    content_type: Option<String>,
    batch: Option<BatchMark>,
}

impl OwnedRecord {
    /// A copy of `record`.
    pub fn of(record: &RecordRef<'_>) -> OwnedRecord {
        OwnedRecord {
            offset: record.offset,
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.map(<[u8]>::to_vec),
            content_type: record.content_type.map(str::to_owned),
            batch: record.batch,
        }
    }

    /// The record, borrowed.
    pub fn borrowed(&self) -> RecordRef<'_> {
        RecordRef {
            offset: self.offset,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            content_type: self.content_type.as_deref(),
            batch: self.batch,
        }
    }
}

/// Marks `records` as one atomic batch: each carries the batch's `id`, its place and the
/// batch's size.
pub fn mark_batch(records: &mut [Record], id: u64) {
    let count = u32::try_from(records.len()).unwrap_or(u32::MAX);
    for (index, record) in records.iter_mut().enumerate() {
        record.batch = Some(BatchMark {
            id,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            count,
        });
    }
}

/// One record of a topic's log, borrowed from wherever it was read (a Kafka message, a
/// [`Record`]): the store copies what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record's offset in its partition.
    pub offset: i64,
    /// The key; records without one (other producers may write them) advance the offset and
    /// change nothing.
    pub key: Option<&'a [u8]>,
    /// The value; `None` is a tombstone that deletes the key.
    pub value: Option<&'a [u8]>,
    /// The value's content type, from the record's headers.
    pub content_type: Option<&'a str>,
    /// The record's place in an atomic batch, from its `kvstore-batch` header.
    pub batch: Option<BatchMark>,
}

/// The record header that carries a value's content type (plain `content-type`, so that other
/// Kafka tools read and write it too).
pub const CONTENT_TYPE_HEADER: &str = "content-type";

/// The record header that marks a record as part of an atomic batch.
pub const BATCH_HEADER: &str = "kvstore-batch";

/// A record's place in an atomic batch: which batch, which of its records, of how many.
///
/// Written as `<id>/<index>/<count>` (the id in 16 hex digits). The index and count are of the
/// batch's records in this record's partition, so that a batch spanning partitions can carry
/// the same id in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMark {
    /// Tells batches apart; random, the same for every record of one batch.
    pub id: u64,
    /// The record's place in the batch, from 0.
    pub index: u32,
    /// How many records the batch has.
    pub count: u32,
}

impl BatchMark {
    /// The header value.
    pub fn encode(&self) -> String {
        format!("{:016x}/{}/{}", self.id, self.index, self.count)
    }

    /// Reads a header value; `None` if it is not one [`BatchMark::encode`] writes.
    pub fn parse(value: &[u8]) -> Option<BatchMark> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.split('/');
        let id = u64::from_str_radix(parts.next()?, 16).ok()?;
        let index = parts.next()?.parse().ok()?;
        let count = parts.next()?.parse().ok()?;
        (parts.next().is_none() && index < count).then_some(BatchMark { id, index, count })
    }

    /// Whether this is the batch's last record.
    pub fn is_last(&self) -> bool {
        self.index + 1 >= self.count
    }
}

/// How many records at the end of `records` belong to an atomic batch whose last record is
/// not among them: the replay holds those back until the rest arrives, so that no reader sees
/// part of a batch.
///
/// The writer makes a batch's records contiguous in the log, so they are the trailing records
/// sharing the last one's batch id. The log cleaner may remove some of a batch's records (a
/// later write superseded them); a batch cut short that way is applied as soon as a record of
/// something else, or the end of the partition, follows it.
pub fn incomplete_tail(records: &[RecordRef<'_>]) -> usize {
    let Some(last) = records.last().and_then(|record| record.batch) else {
        return 0;
    };
    if last.is_last() {
        return 0;
    }
    records
        .iter()
        .rev()
        .take_while(|record| record.batch.is_some_and(|mark| mark.id == last.id))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(offset: i64, mark: Option<(u64, u32, u32)>) -> RecordRef<'static> {
        RecordRef {
            offset,
            key: Some(b"k"),
            value: Some(b"v"),
            content_type: None,
            batch: mark.map(|(id, index, count)| BatchMark { id, index, count }),
        }
    }

    #[test]
    fn batch_marks_round_trip_and_reject_what_they_do_not_write() {
        let mark = BatchMark {
            id: 0xfeed,
            index: 2,
            count: 3,
        };
        assert_eq!(mark.encode(), "000000000000feed/2/3");
        assert_eq!(BatchMark::parse(mark.encode().as_bytes()), Some(mark));
        for bad in ["", "x/0/1", "1/1/1", "1/0", "1/0/1/2", "1/-1/2", "1/0/x"] {
            assert_eq!(BatchMark::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn the_unfinished_batch_at_the_end_is_held_back() {
        let a = Some((1, 0, 3));
        let records = [marked(0, None), marked(1, a), marked(2, Some((1, 1, 3)))];
        assert_eq!(incomplete_tail(&records), 2);
        let complete = [records[1], records[2], marked(3, Some((1, 2, 3)))];
        assert_eq!(incomplete_tail(&complete), 0);
        assert_eq!(incomplete_tail(&records[..1]), 0);
        assert_eq!(incomplete_tail(&[]), 0);
        // Another batch after one cut short by the cleaner: only the new one waits.
        let cut = [marked(1, a), marked(4, Some((2, 0, 2)))];
        assert_eq!(incomplete_tail(&cut), 1);
    }
}
