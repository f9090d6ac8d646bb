//! Reads that must reflect a write: `min_offset` (or the `X-Kv-Min-Offset` header), the offset a
//! write answered with, and `consistency=strong`, every write acknowledged before the read
//! arrived. The replica waits until it has applied that far, up to `wait`, then answers from
//! memory as usual; past the wait it answers 503, never stale data.

use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::http::{HeaderMap, Uri};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::WaitSyntax;
use crate::app::AppState;
use crate::error::ApiError;
use crate::metrics;
use crate::store::NotAppliedInTime;
use crate::topic::Topic;

/// The request header that may carry `min_offset`.
pub const MIN_OFFSET_HEADER: &str = "x-kv-min-offset";

/// How fresh a read must be.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Answer only once this replica has applied the record at this offset (a write's
    /// `offset`, or its `ETag` unquoted); also read from the `X-Kv-Min-Offset` header.
    #[param(minimum = 0)]
    pub min_offset: Option<i64>,
    /// `strong`: answer only once this replica has applied every write acknowledged before the
    /// read arrived, as the broker tells (one round trip to it). `local` (the default): answer
    /// from what this replica has applied.
    pub consistency: Option<ConsistencyLevel>,
    /// How long to wait for this replica to apply that far, such as `500ms` or `2s`: default
    /// `consistency.default_wait` (5s), at most `consistency.max_wait` (30s). Past it: 503
    /// `offset_not_applied`.
    #[param(pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h)$")]
    pub wait: Option<String>,
}

impl ReadParams {
    /// The read's `min_offset`, `consistency` and `wait` in `uri`'s query; other query
    /// parameters are ignored.
    pub fn from_uri(uri: &Uri) -> Result<ReadParams, ApiError> {
        Query::<ReadParams>::try_from_uri(uri)
            .map(|query| query.0)
            .map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))
    }
}

/// How much a read must reflect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConsistencyLevel {
    /// What this replica has applied.
    Local,
    /// Every write acknowledged before the read arrived.
    Strong,
}

/// A read's `wait`: up to 9 digits and a unit, as [`ReadParams`]' pattern says.
pub(super) const WAIT_SYNTAX: WaitSyntax = WaitSyntax {
    max_digits: Some(9),
    units: &["ns", "us", "ms", "s", "m", "h"],
};

/// What a read waits for before it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadConsistency {
    /// The offset that must be applied, if one was named.
    min_offset: Option<i64>,
    /// Whether to wait for the topic's last stable offset too.
    strong: bool,
    wait: Duration,
}

impl ReadConsistency {
    /// Reads `params` and the header; a malformed value is a 400.
    pub fn new(
        params: &ReadParams,
        headers: &HeaderMap,
        state: &AppState,
    ) -> Result<ReadConsistency, ApiError> {
        let settings = &state.config.consistency;
        let header = headers
            .get(MIN_OFFSET_HEADER)
            .map(|value| {
                value
                    .to_str()
                    .map_err(|_| ApiError::InvalidHeader("X-Kv-Min-Offset is not ASCII".into()))
            })
            .transpose()?;
        let offset = |text: &str, name: &str| {
            text.trim()
                .parse::<i64>()
                .ok()
                .filter(|offset| *offset >= 0)
                .ok_or_else(|| {
                    format!("{name} must be an offset (an integer, 0 or more), not {text:?}")
                })
        };
        let query_offset = params
            .min_offset
            .map(|offset| {
                (offset >= 0).then_some(offset).ok_or_else(|| {
                    ApiError::InvalidQuery(format!("min_offset must be 0 or more, not {offset}"))
                })
            })
            .transpose()?;
        let header_offset = header
            .map(|text| offset(text, "X-Kv-Min-Offset"))
            .transpose()
            .map_err(ApiError::InvalidHeader)?;
        let strong = params.consistency == Some(ConsistencyLevel::Strong);
        let wait = WAIT_SYNTAX.parse(params.wait.as_deref(), settings)?;
        Ok(ReadConsistency {
            min_offset: query_offset.max(header_offset),
            strong,
            wait,
        })
    }

    /// Waits until `topic` has been applied as far as asked, or answers why not.
    pub async fn wait_for(&self, state: &AppState, topic: &Topic) -> Result<(), ApiError> {
        if self.min_offset.is_none() && !self.strong {
            return Ok(());
        }
        let started = Instant::now();
        topic.follow_closely();
        // Everything below `wanted` must be applied.
        let mut wanted = self.min_offset.map_or(0, |offset| offset.saturating_add(1));
        if self.strong {
            // Bounded by `kafka.admin_timeout`, not by the read's `wait`: that is for this
            // replica to catch up, and however short it is, the question must be asked.
            let stable_end = state
                .log
                .stable_end(topic.name())
                .await
                .map_err(|error| ApiError::EndUnknown(error.to_string()))?;
            wanted = wanted.max(stable_end);
        }
        let remaining = self.wait.saturating_sub(started.elapsed());
        let waited = topic.store().wait_applied(wanted - 1, remaining).await;
        metrics::read_waited(started.elapsed());
        match waited {
            Ok(()) => Ok(()),
            Err(NotAppliedInTime) => Err(ApiError::NotYetApplied {
                wanted,
                applied: topic.store().applied_offset(),
                waited: started.elapsed(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsistencyConfig;

    #[test]
    fn waits_are_a_number_and_a_unit() {
        let settings = ConsistencyConfig::default();
        let max = settings.max_wait;
        let wait = |text| WAIT_SYNTAX.parse(Some(text), &settings).ok();
        assert_eq!(wait("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(wait("2s"), Some(Duration::from_secs(2)));
        assert_eq!(wait("7us"), Some(Duration::from_micros(7)));
        assert_eq!(wait("1h"), Some(max));
        for bad in ["", "0", "ms", "2 s", "1.5s", "2sec", "1234567890s", "-1s"] {
            assert_eq!(wait(bad), None, "{bad}");
        }
    }
}
