//! The records kvstore writes and applies: plain Kafka records (key, value, a `content-type`
//! header), with nothing of rdkafka in them.
//!
//! A write builds [`Record`]s and hands them to the log; the broker's acknowledgement gives
//! each its offset. The store applies records as [`RecordRef`]s: borrowed from a Kafka
//! message by the replay, or from this replica's own acknowledged [`Record`] ([`Record::at`]).

/// A record as a write produces it. A `None` value is a tombstone: it deletes the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key.
    pub key: Vec<u8>,
    /// The value; `None` writes a tombstone.
    pub value: Option<Vec<u8>>,
    /// The value's content type, written as the `content-type` header.
    pub content_type: Option<String>,
}

impl Record {
    /// A put of `value` under `key`.
    pub fn put(key: Vec<u8>, value: Vec<u8>, content_type: Option<String>) -> Record {
        Record {
            key,
            value: Some(value),
            content_type,
        }
    }

    /// A tombstone for `key`.
    pub fn delete(key: Vec<u8>) -> Record {
        Record {
            key,
            value: None,
            content_type: None,
        }
    }

    /// The record as the log holds it at `offset`.
    pub fn at(&self, offset: i64) -> RecordRef<'_> {
        RecordRef {
            offset,
            key: Some(&self.key),
            value: self.value.as_deref(),
            content_type: self.content_type.as_deref(),
        }
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
}
