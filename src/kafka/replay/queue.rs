//! Partition 0 of a topic read in batches straight from librdkafka: the partition's own queue
//! ([`PartitionQueue`]), the messages taken from it ([`MessageBatch`]) and the replay's view of
//! one of them ([`RawMessage`]), borrowed from librdkafka's buffers, never copied.
//!
//! Unsafe because rust-rdkafka does not wrap `rd_kafka_consume_batch_queue`: these types call
//! librdkafka's C API directly and hold its raw pointers, and what keeps those valid is how the
//! types are used, which each `SAFETY` comment states. The queue must go before the consumer
//! it was split from, and a message is destroyed only by [`MessageBatch::clear`] (or drop),
//! which no [`RawMessage`] can outlive.

use std::ffi::{CStr, c_char, c_void};
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::RDKafkaErrorCode;

use crate::kafka::KafkaContext;
use crate::record::{BATCH_HEADER, BatchMark, CONTENT_TYPE_HEADER, RecordRef};

/// Partition 0 of a topic as a queue of its own, split from its consumer's queue, read in
/// batches.
///
/// rust-rdkafka polls one message at a time, each a queue look-up with its own deadline and
/// a reference-counted event, which cost the replay as much as applying the record did; one
/// `rd_kafka_consume_batch_queue` call takes everything that is queued at once.
pub(super) struct PartitionQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
}

// SAFETY: librdkafka queues may be used from any thread.
unsafe impl Send for PartitionQueue {}

impl PartitionQueue {
    /// Splits partition 0 of `topic` off `consumer`'s queue. Done before the partition is
    /// assigned, no message of it reaches the consumer's queue. The queue must be dropped
    /// before the consumer.
    pub(super) fn split(
        consumer: &BaseConsumer<KafkaContext>,
        topic: &CStr,
    ) -> Option<PartitionQueue> {
        // SAFETY: the client is valid while `consumer` lives; the topic name is NUL-terminated
        // and only read during the call.
        let queue = unsafe {
            rdsys::rd_kafka_queue_get_partition(consumer.client().native_ptr(), topic.as_ptr(), 0)
        };
        let queue = NonNull::new(queue)?;
        // SAFETY: `queue` was just returned by librdkafka; forwarding to nothing keeps the
        // partition's messages in it, also once the partition is assigned.
        unsafe { rdsys::rd_kafka_queue_forward(queue.as_ptr(), std::ptr::null_mut()) };
        Some(PartitionQueue { queue })
    }

    /// Waits up to `timeout` for a message, then takes whatever else is queued, until `batch`
    /// is full. `batch` must be empty.
    pub(super) fn consume(&self, timeout: Duration, batch: &mut MessageBatch) {
        debug_assert!(batch.messages.is_empty());
        let capacity = batch.messages.capacity();
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let spare = batch.messages.spare_capacity_mut();
        // SAFETY: librdkafka writes at most the given number of message pointers into the
        // spare capacity, and returns how many (or -1 on error, then none).
        let taken = unsafe {
            let out = spare.as_mut_ptr().cast::<*mut rdsys::rd_kafka_message_t>();
            // One message or the timeout; then, without waiting, the rest of what is queued.
            match rdsys::rd_kafka_consume_batch_queue(self.queue.as_ptr(), timeout_ms, out, 1) {
                1 => {
                    let more = rdsys::rd_kafka_consume_batch_queue(
                        self.queue.as_ptr(),
                        0,
                        out.add(1),
                        capacity - 1,
                    );
                    1 + usize::try_from(more).unwrap_or(0)
                }
                _ => 0,
            }
        };
        // SAFETY: the first `taken` pointers were initialised by librdkafka above.
        unsafe { batch.messages.set_len(taken) };
    }
}

impl Drop for PartitionQueue {
    fn drop(&mut self) {
        // SAFETY: the queue came from `rd_kafka_queue_get_partition` and is destroyed once;
        // `Replay` drops it before the consumer.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// Messages taken from a [`PartitionQueue`], owned until [`MessageBatch::clear`] or drop.
pub(super) struct MessageBatch {
    /// Non-null messages from `rd_kafka_consume_batch_queue`, each destroyed once.
    messages: Vec<*mut rdsys::rd_kafka_message_t>,
}

// SAFETY: librdkafka messages may be read and destroyed from any thread.
unsafe impl Send for MessageBatch {}

impl MessageBatch {
    pub(super) fn with_capacity(capacity: usize) -> MessageBatch {
        MessageBatch {
            messages: Vec::with_capacity(capacity.max(1)),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = RawMessage<'_>> {
        self.messages.iter().map(|&message| RawMessage {
            // SAFETY: the batch owns the message until `clear`, which needs `&mut self`.
            message: unsafe { &*message },
        })
    }

    /// Destroys the messages.
    pub(super) fn clear(&mut self) {
        for message in self.messages.drain(..) {
            // SAFETY: each message is destroyed once, and nothing borrows it any more.
            unsafe { rdsys::rd_kafka_message_destroy(message) };
        }
    }
}

impl Drop for MessageBatch {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One message of a [`MessageBatch`].
#[derive(Clone, Copy)]
pub(super) struct RawMessage<'a> {
    message: &'a rdsys::rd_kafka_message_t,
}

impl<'a> RawMessage<'a> {
    /// The message's error (such as the end of the partition), if it carries one.
    pub(super) fn error(self) -> Option<RDKafkaErrorCode> {
        let code = self.message.err;
        (code != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| code.into())
    }

    /// The message's offset; for the end of the partition, the consumer's position there.
    pub(super) fn offset(self) -> i64 {
        self.message.offset
    }

    /// librdkafka's description of the message's error.
    pub(super) fn error_string(self) -> String {
        // SAFETY: librdkafka returns a NUL-terminated string that lives as long as the message.
        unsafe { CStr::from_ptr(rdsys::rd_kafka_message_errstr(self.message)) }
            .to_string_lossy()
            .into_owned()
    }

    fn bytes(pointer: *mut c_void, len: usize) -> Option<&'a [u8]> {
        // SAFETY: librdkafka's key and payload are `len` readable bytes, or null, and live
        // as long as the message.
        (!pointer.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(pointer as *const u8, len) })
    }

    /// The store's view of the message: key, value (`None` for a tombstone), content type and
    /// batch mark.
    pub(super) fn record(self) -> RecordRef<'a> {
        let (content_type, batch) = self.headers();
        RecordRef {
            offset: self.message.offset,
            key: Self::bytes(self.message.key, self.message.key_len),
            value: Self::bytes(self.message.payload, self.message.len),
            content_type,
            batch,
        }
    }

    /// The content-type header, if it is one that can be sent back as an HTTP header value,
    /// and the batch mark, if the record has a valid one.
    fn headers(self) -> (Option<&'a str>, Option<BatchMark>) {
        let (mut content_type, mut batch) = (None, None);
        let mut headers = std::ptr::null_mut();
        // SAFETY: librdkafka parses the headers into a list owned by the message.
        let found = unsafe { rdsys::rd_kafka_message_headers(self.message, &mut headers) };
        if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return (content_type, batch);
        }
        let mut index = 0;
        loop {
            let (mut name, mut value, mut size): (*const c_char, *const c_void, usize) =
                (std::ptr::null(), std::ptr::null(), 0);
            // SAFETY: the list lives as long as the message; librdkafka writes the three
            // out-parameters, pointing into the list, or reports that `index` is past the end.
            let code = unsafe {
                rdsys::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size)
            };
            if code != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return (content_type, batch);
            }
            index += 1;
            // SAFETY: header names are NUL-terminated strings in the list.
            let name = unsafe { CStr::from_ptr(name) }.to_bytes();
            let value = Self::bytes(value.cast_mut(), size);
            if content_type.is_none() && name.eq_ignore_ascii_case(CONTENT_TYPE_HEADER.as_bytes()) {
                content_type = value
                    .and_then(|v| std::str::from_utf8(v).ok())
                    // Only what can be sent back as an HTTP header value.
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| (0x20..0x7f).contains(&b)));
            } else if batch.is_none() && name == BATCH_HEADER.as_bytes() {
                batch = value.and_then(BatchMark::parse);
            }
        }
    }
}
