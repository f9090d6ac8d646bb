//! `/v1/{topic}/batch`: many puts and deletes in one request, produced together and answered
//! after one wait for the last of them.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use utoipa::ToSchema;

use super::encoding::{ValueEncoding, decode_value};
use super::extract::{
    TopicPath, check_content_type, check_key, content_type, is_json, read_body, topic_from_uri,
};
use crate::app::AppState;
use crate::config::LimitsConfig;
use crate::error::{ApiError, ErrorResponse};
use crate::record::Record;
use crate::topics::Access;

/// Operations to apply in order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ops": [
    {"op": "put", "key": "user/1", "value": {"name": "Ada"}},
    {"op": "put", "key": "user/3", "value": "AAH/", "encoding": "base64", "content_type": "image/png"},
    {"op": "delete", "key": "user/2"},
]}))]
pub struct BatchRequest {
    /// The operations, applied in this order (at least one).
    #[schema(min_items = 1)]
    pub ops: Vec<BatchOperation>,
}

/// One put or delete, told apart by `op`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum BatchOperation {
    /// Write a value.
    #[schema(title = "BatchPut", example = json!({"op": "put", "key": "user/1", "value": {"name": "Ada"}}))]
    Put {
        /// The key: at most `limits.max_key_bytes` (1024) bytes of UTF-8.
        #[schema(min_length = 1)]
        key: String,
        /// The value. A JSON string is stored as its text (`text/plain`), any other JSON
        /// value as JSON (`application/json`); with `encoding: base64`, a string is decoded.
        value: serde_json::Value,
        /// How `value` embeds the bytes to store (as in range results).
        encoding: Option<ValueEncoding>,
        /// The content type to store, overriding the encoding's default.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"^[a-zA-Z0-9!#$&^_.+-]+/[a-zA-Z0-9!#$&^_.+-]+( *;[\x20-\x7e]*)?$"
        )]
        content_type: Option<String>,
    },
    /// Delete a key (writes a tombstone).
    #[schema(title = "BatchDelete", example = json!({"op": "delete", "key": "user/2"}))]
    Delete {
        /// The key: at most `limits.max_key_bytes` (1024) bytes of UTF-8.
        #[schema(min_length = 1)]
        key: String,
    },
}

impl BatchOperation {
    fn kind(&self) -> BatchOpKind {
        match self {
            BatchOperation::Put { .. } => BatchOpKind::Put,
            BatchOperation::Delete { .. } => BatchOpKind::Delete,
        }
    }

    fn key(&self) -> &str {
        match self {
            BatchOperation::Put { key, .. } | BatchOperation::Delete { key } => key,
        }
    }
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchOpKind {
    /// Write a value.
    Put,
    /// Delete a key (writes a tombstone).
    Delete,
}

/// Where each operation landed.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// The highest offset of the batch; every operation is applied here up to it.
    #[schema(example = 1041)]
    pub offset: i64,
    /// One result per operation, in request order.
    pub results: Vec<BatchResult>,
}

/// The outcome of one operation.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    /// `put` or `delete`.
    pub op: BatchOpKind,
    /// The key.
    pub key: String,
    /// The operation's offset.
    pub offset: i64,
}

/// Apply many puts and deletes.
///
/// Every operation is checked before anything is produced: one invalid operation rejects the
/// whole batch and nothing is written. Then all are produced at once, in order, and the
/// answer comes once this replica has applied the last. **Not atomic**: if the broker fails
/// part-way, the operations sent before the failure may apply (the error says how many).
#[utoipa::path(
    post,
    path = "/v1/{topic}/batch",
    tag = "keys",
    params(TopicPath),
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "All applied here", body = BatchResponse),
        (status = 400, description = "Malformed JSON, invalid topic name or key", body = ErrorResponse),
        (status = 404, description = "The topic does not exist and auto-creation is off", body = ErrorResponse),
        (status = 409, description = "The topic has more than one partition", body = ErrorResponse),
        (status = 413, description = "Too many operations, or a key, value or the body too large", body = ErrorResponse),
        (status = 415, description = "The body is not `application/json`", body = ErrorResponse),
        (status = 422, description = "An operation is invalid; nothing was written", body = ErrorResponse),
        (status = 429, description = "Too many writes in progress; nothing was written", body = ErrorResponse),
        (status = 503, description = "Broker unavailable", body = ErrorResponse),
        (status = 504, description = "Not applied in time; the batch may still apply", body = ErrorResponse),
    )
)]
pub async fn write_batch(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BatchResponse>, ApiError> {
    let topic_name = topic_from_uri(&uri)?;
    match content_type(&headers)? {
        Some(ct) if is_json(&ct) => {}
        Some(ct) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "{ct}; a batch must be application/json"
            )));
        }
        None => {
            return Err(ApiError::UnsupportedMediaType(
                "missing Content-Type; a batch must be application/json".into(),
            ));
        }
    }
    let limits = &state.config.limits;
    let limit = limits.max_batch_bytes;
    let body = read_body(
        &headers,
        body,
        limit,
        state.config.http.body_read_timeout,
        || ApiError::BodyTooLarge { limit },
    )
    .await?;
    let request: BatchRequest = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        Category::Data => ApiError::InvalidRequest(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })?;
    if request.ops.len() > limits.max_batch_ops {
        return Err(ApiError::TooManyOps {
            count: request.ops.len(),
            limit: limits.max_batch_ops,
        });
    }
    if request.ops.is_empty() {
        return Err(ApiError::InvalidRequest("ops must not be empty".into()));
    }
    let records = request
        .ops
        .iter()
        .enumerate()
        .map(|(index, op)| to_record(op, limits).map_err(|e| prefix_error(index, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let topic = state.topics.get(&topic_name, Access::MayCreate).await?;
    let offsets = state.writer.write(&topic, records).await?;
    let results: Vec<BatchResult> = request
        .ops
        .into_iter()
        .zip(&offsets)
        .map(|(op, &offset)| BatchResult {
            op: op.kind(),
            key: op.key().to_owned(),
            offset,
        })
        .collect();
    let offset = offsets.iter().copied().max().unwrap_or(-1);
    Ok(Json(BatchResponse { offset, results }))
}

fn to_record(op: &BatchOperation, limits: &LimitsConfig) -> Result<Record, ApiError> {
    check_key(op.key(), limits)?;
    let key = op.key().as_bytes().to_vec();
    match op {
        BatchOperation::Delete { .. } => Ok(Record::delete(key)),
        BatchOperation::Put {
            value,
            encoding,
            content_type,
            ..
        } => {
            let (bytes, encoding) =
                decode_value(value, *encoding).map_err(ApiError::InvalidRequest)?;
            if bytes.len() > limits.max_value_bytes {
                return Err(ApiError::ValueTooLarge {
                    limit: limits.max_value_bytes,
                });
            }
            let content_type = match content_type {
                Some(ct) => {
                    check_content_type(ct)
                        .map_err(|e| ApiError::InvalidRequest(format!("content_type {e}")))?;
                    ct.clone()
                }
                None => encoding.default_content_type().to_owned(),
            };
            Ok(Record::put(key, bytes, Some(content_type)))
        }
    }
}

/// Names the operation an error is about.
fn prefix_error(index: usize, error: ApiError) -> ApiError {
    match error {
        ApiError::InvalidRequest(message) => {
            ApiError::InvalidRequest(format!("ops[{index}]: {message}"))
        }
        ApiError::InvalidKey(message) => ApiError::InvalidKey(format!("ops[{index}]: {message}")),
        other => other,
    }
}
