//! Reads that must reflect a write: `min_offset` (or the `X-Kv-Min-Offset` header), the offset a
//! write answered with, and `consistency=strong`, every write acknowledged before the read
//! arrived. The replica waits until it has applied that far, up to `wait`, then answers from
//! memory as usual; past the wait it answers 503, never stale data.

use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde::Deserialize;
use utoipa::IntoParams;

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

/// How much a read must reflect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConsistencyLevel {
    /// What this replica has applied.
    Local,
    /// Every write acknowledged before the read arrived.
    Strong,
}

/// A `wait`: up to 9 digits and a unit, as the OpenAPI document's pattern says.
fn parse_wait(text: &str) -> Option<Duration> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() || number.len() > 9 {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    Some(match unit {
        "ns" => Duration::from_nanos(n),
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return None,
    })
}

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
        let wait = match params.wait.as_deref() {
            None => settings.default_wait,
            Some(text) => parse_wait(text)
                .ok_or_else(|| {
                    ApiError::InvalidQuery(format!(
                        "wait must be a number and a unit (ns, us, ms, s, m or h), such as \
                         500ms or 2s, not {text:?}"
                    ))
                })?
                .min(settings.max_wait),
        };
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

    #[test]
    fn waits_are_a_number_and_a_unit() {
        assert_eq!(parse_wait("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_wait("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_wait("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "0", "ms", "2 s", "1.5s", "2sec", "1234567890s", "-1s"] {
            assert_eq!(parse_wait(bad), None, "{bad}");
        }
    }
}
