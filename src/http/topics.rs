//! `/v1/topics`: what this replica serves.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::topic::ReplayState;

/// The topics this replica serves.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicsResponse {
    /// One entry per attached topic, by name.
    pub topics: Vec<TopicSummary>,
}

/// One attached topic.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicSummary {
    /// The topic's name.
    #[schema(example = "users")]
    pub name: String,
    /// `replaying`, `ready` or `failed`.
    #[schema(example = "ready")]
    pub state: &'static str,
    /// Live keys.
    pub keys: u64,
    /// Bytes of live keys and values.
    pub bytes: u64,
    /// The offset after the last record applied here.
    pub applied_offset: i64,
    /// The partition's end offset as of the last fetch, once known.
    pub end_offset: Option<i64>,
    /// Records this replica has yet to apply, once known.
    pub lag: Option<i64>,
}

/// List the topics this replica serves.
///
/// Topics are attached on first use (or at startup with `topics.preload`); this lists those
/// with their sizes, offsets and lag.
#[utoipa::path(
    get,
    path = "/v1/topics",
    tag = "topics",
    responses((status = 200, description = "The attached topics", body = TopicsResponse))
)]
pub async fn list_topics(State(state): State<AppState>) -> Json<TopicsResponse> {
    let topics = state
        .topics
        .list()
        .iter()
        .map(|topic| {
            let info = topic.info();
            TopicSummary {
                name: info.name,
                state: match info.state {
                    ReplayState::Replaying => "replaying",
                    ReplayState::Ready => "ready",
                    ReplayState::Failed(_) => "failed",
                },
                keys: info.stats.keys,
                bytes: info.stats.bytes,
                applied_offset: info.stats.applied_offset,
                end_offset: info.end_offset,
                lag: info.lag,
            }
        })
        .collect();
    Json(TopicsResponse { topics })
}
