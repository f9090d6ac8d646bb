//! The one place where failures become HTTP responses: every error a route answers is an
//! [`ApiError`], answered as `{"error": {"code": "...", "message": "..."}}` with a fitting
//! status. Outside it: a handler that panics gets the same body with code `internal` from the
//! router's panic layer (`http::panic_response`), and `/metrics` of a service run without a
//! recorder (embedded in a test) answers a plain 404.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::topics::TopicError;
use crate::watch::WatchError;
use crate::writer::WriteError;

/// On a `410` from `/watch`: the earliest position this replica can resume a watch from.
pub const EARLIEST_OFFSET_HEADER: &str = "x-kv-earliest-offset";

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "key_not_found", "message": "key \"user/1\" not found in topic \"users\""}}))]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and people (`message`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable error code such as `key_not_found`.
    #[schema(example = "key_not_found")]
    pub code: &'static str,
    /// A human-readable explanation.
    #[schema(example = "key \"user/1\" not found in topic \"users\"")]
    pub message: String,
    /// Only with `precondition_failed`: each condition that did not hold, with its key's
    /// version when it was judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub failed: Option<Vec<FailedCondition>>,
    /// Only with `offset_not_applied`: the offset this replica had applied up to (exclusive)
    /// when it gave up.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub applied_offset: Option<i64>,
}

/// A condition of a write that did not hold.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FailedCondition {
    /// The key.
    #[schema(example = "user/1")]
    pub key: String,
    /// In an atomic batch: the index of the operation whose condition it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub op: Option<usize>,
    /// In an atomic batch: the index of the check it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub check: Option<usize>,
    /// The key's version when the condition was judged; `null` if the key was absent.
    #[schema(example = 42, required = true)]
    pub current_version: Option<i64>,
}

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The topic name breaks Kafka's rules.
    #[error("invalid topic name: {0}")]
    InvalidTopic(String),
    /// The key is empty, badly encoded or not UTF-8.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The key is longer than `limits.max_key_bytes`.
    #[error("key is {len} bytes; the limit is {limit}")]
    KeyTooLarge {
        /// The key's length in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The value is longer than `limits.max_value_bytes`.
    #[error("value is larger than the limit of {limit} bytes")]
    ValueTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The request body is larger than allowed for this endpoint.
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The batch has more operations than `limits.max_batch_ops`.
    #[error("batch has {count} operations; the limit is {limit}")]
    TooManyOps {
        /// Operations in the request.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A query parameter is malformed or out of range.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The body is not well-formed JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The body is JSON but not a valid request of this kind.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request's content type is not one this endpoint reads.
    #[error("unsupported content type: {0}")]
    UnsupportedMediaType(String),
    /// The request body ended early or could not be read.
    #[error("could not read the request body: {0}")]
    IncompleteBody(String),
    /// The client did not send its body in time.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    /// A header is malformed.
    #[error("invalid header: {0}")]
    InvalidHeader(String),
    /// The key is not in the topic.
    #[error("key {key:?} not found in topic {topic:?}")]
    KeyNotFound {
        /// The topic.
        topic: String,
        /// The key.
        key: String,
    },
    /// No route matches the path.
    #[error("no such endpoint: {0}")]
    RouteNotFound(String),
    /// The route exists but not for this method.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// A topic could not be attached or served.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// A write failed or its outcome is unknown.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The request has no valid token, or its token lacks the scope.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An atomic batch writes a key twice.
    #[error("duplicate key: {0}")]
    DuplicateKey(String),
    /// A condition of a write did not hold; nothing was written.
    #[error("{}", describe_failed(.0))]
    PreconditionFailed(Vec<FailedCondition>),
    /// The replica did not apply the offset a read asked for within its wait.
    #[error(
        "this replica has applied the topic's records below offset {applied}; the read needs \
         those below {wanted}, which it did not reach within {waited:?}; retry, or ask another \
         replica"
    )]
    NotYetApplied {
        /// The offset the read must reflect (exclusive: everything below it).
        wanted: i64,
        /// The offset applied up to (exclusive) when the wait ended.
        applied: i64,
        /// How long the read waited.
        waited: Duration,
    },
    /// The broker did not tell the topic's end for a strong read.
    #[error("Kafka broker unavailable; cannot tell how far the topic goes: {0}")]
    EndUnknown(String),
    /// A watch cannot start or cannot go on.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// The server is serving as many requests as it may.
    #[error("the server is busy: {limit} requests in flight; retry shortly")]
    Busy {
        /// `http.max_concurrent_requests`.
        limit: usize,
    },
}

/// "2 conditions did not hold ...: key "a" is at version 5, key "b" is absent".
fn describe_failed(failed: &[FailedCondition]) -> String {
    let each: Vec<String> = failed
        .iter()
        .map(|condition| match condition.current_version {
            Some(version) => format!("key {:?} is at version {version}", condition.key),
            None => format!("key {:?} is absent", condition.key),
        })
        .collect();
    let conditions = if failed.len() == 1 {
        "the condition does".to_owned()
    } else {
        format!("{} conditions do", failed.len())
    };
    format!(
        "{conditions} not hold, so nothing was written: {}",
        each.join(", ")
    )
}

impl ApiError {
    /// The HTTP status and the machine-readable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidTopic(_) => (StatusCode::BAD_REQUEST, "invalid_topic"),
            ApiError::InvalidKey(_) => (StatusCode::BAD_REQUEST, "invalid_key"),
            ApiError::KeyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "key_too_large"),
            ApiError::ValueTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "value_too_large"),
            ApiError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::TooManyOps { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large"),
            ApiError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::InvalidRequest(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::InvalidHeader(_) => (StatusCode::BAD_REQUEST, "invalid_header"),
            ApiError::IncompleteBody(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::KeyNotFound { .. } => (StatusCode::NOT_FOUND, "key_not_found"),
            ApiError::RouteNotFound(_) => (StatusCode::NOT_FOUND, "route_not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Auth(AuthError::Forbidden { .. }) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Auth(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "server_busy"),
            ApiError::DuplicateKey(_) => (StatusCode::BAD_REQUEST, "duplicate_key"),
            ApiError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            ApiError::NotYetApplied { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "offset_not_applied")
            }
            ApiError::EndUnknown(_) => (StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable"),
            ApiError::Watch(err) => match err {
                WatchError::Expired { .. } => (StatusCode::GONE, "watch_expired"),
                WatchError::FellBehind { .. } => (StatusCode::GONE, "watch_fell_behind"),
                // As for a read that asked for an offset not applied in time.
                WatchError::NotReached { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "offset_not_applied")
                }
                WatchError::TooManyWatchers { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "too_many_watchers")
                }
                WatchError::TopicFailed(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "topic_unavailable")
                }
                WatchError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            },
            ApiError::Topic(err) => match err {
                TopicError::NotFound(_) => (StatusCode::NOT_FOUND, "topic_not_found"),
                TopicError::NotSinglePartition { .. } => {
                    (StatusCode::CONFLICT, "topic_not_single_partition")
                }
                TopicError::StillReplaying { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "topic_replaying")
                }
                TopicError::ReplayFailed { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "topic_unavailable")
                }
                TopicError::TooManyTopics { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "too_many_topics")
                }
                TopicError::BrokerUnavailable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable")
                }
                TopicError::Refused(_) => (StatusCode::BAD_GATEWAY, "kafka_refused"),
                TopicError::Denied { .. } => (StatusCode::FORBIDDEN, "topic_denied"),
            },
            ApiError::Write(err) => match err {
                WriteError::BrokerUnavailable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable")
                }
                WriteError::NotEnoughReplicas { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "not_enough_replicas")
                }
                WriteError::Overloaded { .. } | WriteError::ProducerBusy(_) => {
                    (StatusCode::TOO_MANY_REQUESTS, "overloaded")
                }
                WriteError::TooLargeForBroker(_) => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "record_too_large")
                }
                WriteError::OutcomeUnknown { .. } | WriteError::ApplyTimeout { .. } => {
                    (StatusCode::GATEWAY_TIMEOUT, "write_timeout")
                }
                WriteError::BatchIncomplete { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "batch_incomplete")
                }
                WriteError::PreconditionFailed { .. } => {
                    (StatusCode::PRECONDITION_FAILED, "precondition_failed")
                }
                WriteError::NotJudged { .. } => (StatusCode::SERVICE_UNAVAILABLE, "replica_behind"),
                WriteError::Interleaved { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "batch_interleaved")
                }
            },
        }
    }

    /// The JSON body answered for this error: also the data of a watch's `error` event.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorDetail {
                code: self.status_and_code().1,
                message: self.to_string(),
                failed: match self {
                    ApiError::PreconditionFailed(failed) => Some(failed.clone()),
                    _ => None,
                },
                applied_offset: match self {
                    ApiError::NotYetApplied { applied, .. } => Some(*applied),
                    _ => None,
                },
            },
        }
    }

    /// How long a client should wait before retrying, for errors that pass by themselves.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Topic(TopicError::StillReplaying { .. })
            | ApiError::Topic(TopicError::BrokerUnavailable(_))
            | ApiError::Write(WriteError::BrokerUnavailable(_))
            | ApiError::Write(WriteError::NotEnoughReplicas { .. })
            | ApiError::Write(WriteError::Overloaded { .. })
            | ApiError::Write(WriteError::ProducerBusy(_))
            | ApiError::Write(WriteError::NotJudged { .. })
            | ApiError::Write(WriteError::Interleaved { .. })
            | ApiError::NotYetApplied { .. }
            | ApiError::EndUnknown(_)
            | ApiError::Busy { .. }
            | ApiError::Watch(WatchError::TooManyWatchers { .. })
            | ApiError::Watch(WatchError::NotReached { .. }) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(code, error = %self, "request failed");
        }
        let retry_after = self.retry_after();
        let body = self.body();
        let mut response = (status, Json(body)).into_response();
        if let Some(after) = retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        if let ApiError::Watch(
            WatchError::Expired { earliest, .. } | WatchError::FellBehind { earliest, .. },
        ) = &self
        {
            response
                .headers_mut()
                .insert(EARLIEST_OFFSET_HEADER, HeaderValue::from(*earliest));
        }
        if let ApiError::Auth(error) = &self {
            // RFC 6750: how to authenticate, and why the token fell short.
            let challenge = match error {
                AuthError::Missing => r#"Bearer realm="kvstore""#,
                AuthError::Malformed => r#"Bearer realm="kvstore", error="invalid_request""#,
                AuthError::Invalid => r#"Bearer realm="kvstore", error="invalid_token""#,
                AuthError::Forbidden { .. } => {
                    r#"Bearer realm="kvstore", error="insufficient_scope""#
                }
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn errors_map_to_status_code_and_json_body() {
        let cases = [
            (ApiError::InvalidTopic("x".into()), 400, "invalid_topic"),
            (
                ApiError::KeyTooLarge {
                    len: 2000,
                    limit: 1024,
                },
                413,
                "key_too_large",
            ),
            (
                ApiError::KeyNotFound {
                    topic: "t".into(),
                    key: "k".into(),
                },
                404,
                "key_not_found",
            ),
            (
                ApiError::Topic(TopicError::NotFound("t".into())),
                404,
                "topic_not_found",
            ),
            (
                ApiError::Topic(TopicError::NotSinglePartition {
                    topic: "t".into(),
                    partitions: 4,
                }),
                409,
                "topic_not_single_partition",
            ),
            (
                ApiError::Write(WriteError::BrokerUnavailable("down".into())),
                503,
                "broker_unavailable",
            ),
            (
                ApiError::Write(WriteError::ApplyTimeout {
                    offset: 7,
                    waited: Duration::from_secs(10),
                }),
                504,
                "write_timeout",
            ),
            (ApiError::MalformedJson("eof".into()), 400, "malformed_json"),
            (
                ApiError::InvalidRequest("op".into()),
                422,
                "invalid_request",
            ),
        ];
        for (error, status, code) in cases {
            let message = error.to_string();
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status, "{code}");
            let body = body_of(response).await;
            assert_eq!(body["error"]["code"], code);
            assert_eq!(body["error"]["message"], message);
        }
    }

    #[tokio::test]
    async fn apply_timeout_says_the_write_may_still_apply() {
        let error = ApiError::Write(WriteError::ApplyTimeout {
            offset: 7,
            waited: Duration::from_secs(10),
        });
        assert!(error.to_string().contains("may still apply"), "{error}");
    }

    #[tokio::test]
    async fn passing_errors_carry_retry_after() {
        let response =
            ApiError::Write(WriteError::BrokerUnavailable("down".into())).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
