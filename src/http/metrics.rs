//! The middleware that counts requests and their duration by method, route and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Counts every request and its duration by method, matched route and status. The route is
/// the template (`/v1/{topic}/keys/{*key}`), never the raw path.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    crate::metrics::http_request(method, route, response.status().as_u16(), started.elapsed());
    response
}
