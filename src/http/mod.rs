//! The HTTP API: the router, one module per resource, and the OpenAPI document.
//!
//! - [`keys`]: `GET/PUT/DELETE /v1/{topic}/keys/{key}`
//! - [`range`]: `GET /v1/{topic}/range`
//! - [`batch`]: `POST /v1/{topic}/batch`
//! - [`watch`]: `GET /v1/{topic}/watch`, changes as Server-Sent Events
//! - [`sse`]: a watch's event stream: what it sends next, and each event's frame.
//! - [`topics`]: `GET /v1/topics`
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`
//! - `/openapi.json` and, at `/docs`, Swagger UI reading it (built into the binary, so it works
//!   without network access).
//! - [`openapi`](mod@openapi): what the document says besides the operations the route list
//!   gives it.
//! - [`extract`] and [`encoding`]: strict request parsing and values inside JSON.
//! - [`conditions`]: `If-Match` and `If-None-Match`: the conditions of a write, 304 on a read.
//! - [`consistency`]: reads that must reflect a write (`min_offset`, `consistency=strong`).
//! - [`server`]: the connection loop (header deadline, graceful stop).
//! - [`auth`]: the bearer-token check in front of protected routes.
//! - [`concurrency`]: the in-flight request limit (503 past it).
//! - [`metrics`](mod@metrics): the middleware that counts requests by route.
//! - [`tls`]: HTTPS: the certificate and key files, reloaded on SIGHUP or when they change.
//! - [`freshness`]: headers telling readers how stale the replica may be.

pub mod auth;
pub mod batch;
pub mod concurrency;
pub mod conditions;
pub mod consistency;
pub mod encoding;
pub mod extract;
pub mod freshness;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod range;
pub mod server;
pub mod sse;
pub mod tls;
pub mod topics;
pub mod watch;

use std::any::Any;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::app::AppState;
use crate::error::{ApiError, ErrorDetail, ErrorResponse};
use crate::http::auth::Needs;
use crate::http::openapi::{ApiDoc, finish_document};

/// Puts a handler behind the token check its route needs (or leaves it open, for the
/// document alone).
type Protect<'a> = &'a dyn Fn(MethodRouter<AppState>, Needs) -> MethodRouter<AppState>;

/// The API, one entry per route: each registers its handlers with axum and their
/// `#[utoipa::path]` operations in the document together, so neither can miss one. A
/// protected entry states what its token must allow ([`auth::Needs`]); `/healthz` and
/// `/readyz` are open.
fn api(protect: Protect) -> OpenApiRouter<AppState> {
    let needs = |routes: UtoipaMethodRouter<AppState>, needs| {
        routes.map(|handlers| protect(handlers, needs))
    };
    let read_key = needs(routes!(keys::get_key), Needs::Read);
    let write_key = needs(routes!(keys::put_key, keys::delete_key), Needs::Write);
    // An empty key reaches the handlers, which answer 400 rather than "no route".
    let empty_key = read_key.2.clone().merge(write_key.2.clone());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(read_key)
        .routes(write_key)
        .route("/v1/{topic}/keys/", empty_key)
        .routes(needs(routes!(range::scan_range), Needs::Read))
        .routes(needs(routes!(batch::write_batch), Needs::Write))
        .routes(needs(routes!(watch::watch_changes), Needs::Read))
        .routes(needs(routes!(topics::list_topics), Needs::Admin))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(needs(routes!(health::metrics), Needs::Metrics))
}

/// The OpenAPI document, with the crate's version, as served at `/openapi.json` and checked
/// in as `openapi/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = api(&|handlers, _| handlers).split_for_parts();
    finish_document(doc)
}

/// The application's routes, as `kvstore serve` serves them: the API (`api`), the document and
/// Swagger UI reading it, and the layers every request passes.
pub fn router(state: AppState) -> Router {
    let guard = |needs| from_fn_with_state(auth::Guard::new(&state.auth, needs), auth::check);
    let protect = |handlers: MethodRouter<AppState>, needs| handlers.route_layer(guard(needs));
    let (api, doc) = api(&protect).split_for_parts();
    // Written once: the document does not change while the service runs.
    let doc = serde_json::to_vec(&finish_document(doc)).expect("the OpenAPI document serializes");
    let doc = Bytes::from(doc);
    let serve_openapi = move || {
        let doc = doc.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], doc) }
    };
    let in_flight = concurrency::InFlight::new(state.config.http.max_concurrent_requests);
    api.route("/openapi.json", protect(get(serve_openapi), Needs::Docs))
        .merge(swagger_ui().route_layer(guard(Needs::Docs)))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(in_flight, concurrency::limit))
        .layer(axum::middleware::from_fn(metrics::track_http))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
        // Name the server, never its version.
        .layer(SetResponseHeaderLayer::overriding(
            header::SERVER,
            HeaderValue::from_static("kvstore"),
        ))
        .with_state(state)
}

/// Swagger UI at `/docs/`, reading the document served at `/openapi.json` (so there is one
/// document, not a second copy under `/docs`).
fn swagger_ui() -> Router<AppState> {
    Router::from(SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json")))
        .layer(axum::middleware::from_fn(docs_not_found))
}

/// Swagger UI answers an unknown file with an empty 404; give it the usual error body.
async fn docs_not_found(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if response.status() == StatusCode::NOT_FOUND {
        return ApiError::RouteNotFound(path).into_response();
    }
    response
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A handler that panicked answers 500 with the usual error body; the panic is logged and the
/// server keeps serving.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "request handler panicked");
    let body = ErrorResponse {
        error: ErrorDetail {
            code: "internal",
            message: "internal error".into(),
            failed: None,
            applied_offset: None,
        },
    };
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}
