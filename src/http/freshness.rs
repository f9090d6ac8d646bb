//! Headers on reads that tell how fresh the replica's data is: reads are served from memory
//! even while the broker is away, so clients can see how stale they may be.

use axum::http::{HeaderMap, HeaderValue};

use crate::log::BrokerStatus;
use crate::topic::Topic;

/// Records of the topic this replica knows of but has not applied yet.
pub const LAG_HEADER: &str = "x-kv-lag";

/// Present while the broker is unreachable: seconds since it last answered. The data read may
/// miss writes made in that time.
pub const STALE_HEADER: &str = "x-kv-stale-seconds";

/// Adds the freshness headers for a read of `topic`.
pub fn add_freshness_headers(headers: &mut HeaderMap, topic: &Topic, broker: &BrokerStatus) {
    if let Some(lag) = topic.lag() {
        headers.insert(LAG_HEADER, HeaderValue::from(lag));
    }
    if let Some(Some(unreachable)) = broker.unreachable_for() {
        headers.insert(STALE_HEADER, HeaderValue::from(unreachable.as_secs()));
    }
}
