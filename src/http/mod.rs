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
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::app::AppState;
use crate::error::{ApiError, ErrorDetail, ErrorResponse};
use crate::http::auth::Needs;

/// What the OpenAPI document says besides its operations, which [`api`] adds.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kvstore",
        description = "A key-value store over HTTP whose source of truth is a compacted, \
                       single-partition Kafka topic per namespace. Reads are served from memory; \
                       a write answers once this replica has applied it.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
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

/// What the handlers' `#[utoipa::path]`s cannot say, each added once for every operation.
fn finish_document(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    key_parameter(&mut doc);
    name_batch_operations(&mut doc);
    binary_values(&mut doc);
    watch::document_events(&mut doc);
    document_topic_errors(&mut doc);
    document_auth_and_limits(&mut doc);
    doc
}

/// A key may hold slashes, so axum routes it as the catch-all `{*key}`; OpenAPI has no such
/// thing, and the parameter is simply `{key}` there.
fn key_parameter(doc: &mut utoipa::openapi::OpenApi) {
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (path.replace("{*key}", "{key}"), item))
        .collect();
}

/// Errors every operation on a topic may answer: a topic of more than one partition is
/// refused (409), and a write is refused while too many are in progress (429).
fn document_topic_errors(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/{topic}/") {
            continue;
        }
        let reads = [&mut item.get]
            .into_iter()
            .map(|operation| (operation, false));
        let writes = [&mut item.put, &mut item.post, &mut item.delete]
            .into_iter()
            .map(|operation| (operation, true));
        for (operation, write) in reads.chain(writes) {
            let Some(operation) = operation else {
                continue;
            };
            let responses = &mut operation.responses.responses;
            responses
                .entry("409".into())
                .or_insert_with(|| error_response("The topic has more than one partition"));
            if write {
                responses.entry("429".into()).or_insert_with(|| {
                    error_response("Too many writes in progress; nothing was written")
                });
            }
        }
    }
}

/// A response carrying the usual error body.
fn error_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    utoipa::openapi::ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name(
                    "ErrorResponse",
                )))
                .build(),
        )
        .build()
        .into()
}

/// Every operation but the probes may need a bearer token (when auth is on, which depends on
/// the deployment) and may be refused when too many requests are in flight: say both once
/// here rather than in every handler's response list.
fn document_auth_and_limits(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
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
                    error_response("No bearer token, or not a valid one (`unauthorized`)")
                });
                let forbidden = if path.starts_with("/v1/{topic}") {
                    "The token's scopes do not cover this topic (`forbidden`), or the topic is \
                     never served (`topic_denied`, see `topics.deny`)"
                } else {
                    "The token's scopes do not allow this (`forbidden`)"
                };
                responses
                    .entry("403".into())
                    .or_insert_with(|| error_response(forbidden));
                responses.entry("503".into()).or_insert_with(|| {
                    error_response("Too many requests in flight (`server_busy`), or the service is unavailable")
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

/// The application's routes, as `kvstore serve` serves them: the [`api`], the document and
/// Swagger UI reading it, and the layers every request passes.
pub fn router(state: AppState) -> Router {
    let auth = state.auth.clone();
    let protect = move |handlers: MethodRouter<AppState>, needs| {
        handlers.route_layer(from_fn_with_state(
            auth::Guard::new(&auth, needs),
            auth::check,
        ))
    };
    let (api, doc) = api(&protect).split_for_parts();
    let doc = Arc::new(finish_document(doc));
    let in_flight = concurrency::InFlight::new(state.config.http.max_concurrent_requests);
    api.route(
        "/openapi.json",
        protect(get(move || serve_openapi(doc.clone())), Needs::Docs),
    )
    .merge(swagger_ui().route_layer(from_fn_with_state(
        auth::Guard::new(&state.auth, Needs::Docs),
        auth::check,
    )))
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

async fn serve_openapi(doc: Arc<utoipa::openapi::OpenApi>) -> Json<utoipa::openapi::OpenApi> {
    Json(doc.as_ref().clone())
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
