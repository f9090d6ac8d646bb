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
use crate::store::WaitError;
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
    pub min_offset: Option<String>,
    /// `strong`: answer only once this replica has applied every write acknowledged before the
    /// read arrived, as the broker tells (one round trip to it). `local` (the default): answer
    /// from what this replica has applied.
    pub consistency: Option<String>,
    /// How long to wait for this replica to apply that far, such as `500ms` or `2s`: default
    /// `consistency.default_wait` (5s), at most `consistency.max_wait` (30s). Past it: 503
    /// `offset_not_applied`.
    pub wait: Option<String>,
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
            .as_deref()
            .map(|text| offset(text, "min_offset"))
            .transpose()
            .map_err(ApiError::InvalidQuery)?;
        let header_offset = header
            .map(|text| offset(text, "X-Kv-Min-Offset"))
            .transpose()
            .map_err(ApiError::InvalidHeader)?;
        let strong = match params.consistency.as_deref() {
            None | Some("local") => false,
            Some("strong") => true,
            Some(other) => {
                return Err(ApiError::InvalidQuery(format!(
                    "consistency must be strong or local, not {other:?}"
                )));
            }
        };
        let wait = match params.wait.as_deref() {
            None => settings.default_wait,
            Some(text) => humantime::parse_duration(text)
                .map_err(|error| {
                    ApiError::InvalidQuery(format!(
                        "wait must be a duration such as 500ms or 2s, not {text:?}: {error}"
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
            let stable_end = tokio::time::timeout(self.wait, state.log.stable_end(topic.name()))
                .await
                .map_err(|_| {
                    ApiError::EndUnknown(format!(
                        "no answer within the read's wait of {:?}",
                        self.wait
                    ))
                })?
                .map_err(|error| ApiError::EndUnknown(error.to_string()))?;
            wanted = wanted.max(stable_end);
        }
        let remaining = self.wait.saturating_sub(started.elapsed());
        let waited = topic.store().wait_applied(wanted - 1, remaining).await;
        metrics::read_waited(started.elapsed());
        match waited {
            Ok(()) => Ok(()),
            Err(WaitError::Timeout) => Err(ApiError::NotYetApplied {
                wanted,
                applied: topic.store().applied_offset(),
                waited: started.elapsed(),
            }),
            Err(WaitError::Closed) => Err(ApiError::EndUnknown("the topic was detached".into())),
        }
    }
}
