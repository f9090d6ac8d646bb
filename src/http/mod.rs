//! The HTTP API: the router, one module per resource, and the OpenAPI document.
//!
//! - [`keys`]: `GET/PUT/DELETE /v1/{topic}/keys/{key}`
//! - [`range`]: `GET /v1/{topic}/range`
//! - [`batch`]: `POST /v1/{topic}/batch`
//! - [`watch`]: `GET /v1/{topic}/watch`, changes as Server-Sent Events
//! - [`topics`]: `GET /v1/topics`
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`
//! - `/openapi.json` and, at `/docs`, Swagger UI reading it (built into the binary, so it works
//!   without network access).
//! - [`extract`] and [`encoding`]: strict request parsing and values inside JSON.
//! - [`server`]: the connection loop (header deadline, graceful stop).
//! - [`auth`]: the bearer-token check in front of protected routes.
//! - [`concurrency`]: the in-flight request limit (503 past it).
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
pub mod range;
pub mod server;
pub mod tls;
pub mod topics;
pub mod watch;

use std::any::Any;

use axum::Json;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::app::AppState;
use crate::error::{ApiError, ErrorDetail, ErrorResponse};
use crate::http::auth::Needs;

/// The OpenAPI document of the API, as served at `/openapi.json` and checked in as
/// `openapi/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kvstore",
        description = "A key-value store over HTTP whose source of truth is a compacted, \
                       single-partition Kafka topic per namespace. Reads are served from memory; \
                       a write answers once this replica has applied it.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        keys::get_key,
        keys::put_key,
        keys::delete_key,
        range::scan_range,
        batch::write_batch,
        watch::watch_changes,
        topics::list_topics,
        health::healthz,
        health::readyz,
        health::metrics,
    ),
    // Named in parameters and events, which do not collect the schemas they use.
    components(schemas(
        consistency::ConsistencyLevel,
        watch::WatchDelete,
        watch::WatchPosition
    )),
    tags(
        (name = "keys", description = "Values by key, ranges and batches"),
        (name = "topics", description = "The topics this replica serves"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document, with the crate's version.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    name_batch_operations(&mut doc);
    binary_values(&mut doc);
    watch::document_events(&mut doc);
    document_auth_and_limits(&mut doc);
    doc
}

/// Every operation but the probes may need a bearer token (when auth is on, which depends on
/// the deployment) and may be refused when too many requests are in flight: say both once
/// here rather than in every handler's response list.
fn document_auth_and_limits(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    use utoipa::openapi::{Ref, RefOr, ResponseBuilder};
    const SCHEME: &str = "bearer";
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        SCHEME,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A token configured in `auth.tokens`. Needed when auth is on (by default \
                     on any address but loopback); its scopes (`read:PATTERN`, \
                     `write:PATTERN`, `admin`, `metrics`) must allow the request.",
                ))
                .build(),
        ),
    );
    let error = |description: &str| -> RefOr<utoipa::openapi::Response> {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorResponse")))
                    .build(),
            )
            .build()
            .into()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let probe = matches!(path.as_str(), "/healthz" | "/readyz");
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            if !probe {
                operation.security =
                    Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
                responses.entry("401".into()).or_insert_with(|| {
                    error("No bearer token, or not a valid one (`unauthorized`)")
                });
                let forbidden = if path.starts_with("/v1/{topic}") {
                    "The token's scopes do not cover this topic (`forbidden`), or the topic is \
                     never served (`topic_denied`, see `topics.deny`)"
                } else {
                    "The token's scopes do not allow this (`forbidden`)"
                };
                responses
                    .entry("403".into())
                    .or_insert_with(|| error(forbidden));
                responses.entry("503".into()).or_insert_with(|| {
                    error("Too many requests in flight (`server_busy`), or the service is unavailable")
                });
            }
        }
    }
}

/// A value travels as its raw bytes: a PUT's body and a GET's answer (but for a value written
/// as `application/json`, which is JSON). utoipa describes `Vec<u8>` as a JSON array of
/// integers; say `string` with format `binary`, which is what code generators (and readers)
/// take for raw bytes. The PUT body stays optional: an empty body is an empty value.
fn binary_values(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let Some(item) = doc.paths.paths.get_mut("/v1/{topic}/keys/{key}") else {
        return;
    };
    let put_body = item
        .put
        .as_mut()
        .and_then(|put| put.request_body.as_mut())
        .map(|body| body.content.values_mut());
    let get_value = item
        .get
        .as_mut()
        .and_then(|get| get.responses.responses.get_mut("200"))
        .and_then(|response| match response {
            RefOr::T(response) => Some(
                response
                    .content
                    .iter_mut()
                    .filter(|(content_type, _)| *content_type != "application/json")
                    .map(|(_, content)| content),
            ),
            RefOr::Ref(_) => None,
        });
    for content in put_body
        .into_iter()
        .flatten()
        .chain(get_value.into_iter().flatten())
    {
        let bytes = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)));
        content.schema = Some(bytes.into());
    }
}

/// Batch operations are told apart by `op`. utoipa writes the variants inline; name each
/// (`BatchPut`, `BatchDelete`, from its title) as a schema of its own and state the
/// discriminator, so code generators make one type per operation and pick it by `op`. The
/// variants reject unknown fields (`deny_unknown_fields`), which utoipa states for structs but
/// not for enum variants; say it here too.
fn name_batch_operations(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{AdditionalProperties, Discriminator, Schema};
    use utoipa::openapi::{Ref, RefOr};
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut("BatchOperation") else {
        return;
    };
    let mut named = Vec::new();
    let mut mapping = Vec::new();
    for item in &mut one_of.items {
        let RefOr::T(Schema::Object(object)) = item else {
            continue;
        };
        let Some(name) = object.title.clone() else {
            continue;
        };
        let op = object
            .properties
            .get("op")
            .and_then(|op| match op {
                RefOr::T(Schema::Object(op)) => op.enum_values.as_ref(),
                _ => None,
            })
            .and_then(|values| values.first())
            .and_then(|value| value.as_str())
            .map(str::to_owned);
        object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        let schema = std::mem::replace(item, Ref::from_schema_name(&name).into());
        if let Some(op) = op {
            mapping.push((op, format!("#/components/schemas/{name}")));
        }
        named.push((name, schema));
    }
    one_of.discriminator = Some(Discriminator::with_mapping("op", mapping));
    components.schemas.extend(named);
}

/// The application's routes, as `kvstore serve` serves them. Each protected route
/// states what its token must allow ([`auth::Needs`]); `/healthz` and `/readyz` are open.
pub fn router(state: AppState) -> Router {
    let needs = |needs| from_fn_with_state(auth::Guard::new(&state.auth, needs), auth::check);
    let key_routes = get(keys::get_key).route_layer(needs(Needs::Read)).merge(
        put(keys::put_key)
            .delete(keys::delete_key)
            .route_layer(needs(Needs::Write)),
    );
    let in_flight = concurrency::InFlight::new(state.config.http.max_concurrent_requests);
    Router::new()
        .route("/v1/{topic}/keys/{*key}", key_routes.clone())
        // An empty key reaches the handlers, which answer 400 rather than "no route".
        .route("/v1/{topic}/keys/", key_routes)
        .route(
            "/v1/{topic}/range",
            get(range::scan_range).route_layer(needs(Needs::Read)),
        )
        .route(
            "/v1/{topic}/batch",
            post(batch::write_batch).route_layer(needs(Needs::Write)),
        )
        .route(
            "/v1/{topic}/watch",
            get(watch::watch_changes).route_layer(needs(Needs::Read)),
        )
        .route(
            "/v1/topics",
            get(topics::list_topics).route_layer(needs(Needs::Admin)),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/metrics",
            get(health::metrics).route_layer(needs(Needs::Metrics)),
        )
        .route(
            "/openapi.json",
            get(serve_openapi).route_layer(needs(Needs::Docs)),
        )
        .merge(swagger_ui().route_layer(needs(Needs::Docs)))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(in_flight, concurrency::limit))
        .layer(axum::middleware::from_fn(crate::metrics::track_http))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
        // Name the server, never its version.
        .layer(SetResponseHeaderLayer::overriding(
            header::SERVER,
            HeaderValue::from_static("kvstore"),
        ))
        .with_state(state)
}

async fn serve_openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
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
