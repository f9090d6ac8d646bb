//! `/v1/{topic}/keys/{key}`: read, write and delete one key.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::conditions;
use super::consistency::{ReadConsistency, ReadParams};
use super::extract::{KeyPath, content_type, read_body, topic_and_key};
use super::freshness::add_freshness_headers;
use crate::app::AppState;
use crate::error::{ApiError, ErrorResponse};
use crate::record::Record;
use crate::topics::Access;

/// The response header carrying a value's version: the offset of the record that wrote it.
pub const OFFSET_HEADER: &str = "x-kv-offset";

/// The answer to a write: where it landed.
#[derive(Debug, Serialize, ToSchema)]
pub struct WriteResponse {
    /// The topic written to.
    #[schema(example = "users")]
    pub topic: String,
    /// The key written.
    #[schema(example = "user/1")]
    pub key: String,
    /// The Kafka offset of the write; also its version (`ETag`, `X-Kv-Offset`).
    #[schema(example = 42)]
    pub offset: i64,
}

/// Read a value.
///
/// Answers the raw value with the content type it was written with, and its version (the
/// offset of the record that wrote it) in `ETag` and `X-Kv-Offset`. Served from this
/// replica's memory. Never creates a topic. With `min_offset` (or `X-Kv-Min-Offset`) or
/// `consistency=strong`, answers once this replica has applied that far (see "Consistency"
/// in the README).
#[utoipa::path(
    get,
    path = "/v1/{topic}/keys/{*key}",
    tag = "keys",
    params(
        KeyPath,
        ReadParams,
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "Answer 304 if the value's ETag matches"),
        ("X-Kv-Min-Offset" = Option<String>, Header, nullable = false, pattern = r"^[0-9]{1,18}$", description = "As `min_offset`: the offset a write answered with"),
    ),
    responses(
        (status = 200, description = "The value's bytes, as written, served with the content type they were written with (`application/octet-stream` when none was given)",
            content((Vec<u8> = "application/octet-stream"), (serde_json::Value = "application/json"), (Vec<u8> = "*/*")),
            headers(
                ("ETag" = String, description = "The value's version, quoted"),
                ("X-Kv-Offset" = i64, description = "The value's version: the offset that wrote it"),
                ("X-Kv-Lag" = i64, description = "Records of the topic this replica has yet to apply, when known"),
                ("X-Kv-Applied-Offset" = i64, description = "This replica has applied every record of the topic below this offset"),
                ("X-Kv-Stale-Seconds" = i64, description = "Only while the broker is unreachable: seconds since it last answered"),
            )),
        (status = 304, description = "The value's ETag matches `If-None-Match`"),
        (status = 400, description = "Invalid topic name, key, header or query (`min_offset`, `consistency`, `wait`)", body = ErrorResponse),
        (status = 404, description = "No such key (`key_not_found`) or topic (`topic_not_found`)", body = ErrorResponse),
        (status = 413, description = "Key too long", body = ErrorResponse),
        (status = 503, description = "Broker unavailable, topic still replaying, or the offset asked for not applied within `wait` (`offset_not_applied`)", body = ErrorResponse),
    )
)]
pub async fn get_key(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (topic_name, key) = topic_and_key(&uri, &state.config.limits)?;
    let params = ReadParams::from_uri(&uri)?;
    let consistency = ReadConsistency::new(&params, &headers, &state)?;
    let topic = state.topics.get(&topic_name, Access::Existing).await?;
    consistency.wait_for(&state, &topic).await?;
    let (value, applied_offset) = topic.store().get_at(key.as_bytes());
    let Some(value) = value else {
        return Err(ApiError::KeyNotFound {
            topic: topic_name,
            key,
        });
    };
    let mut response = if conditions::not_modified(&headers, value.offset) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Body::from(value.bytes).into_response();
        if let Ok(content_type) = HeaderValue::from_str(&value.content_type) {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
        }
        response
    };
    version_headers(response.headers_mut(), value.offset);
    add_freshness_headers(
        response.headers_mut(),
        &topic,
        applied_offset,
        state.log.status(),
    );
    Ok(response)
}

/// Write a value.
///
/// The body is the raw value (any bytes, at most `limits.max_value_bytes`); the request's
/// `Content-Type` is stored with it (default `application/octet-stream`). Creates the topic
/// if it does not exist and `topics.auto_create` is on. Answers once this replica has applied
/// the write, so a following GET here sees it. With `If-Match` or `If-None-Match`, writes
/// only if the condition holds for the key's latest version in log order, whichever replica
/// is asked; otherwise answers 412 and writes nothing.
#[utoipa::path(
    put,
    path = "/v1/{topic}/keys/{*key}",
    tag = "keys",
    params(
        KeyPath,
        ("If-Match" = Option<String>, Header, nullable = false, description = "Write only if the key's version is one of these ETags, or with `*` only if the key exists"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "Write only if the key's version is none of these ETags, or with `*` only if the key is absent (create only)"),
    ),
    request_body(content = Option<Vec<u8>>, content_type = "application/octet-stream", description = "The value: any bytes (may be empty), with any content type"),
    responses(
        (status = 200, description = "Written and applied here", body = WriteResponse,
            headers(
                ("ETag" = String, description = "The new version, quoted"),
                ("X-Kv-Offset" = i64, description = "The new version: the write's offset"),
            )),
        (status = 400, description = "Invalid topic name, key or header", body = ErrorResponse),
        (status = 404, description = "The topic does not exist and auto-creation is off", body = ErrorResponse),
        (status = 412, description = "`If-Match` or `If-None-Match` did not hold (`precondition_failed`, with the key's version in `failed`); nothing was written", body = ErrorResponse),
        (status = 413, description = "Key or value too large; nothing was written", body = ErrorResponse),
        (status = 503, description = "Broker unavailable, or the conditions could not be judged in time; nothing was written", body = ErrorResponse),
        (status = 504, description = "Not applied in time; the write may still apply", body = ErrorResponse),
    )
)]
pub async fn put_key(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limits = &state.config.limits;
    let (topic_name, key) = topic_and_key(&uri, limits)?;
    let content_type = content_type(&headers)?;
    let limit = limits.max_value_bytes;
    let value = read_body(
        &headers,
        body,
        limit,
        state.config.http.body_read_timeout,
        || ApiError::ValueTooLarge { limit },
    )
    .await?;
    let record = Record::put(key.clone().into_bytes(), value.to_vec(), content_type);
    write_one(state, &headers, topic_name, key, record, Access::MayCreate).await
}

/// Delete a key.
///
/// Writes a tombstone (a record with a null value). Deleting an absent key is not an error.
/// Answers once this replica has applied the delete. Honours `If-Match` and `If-None-Match`
/// as PUT does.
#[utoipa::path(
    delete,
    path = "/v1/{topic}/keys/{*key}",
    tag = "keys",
    params(
        KeyPath,
        ("If-Match" = Option<String>, Header, nullable = false, description = "Write only if the key's version is one of these ETags, or with `*` only if the key exists"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "Write only if the key's version is none of these ETags, or with `*` only if the key is absent (create only)"),
    ),
    responses(
        (status = 200, description = "Deleted and applied here", body = WriteResponse,
            headers(
                ("ETag" = String, description = "The tombstone's offset, quoted"),
                ("X-Kv-Offset" = i64, description = "The tombstone's offset"),
            )),
        (status = 400, description = "Invalid topic name or key", body = ErrorResponse),
        (status = 404, description = "The topic does not exist", body = ErrorResponse),
        (status = 412, description = "`If-Match` or `If-None-Match` did not hold (`precondition_failed`); nothing was written", body = ErrorResponse),
        (status = 413, description = "Key too long", body = ErrorResponse),
        (status = 503, description = "Broker unavailable, or the conditions could not be judged in time; nothing was written", body = ErrorResponse),
        (status = 504, description = "Not applied in time; the delete may still apply", body = ErrorResponse),
    )
)]
pub async fn delete_key(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (topic_name, key) = topic_and_key(&uri, &state.config.limits)?;
    let record = Record::delete(key.clone().into_bytes());
    write_one(state, &headers, topic_name, key, record, Access::Existing).await
}

/// Writes `record`, under the conditions `headers` state on `key` if any.
async fn write_one(
    state: AppState,
    headers: &HeaderMap,
    topic_name: String,
    key: String,
    record: Record,
    access: Access,
) -> Result<Response, ApiError> {
    let preconditions = conditions::from_headers(headers, key.as_bytes())?;
    let topic = state.topics.get(&topic_name, access).await?;
    let offsets = if preconditions.is_empty() {
        state.writer.write(&topic, vec![record]).await?
    } else {
        state
            .writer
            .write_if(&topic, vec![record], preconditions)
            .await
            .map_err(|error| conditions::failed(error, |_| (key.clone(), None, None)))?
    };
    let offset = offsets.first().copied().unwrap_or(-1);
    let mut response = Json(WriteResponse {
        topic: topic_name,
        key,
        offset,
    })
    .into_response();
    version_headers(response.headers_mut(), offset);
    Ok(response)
}

fn etag(offset: i64) -> String {
    format!("\"{offset}\"")
}

fn version_headers(headers: &mut HeaderMap, offset: i64) {
    if let Ok(etag) = HeaderValue::from_str(&etag(offset)) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(OFFSET_HEADER, HeaderValue::from(offset));
}
