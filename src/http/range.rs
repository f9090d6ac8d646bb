//! `/v1/{topic}/range`: keys in order, by prefix or between bounds, a page at a time.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::consistency::{ReadConsistency, ReadParams};
use super::encoding::RangeItem;
use super::extract::{TopicPath, topic_from_uri};
use super::freshness::add_freshness_headers;
use crate::app::AppState;
use crate::error::{ApiError, ErrorResponse};
use crate::store::KeyRange;
use crate::topics::Access;
use axum::response::{IntoResponse, Response};

/// Cursors are the last key of a page in unpadded base64url. Decoding is lenient (padding
/// optional, trailing bits ignored) so that every string of the documented pattern is a cursor.
const CURSOR_ENCODING: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Which keys to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    /// Only keys that begin with this.
    pub prefix: Option<String>,
    /// Only keys at or after this (inclusive).
    pub start: Option<String>,
    /// Only keys before this (exclusive).
    pub end: Option<String>,
    /// Most items in the page: default `limits.default_range_limit` (100), capped at
    /// `limits.max_range_limit` (1000).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page, to continue after it (unpadded base64url).
    #[param(pattern = r"^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
    // `min_offset`, `consistency` and `wait` are a read's `ReadParams`, documented and read
    // there; named here only so that `deny_unknown_fields` lets them by. (utoipa's
    // `IntoParams` cannot flatten one struct into another, and serde's `flatten` would read
    // the query's numbers as strings and lose the names in its errors.)
    #[serde(rename = "min_offset")]
    #[param(ignore)]
    _min_offset: Option<IgnoredAny>,
    #[serde(rename = "consistency")]
    #[param(ignore)]
    _consistency: Option<IgnoredAny>,
    #[serde(rename = "wait")]
    #[param(ignore)]
    _wait: Option<IgnoredAny>,
}

/// One page of keys.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "items": [{"key": "user/1", "value": {"name": "Ada"}, "encoding": "json", "content_type": "application/json", "offset": 42}],
    "next_cursor": "dXNlci8x",
}))]
pub struct RangeResponse {
    /// Keys and values in key order.
    pub items: Vec<RangeItem>,
    /// Pass as `cursor` to get the next page; absent when this page is the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    // Absent, never null: the document says so, so that clients type it as a plain string.
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// List keys in order.
///
/// Selects keys by `prefix` and/or between `start` (inclusive) and `end` (exclusive), in
/// byte order of their UTF-8; a `start` at or after `end` selects nothing. Each page holds at most `limit` items (and stops early past
/// `limits.max_range_bytes` of data); follow `next_cursor` until it is absent to see every
/// key. Values are embedded by content type: JSON as JSON (`encoding: json`), other UTF-8 as
/// a string (`text`), anything else as base64 (`base64`).
#[utoipa::path(
    get,
    path = "/v1/{topic}/range",
    tag = "keys",
    params(
        TopicPath,
        RangeParams,
        ReadParams,
        ("X-Kv-Min-Offset" = Option<String>, Header, nullable = false, pattern = r"^[0-9]{1,18}$", description = "As `min_offset`: the offset a write answered with"),
    ),
    responses(
        (status = 200, description = "A page of keys", body = RangeResponse,
            headers(
                ("X-Kv-Lag" = i64, description = "Records of the topic this replica has yet to apply, when known"),
                ("X-Kv-Applied-Offset" = i64, description = "This replica has applied every record of the topic below this offset"),
                ("X-Kv-Stale-Seconds" = i64, description = "Only while the broker is unreachable: seconds since it last answered"),
            )),
        (status = 400, description = "Invalid topic name or query", body = ErrorResponse),
        (status = 404, description = "The topic does not exist", body = ErrorResponse),
        (status = 503, description = "Broker unavailable, topic still replaying, or the offset asked for not applied within `wait` (`offset_not_applied`)", body = ErrorResponse),
    )
)]
pub async fn scan_range(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let topic_name = topic_from_uri(&uri)?;
    let Query(params) = params.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let consistency = ReadConsistency::new(&ReadParams::from_uri(&uri)?, &headers, &state)?;
    let limits = &state.config.limits;
    let limit = match params.limit {
        None => limits.default_range_limit,
        Some(n) if n < 1 => {
            return Err(ApiError::InvalidQuery("limit must be at least 1".into()));
        }
        Some(n) => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(limits.max_range_limit),
    };
    let after = params
        .cursor
        .map(|cursor| {
            CURSOR_ENCODING
                .decode(cursor.as_bytes())
                .map_err(|_| ApiError::InvalidQuery("cursor is not one this server issued".into()))
        })
        .transpose()?;
    let range = KeyRange {
        prefix: params.prefix.map(String::into_bytes).unwrap_or_default(),
        start: params.start.map(String::into_bytes),
        end: params.end.map(String::into_bytes),
        after,
    };
    let topic = state.topics.get(&topic_name, Access::Existing).await?;
    consistency.wait_for(&state, &topic).await?;
    let page = topic.store().scan(&range, limit, limits.max_range_bytes);
    let applied_offset = page.applied_offset;
    let next_cursor = page
        .more
        .then(|| {
            page.items
                .last()
                .map(|(key, _)| CURSOR_ENCODING.encode(key))
        })
        .flatten();
    let items = page
        .items
        .into_iter()
        .map(|(key, value)| RangeItem::new(key, &value))
        .collect();
    let mut response = Json(RangeResponse { items, next_cursor }).into_response();
    add_freshness_headers(
        response.headers_mut(),
        &topic,
        applied_offset,
        state.log.status(),
    );
    Ok(response)
}
