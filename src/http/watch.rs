//! `/v1/{topic}/watch`: a topic's changes to a range of keys as Server-Sent Events, resumable
//! on any replica. What a watcher hands out and why it never holds up the replay is in
//! [`crate::watch`]; this module reads the request and starts the stream, whose events
//! [`super::sse`] writes.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::encoding::ValueEncoding;
use super::extract::{TopicPath, WaitSyntax, topic_from_uri};
use super::freshness::add_freshness_headers;
use super::sse;
use crate::app::AppState;
use crate::error::{ApiError, ErrorResponse};
use crate::store::KeyRange;
use crate::topics::Access;
use crate::watch::{Start, WatchError, Watcher};

/// A watch's `wait`: a number of `ms` or `s`, as [`WatchParams`]' pattern says.
pub(super) const WAIT_SYNTAX: WaitSyntax = WaitSyntax {
    max_digits: None,
    units: &["ms", "s"],
};

/// Which changes to stream, and from where.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WatchParams {
    /// Only keys that begin with this.
    pub prefix: Option<String>,
    /// Only keys at or after this (inclusive).
    pub start: Option<String>,
    /// Only keys before this (exclusive).
    pub end: Option<String>,
    /// Continue strictly after this offset (the `id` of the last event received; `-1`: from
    /// the topic's first offset). A `Last-Event-ID` header takes precedence. Without either,
    /// the stream starts with the changes applied after the request.
    #[param(minimum = -1)]
    pub from: Option<i64>,
    /// First send the current keys of the range as `put` events (without `id`), then `synced`
    /// (its `id` the offset they are the state as of), then the changes after it. Cannot be
    /// combined with `from`; ignored with `Last-Event-ID` (a reconnecting `EventSource` has
    /// its snapshot already).
    pub snapshot: Option<bool>,
    /// Start only once this replica has applied this offset (say, the offset of a write just
    /// made elsewhere).
    #[param(minimum = 0)]
    pub min_offset: Option<i64>,
    /// How long to wait for this replica to apply `from` or `min_offset` before answering
    /// 503, such as `500ms` or `10s`: default `consistency.default_wait` (5s), at most
    /// `consistency.max_wait` (30s), as for reads.
    #[param(pattern = r"^[0-9]+(ms|s)$")]
    pub wait: Option<String>,
}

/// Where a reconnecting client left off, as documented (the handler reads the header itself).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct WatchHeaders {
    /// Continue strictly after this offset: the `id` of the last event received (what
    /// `EventSource` sends when it reconnects). Takes precedence over `from`.
    #[serde(rename = "Last-Event-ID")]
    #[param(minimum = -1, nullable = false)]
    pub last_event_id: Option<i64>,
}

/// The data of a `delete` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct WatchDelete {
    /// The key (base64 if it is not UTF-8; see `key_encoding`).
    #[schema(example = "user/1")]
    pub key: String,
    /// Present, as `base64`, only for a key that is not UTF-8 (written by another producer).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub key_encoding: Option<ValueEncoding>,
    /// The offset of the delete.
    #[schema(example = 43)]
    pub offset: i64,
}

/// The data of a `synced` or `progress` event: a position to resume from (also its `id`).
#[derive(Debug, Serialize, ToSchema)]
pub struct WatchPosition {
    /// Every matching change at or below this offset has been sent.
    #[schema(example = 44)]
    pub offset: i64,
}

/// Stream changes as Server-Sent Events.
///
/// Answers `text/event-stream`. Every change applied to a key of the range (`prefix`, and/or
/// `start` inclusive and `end` exclusive), in offset order:
///
/// - `event: put`, `id:` its offset, `data:` the key and value as a range item (`RangeItem`).
/// - `event: delete`, `id:` its offset, `data:` the key and offset (`WatchDelete`).
///
/// The stream opens with `event: progress` (`WatchPosition`) naming the position it starts
/// after. An atomic batch appears as consecutive events; writes that were rejected or aborted
/// never appear. With `snapshot=true` the current keys come first as `put` events without
/// `id`, then `event: synced` (`WatchPosition`). When nothing was sent for
/// `watch.progress_interval` (5 s), `event: progress` (`WatchPosition`) carries the position
/// reached, never ahead of what was sent; comment lines keep the connection alive.
///
/// Resume with `Last-Event-ID` (what `EventSource` sends when it reconnects) or `from`, on
/// any replica: the stream continues strictly after that offset, nothing missed, nothing
/// twice. A position older than the changes this replica keeps (`watch.retain_changes`) is
/// 410 with the earliest one it can resume from in `X-Kv-Earliest-Offset`: start again with
/// `snapshot=true`. Once streaming, an error is `event: error` with the usual error body,
/// after which the stream ends; `watch_fell_behind` means the client read too slowly for the
/// changes it had not read yet to be kept.
#[utoipa::path(
    get,
    path = "/v1/{topic}/watch",
    tag = "keys",
    params(
        TopicPath,
        WatchParams,
        WatchHeaders,
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String,
            headers(
                ("X-Kv-Lag" = i64, description = "Records of the topic this replica had yet to apply when the stream started, when known"),
                ("X-Kv-Stale-Seconds" = i64, description = "Only while the broker is unreachable: seconds since it last answered"),
            )),
        (status = 400, description = "Invalid topic name, query or `Last-Event-ID`", body = ErrorResponse),
        (status = 404, description = "The topic does not exist", body = ErrorResponse),
        (status = 410, description = "The position to resume from is older than the changes this replica keeps (`watch_expired`)", body = ErrorResponse,
            headers(
                ("X-Kv-Earliest-Offset" = i64, description = "The earliest position this replica can resume from"),
            )),
        (status = 503, description = "Too many watchers (`too_many_watchers`), broker unavailable, topic still replaying, or `from` or `min_offset` not applied here within `wait` (`offset_not_applied`)", body = ErrorResponse),
    )
)]
pub async fn watch_changes(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    params: Result<Query<WatchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let topic_name = topic_from_uri(&uri)?;
    let Query(params) = params.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let last_event_id = last_event_id(&headers)?;
    if params.from.is_some_and(|from| from < -1) {
        return Err(ApiError::InvalidQuery("from must be at least -1".into()));
    }
    if params.min_offset.is_some_and(|offset| offset < 0) {
        return Err(ApiError::InvalidQuery(
            "min_offset must be at least 0".into(),
        ));
    }
    let wait = WAIT_SYNTAX.parse(params.wait.as_deref(), &state.config.consistency)?;
    let start = match (last_event_id, params.from, params.snapshot.unwrap_or(false)) {
        (Some(id), _, _) => Start::After(id),
        (None, Some(_), true) => {
            return Err(ApiError::InvalidQuery(
                "from and snapshot=true cannot be combined: a snapshot is of the current state"
                    .into(),
            ));
        }
        (None, Some(from), false) => Start::After(from),
        (None, None, true) => Start::Snapshot,
        (None, None, false) => Start::Now,
    };
    let range = KeyRange {
        prefix: params.prefix.map(String::into_bytes).unwrap_or_default(),
        start: params.start.map(String::into_bytes),
        end: params.end.map(String::into_bytes),
        after: None,
    };
    // Taken first, so that requests waiting for their topic or offset count too.
    let permit = state.watchers.admit()?;
    let stopping = state.watchers.stopping().clone();
    let topic = tokio::select! {
        () = stopping.cancelled() => return Err(WatchError::ShuttingDown.into()),
        topic = state.topics.get(&topic_name, Access::Existing) => topic?,
    };
    let after = match start {
        Start::After(offset) => Some(offset),
        _ => None,
    };
    if let Some(offset) = after.max(params.min_offset).filter(|o| *o >= 0) {
        // A replica behind the position waits to catch up, bounded by `wait`, rather than
        // start a stream from a point it has not reached.
        let caught_up = tokio::select! {
            () = stopping.cancelled() => return Err(WatchError::ShuttingDown.into()),
            waited = topic.store().wait_applied(offset, wait) => waited,
        };
        caught_up.map_err(|_| WatchError::NotReached {
            offset,
            waited: wait,
        })?;
    }
    let membership = state.watchers.join(&topic, &range);
    let watcher = Watcher::new(
        topic.clone(),
        range,
        start,
        state.watchers.config().max_buffer_bytes,
    )?
    .signalled_by(membership);
    let mut response = Response::new(Body::from_stream(sse::events(
        watcher,
        permit,
        state.watchers.clone(),
    )));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer responses (nginx) would hold events back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    let applied_offset = topic.store().applied_offset();
    add_freshness_headers(headers, &topic, applied_offset, state.log.status());
    Ok(response)
}

/// `Last-Event-ID`, if sent: an offset of at least -1.
fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .filter(|id| *id >= -1)
        .map(Some)
        .ok_or_else(|| {
            ApiError::InvalidHeader(
                "Last-Event-ID must be the id of an event of this stream (an offset)".into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsistencyConfig;

    #[test]
    fn waits_are_bounded_and_strict() {
        use std::time::Duration;
        let settings = ConsistencyConfig::default();
        let wait = |text| WAIT_SYNTAX.parse(text, &settings);
        assert_eq!(wait(None).expect("default"), settings.default_wait);
        assert_eq!(wait(Some("250ms")).expect("ms"), Duration::from_millis(250));
        assert_eq!(wait(Some("3s")).expect("s"), Duration::from_secs(3));
        assert_eq!(
            wait(Some("99999999999s")).expect("capped"),
            settings.max_wait
        );
        for bad in ["", "s", "5", "-1s", "1.5s", "5m", "5us"] {
            assert!(wait(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn last_event_ids_are_offsets() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers).expect("none"), None);
        headers.insert("last-event-id", HeaderValue::from_static("42"));
        assert_eq!(last_event_id(&headers).expect("an offset"), Some(42));
        for bad in ["", "x", "-2", "1.0"] {
            headers.insert("last-event-id", HeaderValue::from_static(bad));
            assert!(last_event_id(&headers).is_err(), "{bad:?}");
        }
    }
}
