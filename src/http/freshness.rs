//! Headers on reads that tell how fresh the replica's data is: reads are served from memory
//! even while the broker is away, so clients can see how stale they may be.

use axum::http::{HeaderMap, HeaderValue};

use crate::log::BrokerStatus;
use crate::topic::Topic;

/// Records of the topic this replica knows of but has not applied yet.
pub const LAG_HEADER: &str = "x-kv-lag";

/// Every record of the topic below this offset is applied here: a read here reflects at least
/// the writes that answered with a lower offset.
pub const APPLIED_OFFSET_HEADER: &str = "x-kv-applied-offset";

/// Present while the broker is unreachable: seconds since it last answered. The data read may
/// miss writes made in that time.
pub const STALE_HEADER: &str = "x-kv-stale-seconds";

/// Adds the freshness headers for a read of `topic` made at `applied_offset`.
pub fn add_freshness_headers(
    headers: &mut HeaderMap,
    topic: &Topic,
    applied_offset: i64,
    broker: &BrokerStatus,
) {
    if let Some(lag) = topic.lag() {
        headers.insert(LAG_HEADER, HeaderValue::from(lag));
    }
    headers.insert(APPLIED_OFFSET_HEADER, HeaderValue::from(applied_offset));
    if let Some(Some(unreachable)) = broker.unreachable_for() {
        headers.insert(STALE_HEADER, HeaderValue::from(unreachable.as_secs()));
    }
}
