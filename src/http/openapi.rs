//! The OpenAPI document besides its operations: what it says of the service, and what the
//! handlers' `#[utoipa::path]`s cannot say, added once for every operation they concern.
//! The operations themselves come from the route list (`api` in `http/mod.rs`).

use utoipa::OpenApi;

use super::{consistency, watch};

/// What the OpenAPI document says besides its operations, which the route list adds.
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

/// What the handlers' `#[utoipa::path]`s cannot say, each added once for every operation.
pub(super) fn finish_document(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    key_parameter(&mut doc);
    name_batch_operations(&mut doc);
    binary_values(&mut doc);
    document_events(&mut doc);
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

/// Errors of the operations on a topic: every one of them refuses a topic of more than one
/// partition (409); a write (PUT, POST, DELETE) is also refused while too many writes are in
/// progress (429).
fn document_topic_errors(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/{topic}/") {
            continue;
        }
        let operations = [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
        ];
        for (operation, write) in operations {
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

/// The kinds of event a watch sends, and the schema of each one's `data`.
const EVENT_KINDS: [(&str, &str); 5] = [
    ("put", "RangeItem"),
    ("delete", "WatchDelete"),
    ("synced", "WatchPosition"),
    ("progress", "WatchPosition"),
    ("error", "ErrorResponse"),
];

/// Describes the events of `/v1/{topic}/watch` in the OpenAPI document. In OpenAPI 3.1 the
/// schema of an event stream is that of one event (fields `event`, `id`, `data`); `data` is
/// JSON of the schema its kind names (`contentMediaType` and `contentSchema`, which utoipa
/// has no field for).
fn document_events(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::extensions::Extensions;
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    let Some(content) = doc
        .paths
        .paths
        .get_mut("/v1/{topic}/watch")
        .and_then(|item| item.get.as_mut())
        .and_then(|get| get.responses.responses.get_mut("200"))
        .and_then(|response| match response {
            RefOr::T(response) => response.content.get_mut("text/event-stream"),
            RefOr::Ref(_) => None,
        })
    else {
        return;
    };
    let mut events = OneOfBuilder::new().description(Some(
        "One event: its kind, its offset as `id` (absent on the keys and patches of a \
         snapshot, and on errors), and its data as JSON.",
    ));
    for (kind, data_schema) in EVENT_KINDS {
        let mut data_extensions = Extensions::default();
        data_extensions.insert(
            "contentSchema".into(),
            serde_json::json!({ "$ref": format!("#/components/schemas/{data_schema}") }),
        );
        let data = ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/json")
            .extensions(Some(data_extensions));
        let event = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([kind])),
            )
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^-?[0-9]+$")),
            )
            .property("data", data)
            .required("event")
            .required("data");
        events = events.item(event);
    }
    content.schema = Some(events.into());
}
