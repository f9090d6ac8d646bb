//! How many replicas of each written topic's partition are in sync, against the topic's
//! `min.insync.replicas`, as the cluster's metadata said at the last probe.
//!
//! With `acks=all`, a leader with fewer in-sync replicas than `min.insync.replicas` refuses
//! every record (`NOT_ENOUGH_REPLICAS`), and librdkafka retries such a record until its
//! timeout: a write would hang for the whole `write_timeout` and then answer that it may have
//! been written. Knowing the shortfall, the writer refuses at once with a 503 instead, having
//! written nothing. The metadata can be stale by up to one probe interval either way; a write
//! let through then meets the broker's own check.

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::metadata::Metadata;

use crate::log::Shortfall;

#[derive(Debug, Clone, Copy, Default)]
struct Replicas {
    /// In-sync replicas of partition 0 at the last probe; `None` before one saw the topic.
    in_sync: Option<usize>,
    /// The topic's `min.insync.replicas`; `None` until it has been looked up.
    required: Option<usize>,
}

/// The topics this service writes to, and their replicas. A std lock, held only to read or
/// update the map, never across `.await`.
#[derive(Debug, Default)]
pub struct InSyncReplicas {
    topics: Mutex<HashMap<String, Replicas>>,
}

impl InSyncReplicas {
    /// The shortfall of `topic`'s partition, if the last probe saw one. A topic not seen
    /// before is followed from now on and has none until a probe says otherwise.
    pub fn shortfall(&self, topic: &str) -> Option<Shortfall> {
        let mut topics = self.lock();
        let replicas = match topics.get(topic) {
            Some(replicas) => *replicas,
            None => {
                topics.insert(topic.to_owned(), Replicas::default());
                return None;
            }
        };
        match (replicas.in_sync, replicas.required) {
            (Some(in_sync), Some(required)) if in_sync < required => {
                Some(Shortfall { in_sync, required })
            }
            _ => None,
        }
    }

    /// Takes the in-sync replicas of the followed topics from a metadata answer.
    pub fn update(&self, metadata: &Metadata) {
        let mut topics = self.lock();
        for topic in metadata.topics() {
            if let Some(replicas) = topics.get_mut(topic.name())
                && let Some(partition) = topic.partitions().iter().find(|p| p.id() == 0)
            {
                replicas.in_sync = Some(partition.isr().len());
            }
        }
    }

    /// The followed topics whose `min.insync.replicas` is not known yet.
    pub fn unknown_requirements(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, replicas)| replicas.required.is_none())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Records `topic`'s `min.insync.replicas`.
    pub fn set_required(&self, topic: &str, required: usize) {
        if let Some(replicas) = self.lock().get_mut(topic) {
            replicas.required = Some(required);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Replicas>> {
        // The map holds plain numbers: a panic elsewhere cannot leave it inconsistent.
        self.topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortfall_needs_both_counts_and_fewer_in_sync_than_required() {
        let replicas = InSyncReplicas::default();
        assert_eq!(replicas.shortfall("t"), None);
        assert_eq!(replicas.unknown_requirements(), ["t"]);
        replicas.set_required("t", 2);
        assert!(replicas.unknown_requirements().is_empty());
        // No probe has seen the partition yet.
        assert_eq!(replicas.shortfall("t"), None);
        replicas.lock().get_mut("t").expect("followed").in_sync = Some(1);
        assert_eq!(
            replicas.shortfall("t"),
            Some(Shortfall {
                in_sync: 1,
                required: 2
            })
        );
        replicas.lock().get_mut("t").expect("followed").in_sync = Some(2);
        assert_eq!(replicas.shortfall("t"), None);
        // Topics nobody wrote to are not followed.
        replicas.set_required("other", 3);
        assert_eq!(replicas.shortfall("other"), None);
        assert_eq!(replicas.unknown_requirements(), ["other"]);
    }
}
