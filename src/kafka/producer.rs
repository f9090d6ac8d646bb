//! Writing records: one idempotent producer shared by every topic, and per topic the records
//! it holds back while five are in flight.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use futures::channel::oneshot;
use rdkafka::error::KafkaResult;
use rdkafka::producer::{BaseProducer, Producer as _, PurgeConfig};

use super::delivery::{self, AfterDelivery, Poller, ProducerEvents, Reply};
use super::{Kafka, KafkaContext, client_config};
use crate::config::Config;
use crate::log::ProduceError;
use crate::record::Record;

/// Room for a record's framing and headers on top of its key and value.
const RECORD_OVERHEAD: usize = 64 * 1024;

/// How many bytes a record of this service may take: the largest key and value and
/// [`RECORD_OVERHEAD`]. The producer's `message.max.bytes` and a created topic's
/// `max.message.bytes`.
pub(super) fn max_record_bytes(config: &Config) -> usize {
    config.limits.max_value_bytes + config.limits.max_key_bytes + RECORD_OVERHEAD
}

/// The producer settings: idempotent with `acks=all`, so an acknowledged write is on every
/// in-sync replica exactly once and in order.
pub fn settings(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("enable.idempotence", "true".into()),
        ("acks", "all".into()),
        // Send at once: a single write should not wait for company. Under load, records
        // queued while a request is in flight still go out together.
        ("linger.ms", "0".into()),
        // Give up on a record when its request has no more time to wait for it.
        (
            "message.timeout.ms",
            config.write_timeout.as_millis().to_string(),
        ),
        ("message.max.bytes", max_record_bytes(config).to_string()),
    ]
}

/// Records of one topic handed to librdkafka and not yet acknowledged at which the producer
/// starts holding the topic's writes back. A write submitted while fewer are unacknowledged
/// and nothing is held is handed over whole, however many records it has; any other waits in
/// the topic's [`Window`] until an acknowledgement brings the count below this, and then every
/// held record is handed over at once. So more than this many can be in flight.
///
/// librdkafka's idempotent producer sends no further request for a partition while five of
/// its messages are in flight, and while messages wait for that with `linger.ms` past, its
/// broker thread polls its sockets without sleeping until an answer comes (librdkafka 2.12,
/// `rd_kafka_toppar_producer_serve`): under load that loop took more CPU than the rest of the
/// service. Holding the records back here instead costs no such loop, and they are handed
/// over by the thread that serves the acknowledgements, so no extra thread stands between an
/// answer and the next request. Handed over one by one, the first of them often leaves in a
/// request of its own before the rest are queued: more, smaller requests than librdkafka's own
/// queue would make.
const IN_FLIGHT_LIMIT: usize = 5;

/// Where a record's outcome arrives.
type Outcome = oneshot::Receiver<Result<i64, ProduceError>>;

/// The service's producer: a librdkafka producer, the thread that serves its
/// acknowledgements, and per topic the window of records held back (see [`IN_FLIGHT_LIMIT`]).
pub(super) struct RecordProducer {
    client: Arc<Client>,
    poller: Poller,
}

/// The librdkafka producer.
type Client = BaseProducer<ProducerEvents<Acknowledgements>>;

/// What the producer does with each acknowledgement once it is answered: count it in its
/// topic's window and hand held records over when there is room.
struct Acknowledgements {
    /// A window per topic with records unacknowledged or held: librdkafka's limit is per
    /// partition, and a topic has one.
    windows: Mutex<HashMap<String, Window>>,
    /// The producer, for handing held records over. Weak: the producer owns this context.
    producer: OnceLock<Weak<Client>>,
}

/// Records handed to librdkafka and not yet acknowledged, and those held back, in order.
#[derive(Default)]
struct Window {
    unacked: usize,
    held: VecDeque<Held>,
}

struct Held {
    record: Record,
    reply: Reply,
}

/// A producer with [`settings`].
pub(super) fn create(config: &Config, context: KafkaContext) -> KafkaResult<RecordProducer> {
    let acknowledgements = Acknowledgements {
        windows: Mutex::default(),
        producer: OnceLock::new(),
    };
    let client: Arc<Client> = Arc::new(
        client_config(config, settings(config))?
            .create_with_context(ProducerEvents::new(context, acknowledgements))?,
    );
    let _ = client.context().after.producer.set(Arc::downgrade(&client));
    let poller = Poller::start(client.clone(), "kvstore-producer")?;
    Ok(RecordProducer { client, poller })
}

impl RecordProducer {
    /// Queues `records` for `topic`'s partition 0, in order, behind every record queued
    /// before them; see [`Window::submit`].
    fn send(&self, topic: &str, records: &[Record]) -> (Vec<Outcome>, Option<ProduceError>) {
        let mut windows = self.client.context().after.windows();
        let window = match windows.get_mut(topic) {
            Some(window) => window,
            None => windows.entry(topic.to_owned()).or_default(),
        };
        window.submit(records, |record, reply| {
            delivery::send(&self.client, topic, record, reply)
        })
    }

    /// Fails every record not yet acknowledged: those never sent as not written, those sent
    /// as of unknown outcome.
    fn purge(&self) {
        self.client
            .context()
            .after
            .fail_held(&ProduceError::NotWritten(
                "the broker went down before the write was sent".into(),
            ));
        self.client.purge(PurgeConfig::default().queue().inflight());
    }
}

impl Drop for RecordProducer {
    fn drop(&mut self) {
        self.poller.stop();
        self.client
            .context()
            .after
            .fail_held(&ProduceError::NotWritten(
                "the service stopped before the write was sent".into(),
            ));
        // Dropping the client then purges what librdkafka still holds and serves the last
        // acknowledgements.
    }
}

impl Acknowledgements {
    fn windows(&self) -> MutexGuard<'_, HashMap<String, Window>> {
        // Held only to count and to hand records over, never across `.await`.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails every held record of every topic with `error`.
    fn fail_held(&self, error: &ProduceError) {
        for window in self.windows().values_mut() {
            window.fail_held(error);
        }
    }
}

impl AfterDelivery for Acknowledgements {
    fn delivered(&self, topic: &str) {
        let mut windows = self.windows();
        let Some(window) = windows.get_mut(topic) else {
            return;
        };
        if window.acknowledge() {
            // Upgrading fails only while the producer is being dropped; the drop fails the
            // held records itself.
            if let Some(producer) = self.producer.get().and_then(Weak::upgrade) {
                window.release(|record, reply| delivery::send(&producer, topic, record, reply));
            }
        }
        if window.is_idle() {
            windows.remove(topic);
        }
    }
}

impl Window {
    /// Hands `records` over with `enqueue`, all of them, if there is room and nothing is held
    /// before them; holds them all back otherwise, so that a batch is not cut at the limit.
    /// Returns a receiver for each record handed over or held, and the error that stopped the
    /// rest, if one did.
    fn submit(
        &mut self,
        records: &[Record],
        mut enqueue: impl FnMut(&Record, Reply) -> Result<(), (ProduceError, Reply)>,
    ) -> (Vec<Outcome>, Option<ProduceError>) {
        let hand_over = self.has_room();
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            let (reply, outcome) = oneshot::channel();
            if hand_over {
                if let Err((error, _)) = enqueue(record, reply) {
                    return (outcomes, Some(error));
                }
                self.unacked += 1;
            } else {
                self.held.push_back(Held {
                    record: record.clone(),
                    reply,
                });
            }
            outcomes.push(outcome);
        }
        (outcomes, None)
    }

    /// Counts one acknowledgement (or failure); returns whether held records may go now.
    fn acknowledge(&mut self) -> bool {
        self.unacked = self.unacked.saturating_sub(1);
        self.unacked < IN_FLIGHT_LIMIT && !self.held.is_empty()
    }

    /// Hands every held record over with `enqueue`, in order. If one cannot be queued, it and
    /// every record after it fail, so that nothing after a failed record is written.
    fn release(
        &mut self,
        mut enqueue: impl FnMut(&Record, Reply) -> Result<(), (ProduceError, Reply)>,
    ) {
        while let Some(held) = self.held.pop_front() {
            match enqueue(&held.record, held.reply) {
                Ok(()) => self.unacked += 1,
                Err((error, reply)) => {
                    let _ = reply.send(Err(error.clone()));
                    self.fail_held(&error);
                    return;
                }
            }
        }
    }

    /// Whether a write submitted now goes to librdkafka at once.
    fn has_room(&self) -> bool {
        self.unacked < IN_FLIGHT_LIMIT && self.held.is_empty()
    }

    /// Whether nothing is unacknowledged or held: the window can go.
    fn is_idle(&self) -> bool {
        self.unacked == 0 && self.held.is_empty()
    }

    /// Fails every held record with `error`; they were never handed over.
    fn fail_held(&mut self, error: &ProduceError) {
        for held in self.held.drain(..) {
            let _ = held.reply.send(Err(error.clone()));
        }
    }
}

impl Kafka {
    fn producer(&self) -> Arc<RecordProducer> {
        self.inner
            .producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the producer with a fresh one and fails everything the old one still holds:
    /// records not yet sent (not written: 503) and records sent but not acknowledged (outcome
    /// unknown: 504). Called when the broker is found down, so that writes in flight fail
    /// promptly instead of waiting out `write_timeout`, and so that the old producer does not
    /// resend its unacknowledged batches to a restarted broker: some Kafka-compatible brokers
    /// (Tansu 0.6 with SQLite storage) fail on such resends of an idempotent producer.
    pub fn reset_producer(&self) {
        let fresh = match create(self.config(), self.context("producer")) {
            Ok(producer) => Arc::new(producer),
            Err(error) => {
                tracing::error!(%error, "could not create a new producer; keeping the old one");
                return;
            }
        };
        let old = std::mem::replace(
            &mut *self
                .inner
                .producer
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        tracing::info!("broker down: failing the writes in flight and starting a new producer");
        // Purging and dropping wait on librdkafka's threads: keep that off the async workers.
        tokio::task::spawn_blocking(move || {
            old.purge();
            drop(old);
        });
    }

    /// Queues `records` for `topic`'s partition 0, in order; records queued one after another
    /// are written in that order. Returns a future per record queued, resolving to its offset
    /// or failing once `write_timeout` has passed without an acknowledgement, and the error
    /// that stopped the rest from being queued, if one did (those queued are still written).
    pub fn produce(
        &self,
        topic: &str,
        records: &[Record],
    ) -> (
        Vec<impl Future<Output = Result<i64, ProduceError>> + use<>>,
        Option<ProduceError>,
    ) {
        let (outcomes, failure) = self.producer().send(topic, records);
        let timeout = self.config().write_timeout;
        let deliveries = outcomes
            .into_iter()
            .map(|outcome| async move {
                match tokio::time::timeout(timeout, outcome).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_canceled)) => Err(ProduceError::Unknown(
                        "the producer shut down before the broker answered".into(),
                    )),
                    // librdkafka's `message.timeout.ms` starts only when a held record is
                    // handed over, so a record held behind slow acknowledgements is bounded
                    // here.
                    Err(_elapsed) => Err(ProduceError::Unknown(format!(
                        "no acknowledgement within {}",
                        humantime::format_duration(timeout)
                    ))),
                }
            })
            .collect();
        (deliveries, failure)
    }

    /// Waits up to `timeout` for queued records to be sent, at shutdown.
    pub fn flush(&self, timeout: std::time::Duration) {
        if let Err(error) = self.producer().client.flush(timeout) {
            tracing::warn!(%error, "producer flush did not complete");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window whose hand-overs are recorded instead of going to librdkafka.
    #[derive(Default)]
    struct Harness {
        window: Window,
        /// Keys handed over, in order.
        sent: Vec<String>,
        /// The replies of records handed over, kept as librdkafka would keep them.
        in_flight: Vec<Reply>,
        /// A key whose hand-over fails.
        refuse: Option<&'static str>,
    }

    impl Harness {
        fn hand_over(
            &mut self,
            record: &Record,
            reply: Reply,
        ) -> Result<(), (ProduceError, Reply)> {
            let key = String::from_utf8(record.key.clone()).expect("utf-8");
            if self.refuse == Some(key.as_str()) {
                return Err((ProduceError::QueueFull, reply));
            }
            self.sent.push(key);
            self.in_flight.push(reply);
            Ok(())
        }

        /// Submits one write of `keys`.
        fn try_submit(&mut self, keys: &[&str]) -> (Vec<Outcome>, Option<ProduceError>) {
            let records: Vec<Record> = keys
                .iter()
                .map(|key| Record {
                    key: key.as_bytes().to_vec(),
                    value: Some(b"v".to_vec()),
                    content_type: None,
                    batch: None,
                })
                .collect();
            let mut window = std::mem::take(&mut self.window);
            let submitted = window.submit(&records, |record, reply| self.hand_over(record, reply));
            self.window = window;
            submitted
        }

        fn submit(&mut self, keys: &[&str]) -> Vec<Outcome> {
            let (outcomes, failure) = self.try_submit(keys);
            assert!(failure.is_none());
            outcomes
        }

        fn release(&mut self) {
            let mut window = std::mem::take(&mut self.window);
            window.release(|record, reply| self.hand_over(record, reply));
            self.window = window;
        }
    }

    fn keys(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|key| key.to_string()).collect()
    }

    #[test]
    fn records_go_straight_up_to_the_limit_then_wait_and_leave_in_order() {
        let mut harness = Harness::default();
        for key in ["a", "b", "c", "d", "e", "f", "g"] {
            harness.submit(&[key]);
        }
        assert_eq!(harness.sent, keys(&["a", "b", "c", "d", "e"]));
        assert_eq!(harness.window.held.len(), 2);

        // Room again, but held records go first: a new one queues behind them.
        assert!(harness.window.acknowledge());
        harness.submit(&["h"]);
        assert_eq!(harness.sent.len(), 5);
        harness.release();
        assert_eq!(
            harness.sent,
            keys(&["a", "b", "c", "d", "e", "f", "g", "h"])
        );
        assert_eq!(harness.window.unacked, 7);
        assert!(harness.window.held.is_empty());
        // Nothing held: acknowledgements ask for no release.
        assert!(!harness.window.acknowledge());
    }

    #[test]
    fn the_records_of_one_write_stay_together() {
        let mut harness = Harness::default();
        harness.submit(&["a", "b", "c", "d"]);
        // Room for one more record: the whole write goes.
        harness.submit(&["e", "f", "g"]);
        assert_eq!(harness.sent, keys(&["a", "b", "c", "d", "e", "f", "g"]));
        // No room: the whole write waits.
        harness.submit(&["h", "i"]);
        assert_eq!(harness.sent.len(), 7);
        assert_eq!(harness.window.held.len(), 2);
    }

    #[test]
    fn a_failed_hand_over_stops_the_write_it_belongs_to() {
        let mut harness = Harness {
            refuse: Some("b"),
            ..Harness::default()
        };
        let (outcomes, failure) = harness.try_submit(&["a", "b", "c"]);
        assert_eq!(outcomes.len(), 1);
        assert!(matches!(failure, Some(ProduceError::QueueFull)));
        assert_eq!(harness.sent, keys(&["a"]));
        assert_eq!(harness.window.unacked, 1);
    }

    #[test]
    fn a_held_record_that_cannot_be_handed_over_fails_with_every_record_after_it() {
        let mut harness = Harness::default();
        harness.submit(&["a", "b", "c", "d", "e"]);
        let mut held = harness.submit(&["f", "g", "h"]);
        harness.refuse = Some("g");
        assert!(harness.window.acknowledge());
        harness.release();
        assert_eq!(harness.sent, keys(&["a", "b", "c", "d", "e", "f"]));
        assert_eq!(harness.window.unacked, 5);
        assert!(harness.window.held.is_empty());
        // "f" was handed over: its outcome comes from the broker later.
        assert!(matches!(held[0].try_recv(), Ok(None)));
        for outcome in &mut held[1..] {
            assert!(matches!(
                outcome.try_recv(),
                Ok(Some(Err(ProduceError::QueueFull)))
            ));
        }
    }

    #[test]
    fn failing_the_held_records_answers_each_and_keeps_those_in_flight() {
        let mut harness = Harness::default();
        let mut in_flight = harness.submit(&["a", "b", "c", "d", "e"]);
        let mut held = harness.submit(&["f", "g"]);
        harness
            .window
            .fail_held(&ProduceError::NotWritten("down".into()));
        assert!(harness.window.held.is_empty());
        assert_eq!(harness.window.unacked, 5);
        assert!(matches!(in_flight[4].try_recv(), Ok(None)));
        for outcome in &mut held {
            assert!(matches!(
                outcome.try_recv(),
                Ok(Some(Err(ProduceError::NotWritten(_))))
            ));
        }
    }
}
