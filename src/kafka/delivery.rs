//! What the service's producers share, the idempotent one of plain writes ([`super::producer`])
//! and the transactional ones (`transactions`): a record goes to librdkafka as [`send`] hands
//! it over, its outcome comes back through the producer's [`ProducerEvents`] to the [`Reply`]
//! it was sent with, on the thread a [`Poller`] runs, and [`classify`] says what a failure
//! means for the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use futures::channel::oneshot;
use rdkafka::Message as _;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};

use super::KafkaContext;
use crate::log::ProduceError;
use crate::record::{BATCH_HEADER, CONTENT_TYPE_HEADER, Record};

/// How long the acknowledgement thread waits for events before checking whether to stop.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Where a record's outcome goes: its offset, or why it was not (or may not have been)
/// written.
pub(super) type Reply = oneshot::Sender<Result<i64, ProduceError>>;

/// Hands `record` to `producer` for `topic`'s partition 0, its outcome to go to `reply`. If
/// librdkafka refuses it: why, and `reply` back.
pub(super) fn send<C>(
    producer: &BaseProducer<C>,
    topic: &str,
    record: &Record,
    reply: Reply,
) -> Result<(), (ProduceError, Reply)>
where
    C: ProducerContext<DeliveryOpaque = Box<Reply>>,
{
    let mut base = BaseRecord::<[u8], [u8], Box<Reply>>::with_opaque_to(topic, Box::new(reply))
        .partition(0)
        .key(record.key.as_slice());
    if let Some(value) = &record.value {
        base = base.payload(value.as_slice());
    }
    if let Some(headers) = headers(record) {
        base = base.headers(headers);
    }
    producer
        .send(base)
        .map_err(|(error, base)| (classify(&error), *base.delivery_opaque))
}

/// The headers `record` is written with: its content type and batch mark, if it has either.
fn headers(record: &Record) -> Option<OwnedHeaders> {
    if record.content_type.is_none() && record.batch.is_none() {
        return None;
    }
    let mut headers = OwnedHeaders::new();
    if let Some(content_type) = record.content_type.as_deref() {
        headers = headers.insert(Header {
            key: CONTENT_TYPE_HEADER,
            value: Some(content_type),
        });
    }
    if let Some(mark) = record.batch {
        headers = headers.insert(Header {
            key: BATCH_HEADER,
            value: Some(&mark.encode()),
        });
    }
    Some(headers)
}

/// What a producer does once a record's outcome has gone to its [`Reply`].
pub(super) trait AfterDelivery: Send + Sync + 'static {
    /// A record of `topic` has had its outcome.
    fn delivered(&self, topic: &str);
}

/// A transactional producer does nothing more.
impl AfterDelivery for () {
    fn delivered(&self, _topic: &str) {}
}

/// A producer's context: logs and errors as every client's, each record's outcome sent to its
/// [`Reply`], and then what the producer does after a delivery (`after`).
pub(super) struct ProducerEvents<A> {
    context: KafkaContext,
    /// What the producer does after each delivery, and the state it does it with.
    pub(super) after: A,
}

impl<A> ProducerEvents<A> {
    pub(super) fn new(context: KafkaContext, after: A) -> ProducerEvents<A> {
        ProducerEvents { context, after }
    }
}

impl<A: AfterDelivery> ClientContext for ProducerEvents<A> {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.context.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.context.error(error, reason);
    }
}

impl<A: AfterDelivery> ProducerContext for ProducerEvents<A> {
    type DeliveryOpaque = Box<Reply>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Box<Reply>) {
        let (outcome, topic) = match result {
            Ok(message) => (Ok(message.offset()), message.topic()),
            Err((error, message)) => (Err(classify(error)), message.topic()),
        };
        // The writer may have stopped waiting (its request timed out).
        let _ = reply.send(outcome);
        self.after.delivered(topic);
    }
}

/// The thread that serves a producer's events (acknowledgements, logs, errors) until it is
/// stopped or dropped.
pub(super) struct Poller {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Poller {
    /// Starts polling `client` on a thread called `name`.
    pub(super) fn start<C: ProducerContext + 'static>(
        client: Arc<BaseProducer<C>>,
        name: &str,
    ) -> KafkaResult<Poller> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        client.poll(POLL_INTERVAL);
                    }
                }
            })
            .map_err(|error| KafkaError::ClientCreation(error.to_string()))?;
        Ok(Poller {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it: no event of the producer is served after this.
    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a failure to write a record means for the client.
pub(super) fn classify(error: &KafkaError) -> ProduceError {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => ProduceError::QueueFull,
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge,
        ) => ProduceError::TooLarge(error.to_string()),
        // Purged before it was sent: not written.
        Some(RDKafkaErrorCode::PurgeQueue) => {
            ProduceError::NotWritten("the broker went down before the write was sent".into())
        }
        // The broker may have written the record and its answer was lost.
        Some(
            RDKafkaErrorCode::PurgeInflight
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut,
        ) => ProduceError::Unknown(error.to_string()),
        // The idempotent producer retries everything retriable until the message times out,
        // so any other error is one the broker answered with: nothing was written.
        _ => ProduceError::NotWritten(error.to_string()),
    }
}
