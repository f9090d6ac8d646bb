//! `/v1/{topic}/batch`: many puts and deletes in one request, produced together and answered
//! after one wait for the last of them.

use std::collections::HashSet;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use utoipa::ToSchema;

use super::conditions;
use super::encoding::{ValueEncoding, decode_value};
use super::extract::{
    TopicPath, check_content_type, check_key, content_type, is_json, read_body, topic_from_uri,
};
use crate::app::AppState;
use crate::condition::{Condition, Precondition};
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
    /// All or nothing: every operation takes effect or none does, and no reader on any
    /// replica sees some of them without the others. Needed for `if_version`, `if_absent`
    /// and `checks`. At most `limits.max_atomic_batch_ops` (1000) operations and checks, each
    /// key at most once. Default `false`.
    #[serde(default)]
    pub atomic: bool,
    /// Conditions on keys the batch does not write (atomic batches only).
    #[serde(default)]
    pub checks: Vec<BatchCheck>,
}

/// A condition on a key, judged against its latest version in log order: exactly one of
/// `if_version`, `if_absent` and `if_exists`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"key": "config/lock", "if_version": 17}))]
pub struct BatchCheck {
    /// The key.
    #[schema(min_length = 1)]
    pub key: String,
    /// The key's version (its `ETag`, unquoted) must be this.
    pub if_version: Option<i64>,
    /// `true`: the key must not exist.
    pub if_absent: Option<bool>,
    /// `true`: the key must exist.
    pub if_exists: Option<bool>,
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
        /// Atomic batches only: write only if the key's version is this.
        if_version: Option<i64>,
        /// Atomic batches only: `true` writes only if the key does not exist.
        if_absent: Option<bool>,
    },
    /// Delete a key (writes a tombstone).
    #[schema(title = "BatchDelete", example = json!({"op": "delete", "key": "user/2"}))]
    Delete {
        /// The key: at most `limits.max_key_bytes` (1024) bytes of UTF-8.
        #[schema(min_length = 1)]
        key: String,
        /// Atomic batches only: delete only if the key's version is this.
        if_version: Option<i64>,
        /// Atomic batches only: `true` deletes only if the key does not exist.
        if_absent: Option<bool>,
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
            BatchOperation::Put { key, .. } | BatchOperation::Delete { key, .. } => key,
        }
    }

    /// The operation's own condition, if it states one.
    fn condition(&self) -> Result<Option<Condition>, String> {
        let (BatchOperation::Put {
            if_version,
            if_absent,
            ..
        }
        | BatchOperation::Delete {
            if_version,
            if_absent,
            ..
        }) = self;
        one_condition(*if_version, *if_absent, None).map_err(|e| format!("{e} (or neither)"))
    }
}

impl BatchCheck {
    fn condition(&self) -> Result<Condition, String> {
        one_condition(self.if_version, self.if_absent, self.if_exists)?
            .ok_or_else(|| "a check needs one of if_version, if_absent and if_exists".to_owned())
    }
}

/// The condition stated by at most one of the three fields.
fn one_condition(
    if_version: Option<i64>,
    if_absent: Option<bool>,
    if_exists: Option<bool>,
) -> Result<Option<Condition>, String> {
    let stated = [
        if_version.map(|version| Condition::VersionIn(vec![version])),
        if_absent.map(|absent| {
            if absent {
                Condition::Absent
            } else {
                Condition::Exists
            }
        }),
        if_exists.map(|exists| {
            if exists {
                Condition::Exists
            } else {
                Condition::Absent
            }
        }),
    ];
    let mut stated = stated.into_iter().flatten();
    let first = stated.next();
    if stated.next().is_some() {
        return Err("state one of if_version, if_absent and if_exists".into());
    }
    Ok(first)
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
/// answer comes once this replica has applied the last. A plain batch is **not atomic**: if
/// the broker fails part-way, the operations sent before the failure may apply (the error
/// says how many). With `"atomic": true` every operation takes effect or none does, no
/// reader on any replica sees part of the batch, and the operations' `if_version` /
/// `if_absent` and the `checks` are judged against the keys' latest versions in log order:
/// if one does not hold, the answer is 412 and nothing is written.
#[utoipa::path(
    post,
    path = "/v1/{topic}/batch",
    tag = "keys",
    params(TopicPath),
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "All applied here", body = BatchResponse),
        (status = 400, description = "Malformed JSON, invalid topic name or key, or a key written twice in an atomic batch (`duplicate_key`)", body = ErrorResponse),
        (status = 404, description = "The topic does not exist and auto-creation is off", body = ErrorResponse),
        (status = 412, description = "Atomic batch: a condition did not hold (`precondition_failed`; `failed` names each operation or check and its key's version); nothing was written", body = ErrorResponse),
        (status = 413, description = "Too many operations (or operations and checks, for an atomic batch), or a key, value or the body too large", body = ErrorResponse),
        (status = 415, description = "The body is not `application/json`", body = ErrorResponse),
        (status = 422, description = "An operation is invalid; nothing was written", body = ErrorResponse),
        (status = 503, description = "Broker unavailable; or, for an atomic batch, its conditions not judged in time or other writes kept landing between its records: nothing was written", body = ErrorResponse),
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
        .map(|(index, op)| to_record(op, limits).map_err(|e| prefix_error("ops", index, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let offsets = if request.atomic {
        let conditions = atomic_conditions(&request, limits)?;
        let topic = state.topics.get(&topic_name, Access::MayCreate).await?;
        let preconditions = conditions
            .iter()
            .map(|(_, precondition)| precondition.clone())
            .collect();
        state
            .writer
            .write_if(&topic, records, preconditions)
            .await
            .map_err(|error| {
                conditions::failed(error, |index| {
                    let (at, precondition) = &conditions[index];
                    let key = String::from_utf8_lossy(&precondition.key).into_owned();
                    match at {
                        Stated::Op(op) => (key, Some(*op), None),
                        Stated::Check(check) => (key, None, Some(*check)),
                    }
                })
            })?
    } else {
        plain_batch_states_no_conditions(&request)?;
        let topic = state.topics.get(&topic_name, Access::MayCreate).await?;
        state.writer.write(&topic, records).await?
    };
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

/// Where in the request a precondition was stated.
#[derive(Debug, Clone, Copy)]
enum Stated {
    /// By the operation with this index.
    Op(usize),
    /// By the check with this index.
    Check(usize),
}

/// The preconditions of an atomic batch, each with where it was stated, after checking the
/// batch's size and that no key is written twice.
fn atomic_conditions(
    request: &BatchRequest,
    limits: &LimitsConfig,
) -> Result<Vec<(Stated, Precondition)>, ApiError> {
    let count = request.ops.len() + request.checks.len();
    if count > limits.max_atomic_batch_ops {
        return Err(ApiError::TooManyOps {
            count,
            limit: limits.max_atomic_batch_ops,
        });
    }
    let mut written = HashSet::new();
    for (index, op) in request.ops.iter().enumerate() {
        if !written.insert(op.key()) {
            return Err(ApiError::DuplicateKey(format!(
                "ops[{index}] writes {:?} again; an atomic batch writes each key once",
                op.key()
            )));
        }
    }
    let mut conditions = Vec::new();
    for (index, op) in request.ops.iter().enumerate() {
        let condition = op
            .condition()
            .map_err(|e| ApiError::InvalidRequest(format!("ops[{index}]: {e}")))?;
        if let Some(condition) = condition {
            conditions.push((
                Stated::Op(index),
                Precondition {
                    key: op.key().as_bytes().to_vec(),
                    condition,
                },
            ));
        }
    }
    for (index, check) in request.checks.iter().enumerate() {
        check_key(&check.key, limits).map_err(|e| prefix_error("checks", index, e))?;
        let condition = check
            .condition()
            .map_err(|e| ApiError::InvalidRequest(format!("checks[{index}]: {e}")))?;
        conditions.push((
            Stated::Check(index),
            Precondition {
                key: check.key.as_bytes().to_vec(),
                condition,
            },
        ));
    }
    Ok(conditions)
}

/// Conditions need an atomic batch: a plain one is not judged as a whole.
fn plain_batch_states_no_conditions(request: &BatchRequest) -> Result<(), ApiError> {
    if !request.checks.is_empty() {
        return Err(ApiError::InvalidRequest(
            "checks need \"atomic\": true".into(),
        ));
    }
    for (index, op) in request.ops.iter().enumerate() {
        if !matches!(op.condition(), Ok(None)) {
            return Err(ApiError::InvalidRequest(format!(
                "ops[{index}]: if_version and if_absent need \"atomic\": true"
            )));
        }
    }
    Ok(())
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

/// Names the operation or check (`list` is `ops` or `checks`) an error is about.
fn prefix_error(list: &str, index: usize, error: ApiError) -> ApiError {
    match error {
        ApiError::InvalidRequest(message) => {
            ApiError::InvalidRequest(format!("{list}[{index}]: {message}"))
        }
        ApiError::InvalidKey(message) => {
            ApiError::InvalidKey(format!("{list}[{index}]: {message}"))
        }
        other => other,
    }
}
