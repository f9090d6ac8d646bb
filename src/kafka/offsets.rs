//! A topic's stable end (Kafka's last stable offset), asked of the broker for reads that must
//! reflect every write acknowledged before they arrived (`consistency=strong`).
//!
//! Concurrent reads share questions: a read waits for the next answer to a question asked
//! after it arrived, so a thousand strong reads at once cost a few round trips, not a
//! thousand, and none is answered from a question asked before it came.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaResult;

use super::{Kafka, KafkaContext, client_config};
use crate::config::Config;
use crate::log::Unreachable;

/// The last answer for a topic and when its question was asked, behind a lock held while
/// asking.
type LastAnswer = Arc<tokio::sync::Mutex<Option<(Instant, i64)>>>;

/// The client that asks, and the last answer per topic.
pub(super) struct StableEnds {
    client: Arc<BaseConsumer<KafkaContext>>,
    topics: Mutex<HashMap<String, LastAnswer>>,
}

impl StableEnds {
    pub(super) fn new(config: &Config, context: KafkaContext) -> KafkaResult<StableEnds> {
        let client = client_config(
            config,
            [
                // Required by librdkafka; never joined, nothing committed.
                ("group.id", "kvstore".to_owned()),
                // ListOffsets then answers the stable end, not the high watermark:
                // a record past an open transaction is not visible yet anyway.
                ("isolation.level", "read_committed".to_owned()),
            ],
        )?
        .create_with_context(context)?;
        Ok(StableEnds {
            client: Arc::new(client),
            topics: Mutex::default(),
        })
    }

    fn topic(&self, topic: &str) -> LastAnswer {
        self.topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(topic.to_owned())
            .or_default()
            .clone()
    }
}

impl Kafka {
    /// `topic`'s stable end, from a question asked after this call began.
    pub async fn ask_stable_end(&self, topic: &str) -> Result<i64, Unreachable> {
        let arrived = Instant::now();
        let stable_ends = &self.inner.stable_ends;
        let last = stable_ends.topic(topic);
        let mut last = last.lock().await;
        if let Some((asked, stable_end)) = *last
            && asked >= arrived
        {
            return Ok(stable_end);
        }
        let asked = Instant::now();
        let client = stable_ends.client.clone();
        let name = topic.to_owned();
        let timeout = self.config().kafka.admin_timeout;
        // librdkafka's query blocks its thread until the broker answers.
        let answer =
            tokio::task::spawn_blocking(move || client.fetch_watermarks(&name, 0, timeout))
                .await
                .map_err(|error| Unreachable(format!("offset query aborted: {error}")))?;
        let (_low, stable_end) = answer.map_err(|error| {
            self.inner.status.request_check();
            Unreachable(format!("the broker did not tell the topic's end: {error}"))
        })?;
        *last = Some((asked, stable_end));
        Ok(stable_end)
    }
}
