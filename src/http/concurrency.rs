//! The in-flight request limit: past `http.max_concurrent_requests`, requests are refused at
//! once with 503 and `Retry-After` rather than queued, so an overloaded replica sheds load
//! instead of piling up latency. Liveness and readiness probes are not counted, so a busy
//! replica is not restarted for being busy.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The permits for requests in flight. Cheap to clone.
#[derive(Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl InFlight {
    /// Room for `limit` requests at once.
    pub fn new(limit: usize) -> InFlight {
        InFlight {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

/// Middleware: holds a permit while the request is handled, or answers 503 if none is free.
pub async fn limit(State(in_flight): State<InFlight>, request: Request, next: Next) -> Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    let Ok(_permit) = in_flight.permits.try_acquire() else {
        crate::metrics::request_shed();
        return ApiError::Busy {
            limit: in_flight.limit,
        }
        .into_response();
    };
    next.run(request).await
}
