//! The replay loop: one consumer per topic, assigned partition 0 from the beginning (no
//! consumer group, nothing committed), applying records to the topic's store strictly in
//! offset order, in bulk, on a thread of its own.

use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{CONTENT_TYPE_HEADER, Kafka, KafkaContext, client_config};
use crate::config::Config;
use crate::metrics;
use crate::store::Record;
use crate::topics::Topic;

/// How long one poll waits for a message before checking for shutdown.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Most records applied under one lock; bounds how long readers can be held up.
const MAX_APPLY_BATCH: usize = 4096;

/// How often a long replay logs its progress.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// Errors logged at most this often per topic, so a broker outage does not flood the log.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The replay consumer's settings: read-only, manually assigned, told when it reaches the end.
/// Public so that `kvstore bench` measures its bare consumer with exactly these.
pub fn settings(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        // librdkafka requires a group id even for manual assignment; nothing is ever
        // committed to it and the group is never joined.
        ("group.id", "kvstore".into()),
        ("enable.auto.commit", "false".into()),
        ("enable.auto.offset.store", "false".into()),
        // Signals when the replay has caught up with the end of the partition.
        ("enable.partition.eof", "true".into()),
        ("auto.offset.reset", "earliest".into()),
        (
            "fetch.wait.max.ms",
            config.kafka.fetch_wait_max.as_millis().to_string(),
        ),
        // Once `queued.min.messages` wait locally, librdkafka pauses fetching for this long
        // (default 1 s) before checking again; the replay drains the queue much faster than
        // that, so a long pause idles it. Replaying 1M records: 6.2 s -> 1.5 s.
        ("fetch.queue.backoff.ms", "10".into()),
    ]
}

impl Kafka {
    /// Starts replaying `topic` from offset 0 on a thread of its own, until `cancel`.
    pub fn start_replay(
        &self,
        topic: Arc<Topic>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> KafkaResult<()> {
        let consumer: BaseConsumer<KafkaContext> =
            client_config(self.config(), settings(self.config()))
                .create_with_context(self.context("consumer"))?;
        let mut assignment = TopicPartitionList::new();
        // Offset 0 rather than Offset::Beginning: the latter makes librdkafka look the start up
        // first, and it waits 500 ms to do so while the partition's leader is not yet known. If
        // the log no longer starts at 0, `auto.offset.reset=earliest` moves to its start.
        assignment.add_partition_offset(topic.name(), 0, Offset::Offset(0))?;
        consumer.assign(&assignment)?;
        let topic_cstr = CString::new(topic.name())
            .map_err(|_| KafkaError::ClientCreation("topic name contains a NUL byte".into()))?;
        tracing::info!(topic = topic.name(), "replaying topic from the beginning");
        let replay = Replay {
            consumer,
            topic,
            topic_cstr,
            cancel,
        };
        tracker.spawn_blocking(move || replay.run());
        Ok(())
    }
}

struct Replay {
    consumer: BaseConsumer<KafkaContext>,
    topic: Arc<Topic>,
    topic_cstr: CString,
    cancel: CancellationToken,
}

/// Marks the topic failed if the loop ends other than by shutdown (a panic included), so a
/// dead loop takes readiness down instead of silently serving stale data.
struct FailOnDrop<'a> {
    topic: &'a Topic,
    armed: bool,
}

impl Drop for FailOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            tracing::error!(
                topic = self.topic.name(),
                "replay loop stopped unexpectedly"
            );
            self.topic
                .fail("the replay loop stopped unexpectedly".into());
        }
    }
}

impl Replay {
    fn run(self) {
        let mut guard = FailOnDrop {
            topic: &self.topic,
            armed: true,
        };
        let name = self.topic.name().to_owned();
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let mut last_error_log: Option<Instant> = None;
        let mut batch: Vec<Record> = Vec::with_capacity(MAX_APPLY_BATCH);
        let mut applied_total: u64 = 0;
        while !self.cancel.is_cancelled() {
            let mut reached_end = false;
            let mut next = self.consumer.poll(POLL_TIMEOUT);
            while let Some(item) = next.take() {
                match item {
                    Ok(message) => batch.push(to_record(&message)),
                    Err(KafkaError::PartitionEOF(_)) => {
                        reached_end = true;
                        break;
                    }
                    Err(error) => {
                        let quiet =
                            last_error_log.is_some_and(|at| at.elapsed() < ERROR_LOG_INTERVAL);
                        if !quiet {
                            tracing::warn!(topic = %name, %error, "error while replaying; retrying");
                            last_error_log = Some(Instant::now());
                        }
                        metrics::replay_error(&name);
                        break;
                    }
                }
                if batch.len() >= MAX_APPLY_BATCH {
                    break;
                }
                next = self.consumer.poll(Duration::ZERO);
            }
            let received = batch.len();
            // Fault injection for tests: delay or break the replay (`FAILPOINTS=replay-apply=...`).
            #[cfg(feature = "failpoints")]
            fail::fail_point!("replay-apply", received > 0, |_| {});
            if received > 0 {
                let applied = self
                    .topic
                    .store()
                    .apply_all(batch.iter().map(Record::borrowed));
                batch.clear();
                applied_total += applied as u64;
                metrics::records_applied(&name, applied as u64);
                self.topic.left_end();
            }
            if let Some(end) = self.cached_end_offset() {
                self.topic.set_end_offset(end);
            }
            if reached_end && self.topic.reached_end() {
                let elapsed = started.elapsed();
                let rate = applied_total as f64 / elapsed.as_secs_f64().max(1e-9);
                tracing::info!(
                    topic = %name,
                    records = applied_total,
                    keys = self.topic.store().stats().keys,
                    seconds = elapsed.as_secs_f64(),
                    records_per_second = rate.round(),
                    "topic replayed; serving"
                );
                metrics::replay_finished(&name, elapsed);
            }
            if received > 0 || reached_end {
                metrics::topic_progress(&self.topic);
            }
            if self.topic.lag() != Some(0) && last_progress.elapsed() >= PROGRESS_INTERVAL {
                last_progress = Instant::now();
                tracing::info!(
                    topic = %name,
                    applied_offset = self.topic.store().next_offset(),
                    end_offset = self.topic.end_offset(),
                    records = applied_total,
                    "replaying"
                );
                metrics::topic_progress(&self.topic);
            }
        }
        guard.armed = false;
        tracing::debug!(topic = %name, "replay loop stopped");
    }

    /// The partition's end offset from the last fetch response, without asking the broker.
    ///
    /// rust-rdkafka wraps only the ListOffsets-based query; the end offset carried by fetch
    /// responses is both free and what Kafka documents as the high watermark the consumer
    /// sees (and Tansu answers ListOffsets "latest" wrongly after multi-record batches).
    fn cached_end_offset(&self) -> Option<i64> {
        let (mut low, mut high) = (-1_i64, -1_i64);
        // SAFETY: the client pointer is valid while `self.consumer` lives, the topic name is a
        // NUL-terminated string that outlives the call, and librdkafka only writes the two
        // out-parameters.
        let code = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                self.topic_cstr.as_ptr(),
                0,
                &mut low,
                &mut high,
            )
        };
        (code == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high)
    }
}

/// The store's view of a message: key, value (`None` for a tombstone) and content type.
fn to_record(message: &BorrowedMessage<'_>) -> Record {
    let content_type = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(CONTENT_TYPE_HEADER))
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            // Only what can be sent back as an HTTP header value.
            .filter(|v| !v.is_empty() && v.bytes().all(|b| (0x20..0x7f).contains(&b)))
            .map(str::to_owned)
    });
    Record {
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        content_type,
    }
}
