//! What clients other than curl meet: Swagger UI at `/docs`.

use reqwest::StatusCode;

use crate::common::{Server, free_port};

/// The response's content type, or "" without one.
fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary_and_reads_openapi_json() {
    // The UI needs no broker; nothing listens on this port.
    let server = Server::start(&format!("127.0.0.1:{}", free_port()));

    // /docs redirects to /docs/ (followed), which is the UI's page.
    let response = server
        .http()
        .get(server.url("/docs"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.url().path(), "/docs/");
    assert!(content_type(&response).starts_with("text/html"));
    let page = response.text().await.expect("body");
    assert!(page.contains("swagger-ui-bundle.js"), "{page}");

    // The scripts the page loads are served too (built in, nothing fetched elsewhere).
    for (file, needle) in [
        ("swagger-ui-bundle.js", "SwaggerUIBundle"),
        (
            "swagger-ui-standalone-preset.js",
            "SwaggerUIStandalonePreset",
        ),
        ("swagger-initializer.js", "\"url\": \"/openapi.json\""),
    ] {
        let response = server
            .http()
            .get(server.url(&format!("/docs/{file}")))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert!(
            content_type(&response).contains("javascript"),
            "{file}: {}",
            content_type(&response)
        );
        let script = response.text().await.expect("body");
        assert!(script.contains(needle), "{file} lacks {needle}");
    }

    // The document it shows is the one at /openapi.json.
    let (status, doc) = server.get_json("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["info"]["title"], "kvstore");

    // An unknown file is a JSON 404 like any other unknown route.
    let (status, body) = server.get_json("/docs/nope.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "route_not_found");
}
