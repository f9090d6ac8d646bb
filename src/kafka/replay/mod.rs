//! The replay loop: one consumer per topic, assigned partition 0 from the beginning (no
//! consumer group, nothing committed), handing records strictly in offset order, in bulk, to
//! a [`ReplaySink`] (the topic), on a thread of its own.
//!
//! The partition's messages are taken from a queue of their own in batches
//! (`rd_kafka_consume_batch_queue`, which rust-rdkafka does not wrap; see `queue`) and
//! applied straight from librdkafka's buffers; the consumer's own queue, polled through
//! rust-rdkafka as usual, keeps serving its logs and errors.

mod queue;

use std::ffi::{CStr, CString};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Kafka, KafkaContext, client_config};
use crate::config::Config;
use crate::metrics;
use crate::record::{OwnedRecord, incomplete_tail};
use crate::topic::{ReplaySink, TopicInfo};
use queue::{MessageBatch, PartitionQueue};

/// How long one poll waits for a message before checking for shutdown.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Most messages taken from the partition's queue per round. A round applies their records
/// under one lock, after those of an atomic batch held back from earlier rounds, so it may
/// apply more than this; bounding it bounds how long readers can be held up.
const MAX_CONSUME_BATCH: usize = 4096;

/// How often a long replay logs its progress.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// How long after the last request that waited for it promptly (a conditional write, a strong
/// read) the replay goes back to fetching with `kafka.fetch_wait_max`: a short fetch wait costs
/// the broker a fetch per wait while the topic is idle.
const CLOSE_FOLLOWING_LINGER: Duration = Duration::from_secs(10);

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
        // librdkafka's default, said here because the store depends on it: records of
        // aborted transactions are never applied, and nothing past an open transaction is
        // applied before it ends.
        ("isolation.level", "read_committed".into()),
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
    /// Starts replaying `topic` from offset 0 into it on a thread of its own, until `cancel`.
    pub(super) fn replay_into(
        &self,
        topic: Arc<dyn ReplaySink>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> KafkaResult<()> {
        let topic_cstr = CString::new(topic.topic_name())
            .map_err(|_| KafkaError::ClientCreation("topic name contains a NUL byte".into()))?;
        // Offset 0 rather than Offset::Beginning: the latter makes librdkafka look the start up
        // first, and it waits 500 ms to do so while the partition's leader is not yet known. If
        // the log no longer starts at 0, `auto.offset.reset=earliest` moves to its start.
        let (queue, consumer) = self.open_replay(topic.topic_name(), &topic_cstr, 0, None)?;
        tracing::info!(
            topic = topic.topic_name(),
            "replaying topic from the beginning"
        );
        let replay = Replay {
            queue,
            consumer,
            topic,
            topic_cstr,
            cancel,
            kafka: self.clone(),
        };
        tracker.spawn_blocking(move || replay.run());
        Ok(())
    }

    /// A consumer of `topic`'s partition 0 from `offset`, and the partition's queue split off
    /// it; with `fetch_wait` instead of `kafka.fetch_wait_max` if given.
    fn open_replay(
        &self,
        topic: &str,
        topic_cstr: &CStr,
        offset: i64,
        fetch_wait: Option<Duration>,
    ) -> KafkaResult<(PartitionQueue, BaseConsumer<KafkaContext>)> {
        let mut settings = settings(self.config());
        if let Some(wait) = fetch_wait {
            settings.push(("fetch.wait.max.ms", wait.as_millis().to_string()));
        }
        let consumer: BaseConsumer<KafkaContext> = client_config(self.config(), settings)?
            .create_with_context(self.context("consumer"))?;
        // Split before assigning: the assignment then leaves the partition's queue alone.
        let queue = PartitionQueue::split(&consumer, topic_cstr).ok_or_else(|| {
            KafkaError::ClientCreation("no queue for the topic's partition".into())
        })?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, Offset::Offset(offset))?;
        consumer.assign(&assignment)?;
        Ok((queue, consumer))
    }
}

struct Replay {
    // Declared before the consumer, so that it is dropped first.
    queue: PartitionQueue,
    consumer: BaseConsumer<KafkaContext>,
    topic: Arc<dyn ReplaySink>,
    topic_cstr: CString,
    cancel: CancellationToken,
    /// For opening the consumer again with a shorter fetch wait.
    kafka: Kafka,
}

/// Marks the topic failed if the loop ends other than by shutdown (a panic included), so a
/// dead loop takes readiness down instead of silently serving stale data.
struct FailOnDrop<'a> {
    topic: &'a dyn ReplaySink,
    armed: bool,
}

impl Drop for FailOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            tracing::error!(
                topic = self.topic.topic_name(),
                "replay loop stopped unexpectedly"
            );
            self.topic
                .failed("the replay loop stopped unexpectedly".into());
        }
    }
}

fn publish_progress(info: &TopicInfo) {
    metrics::topic_progress(&info.name, info.stats, info.end_offset, info.lag);
}

impl Replay {
    /// Replaces the consumer with one that fetches with `consistency.fetch_wait_max` if
    /// `closely`, else with `kafka.fetch_wait_max`, from `offset` on. Keeps the old one if the
    /// new one cannot be made; returns whether it was replaced.
    fn refetch(&mut self, offset: i64, closely: bool) -> bool {
        let config = self.kafka.config();
        let wait = closely.then_some(config.consistency.fetch_wait_max);
        let name = self.topic.topic_name().to_owned();
        match self
            .kafka
            .open_replay(&name, &self.topic_cstr, offset, wait)
        {
            Ok((queue, consumer)) => {
                // The old queue goes before its consumer.
                self.queue = queue;
                self.consumer = consumer;
                tracing::debug!(topic = %name, offset, closely, "replay fetching with another wait");
                true
            }
            Err(error) => {
                tracing::warn!(topic = %name, %error, "could not change the replay's fetch wait");
                false
            }
        }
    }

    fn run(mut self) {
        let topic = self.topic.clone();
        let mut guard = FailOnDrop {
            topic: &*topic,
            armed: true,
        };
        // Whether the shorter fetch wait of close following would be shorter at all, and
        // whether the consumer fetches with it now.
        let config = self.kafka.config();
        let can_follow_closely = config.consistency.fetch_wait_max < config.kafka.fetch_wait_max;
        let mut close = false;
        let name = self.topic.topic_name().to_owned();
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let mut last_error_log: Option<Instant> = None;
        let mut batch = MessageBatch::with_capacity(MAX_CONSUME_BATCH);
        let mut applied_total: u64 = 0;
        // Whether the topic has reached the end once (it is then ready).
        let mut ready = false;
        // The records of an atomic batch whose last record has not been fetched yet.
        let mut held: Vec<OwnedRecord> = Vec::new();
        while !self.cancel.is_cancelled() {
            let wanted = can_follow_closely
                && self
                    .topic
                    .followed_closely()
                    .is_some_and(|since| since < CLOSE_FOLLOWING_LINGER);
            if wanted != close {
                let resume = match held.first() {
                    Some(record) => record.borrowed().offset,
                    None => self.topic.info().stats.applied_offset,
                };
                if self.refetch(resume, wanted) {
                    held.clear();
                    close = wanted;
                }
            }
            let mut replay_error = |error: &dyn std::fmt::Display| {
                let quiet = last_error_log.is_some_and(|at| at.elapsed() < ERROR_LOG_INTERVAL);
                if !quiet {
                    tracing::warn!(topic = %name, %error, "error while replaying; retrying");
                    last_error_log = Some(Instant::now());
                }
                metrics::replay_error(&name);
            };
            // The consumer's own queue carries its logs (served inside `poll`) and errors, and,
            // the partition being split off before it was assigned, never a message of it.
            while let Some(event) = self.consumer.poll(Duration::ZERO) {
                match event {
                    Err(error) => replay_error(&error),
                    Ok(_message) => {
                        // Order can no longer be guaranteed: stop; the guard fails the topic.
                        tracing::error!(topic = %name, "a message arrived outside its queue");
                        return;
                    }
                }
            }
            self.queue.consume(POLL_TIMEOUT, &mut batch);
            // The consumer's position where it reached the end: every offset below it is
            // applied or holds nothing to apply (transaction markers, aborted or compacted
            // records), so the applied offset is the position, not the last record + 1.
            let mut end_position = None;
            let mut records = Vec::with_capacity(held.len() + batch.len());
            records.extend(held.iter().map(OwnedRecord::borrowed));
            for message in batch.iter() {
                match message.error() {
                    None => records.push(message.record()),
                    Some(RDKafkaErrorCode::PartitionEOF) => end_position = Some(message.offset()),
                    Some(code) => replay_error(&format_args!("{code}: {}", message.error_string())),
                }
            }
            // Hold back an atomic batch whose last record is still to come, so that readers
            // never see part of it. At the end of the partition nothing is to come: a
            // committed transaction lies wholly below the end a `read_committed` consumer
            // reaches, so what is missing of a batch there was removed by the log cleaner.
            let past_the_end = match (end_position, records.last()) {
                (Some(position), Some(last)) => position > last.offset,
                _ => false,
            };
            let hold = if past_the_end {
                0
            } else {
                incomplete_tail(&records)
            };
            let still_held: Vec<OwnedRecord> = records[records.len() - hold..]
                .iter()
                .map(OwnedRecord::of)
                .collect();
            records.truncate(records.len() - hold);
            let received = records.len();
            // Fault injection for tests: delay or break the replay (`FAILPOINTS=replay-apply=...`).
            #[cfg(feature = "failpoints")]
            fail::fail_point!("replay-apply", received > 0, |_| {});
            if received > 0 {
                let applied = self.topic.apply(records);
                applied_total += applied as u64;
                metrics::records_applied(&name, applied as u64);
                self.topic.left_end();
            }
            held = still_held;
            batch.clear();
            if let Some(end) = self.cached_end_offset() {
                self.topic.fetched_end_offset(end);
            }
            if end_position.is_some() && !ready {
                // The replay's buffers are free now: return them before the topic counts as
                // ready, so that it is measured without them.
                crate::memory::release_free_memory();
            }
            let reached_end = end_position.is_some_and(|position| self.topic.reached_end(position));
            if reached_end || (!ready && self.topic.caught_up()) {
                ready = true;
                let elapsed = started.elapsed();
                let rate = applied_total as f64 / elapsed.as_secs_f64().max(1e-9);
                tracing::info!(
                    topic = %name,
                    records = applied_total,
                    keys = self.topic.info().stats.keys,
                    seconds = elapsed.as_secs_f64(),
                    records_per_second = rate.round(),
                    "topic replayed; serving"
                );
                metrics::replay_finished(&name, elapsed);
            }
            // One look at the topic per round, and only when there is something to report.
            let changed = received > 0 || end_position.is_some();
            let progress_due = last_progress.elapsed() >= PROGRESS_INTERVAL;
            if changed || progress_due {
                let info = self.topic.info();
                if changed {
                    publish_progress(&info);
                }
                if progress_due && info.lag != Some(0) {
                    last_progress = Instant::now();
                    tracing::info!(
                        topic = %name,
                        applied_offset = info.stats.applied_offset,
                        end_offset = info.end_offset,
                        records = applied_total,
                        "replaying"
                    );
                    publish_progress(&info);
                }
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
