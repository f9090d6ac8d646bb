//! Access control and hardening: bearer tokens on every route, topic-pattern scopes, token
//! rotation, denied topics, the in-flight limit, and what the server says about itself.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Broker, Server, ServerOptions, json_of, topic};

const FULL: &str = "full-access-token-0123456789abcdef";
const READER: &str = "users-reader-token-0123456789abcdef";
const NO_SCOPE: &str = "unscoped-token-0123456789abcdef";

/// Auth on, three tokens (one read from a file), `/metrics` and `/docs` protected.
fn protected_server(broker: &Broker, token_dir: &Path) -> Server {
    let reader_file = token_dir.join("reader-token");
    std::fs::write(&reader_file, format!("{READER}\n")).expect("token file");
    let tokens = [
        r#"{ name = "full", secret = { env = "TEST_FULL_TOKEN" }, scopes = ["read:*", "write:*", "admin", "metrics"] }"#.to_owned(),
        format!(
            r#"{{ name = "users-reader", secret = {{ file = "{}" }}, scopes = ["read:users*"] }}"#,
            reader_file.display()
        ),
        r#"{ name = "nothing", secret = { env = "TEST_NO_SCOPE_TOKEN" }, scopes = ["read:matches-no-topic"] }"#.to_owned(),
    ];
    let tokens = format!("[{}]", tokens.join(", "));
    Server::start_with(
        &broker.address(),
        ServerOptions::default()
            .env("KVSTORE_AUTH__ENABLED", "true")
            .env("KVSTORE_AUTH__OPEN_DOCS", "false")
            .env("KVSTORE_AUTH__TOKENS", &tokens)
            .env("TEST_FULL_TOKEN", FULL)
            .env("TEST_NO_SCOPE_TOKEN", NO_SCOPE),
    )
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kvstore-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

async fn call(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = server.http().request(method, server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn every_route_needs_a_token_with_the_right_scope() {
    let broker = Broker::shared();
    let dir = temp_dir("auth-routes");
    let server = protected_server(broker, &dir);
    let users = topic("users");
    let batch = json!({"ops": [{"op": "put", "key": "b", "value": "1"}]});
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::PUT, format!("/v1/{users}/keys/k"), None),
        (Method::GET, format!("/v1/{users}/keys/k"), None),
        (Method::GET, format!("/v1/{users}/range?prefix=k"), None),
        // With a good token a stream, which the check below drops after its status.
        (Method::GET, format!("/v1/{users}/watch?prefix=k"), None),
        (Method::POST, format!("/v1/{users}/batch"), Some(batch)),
        (Method::DELETE, format!("/v1/{users}/keys/k"), None),
        (Method::GET, "/v1/topics".to_owned(), None),
        (Method::GET, "/metrics".to_owned(), None),
        (Method::GET, "/openapi.json".to_owned(), None),
        (Method::GET, "/docs/".to_owned(), None),
    ];
    for (method, path, body) in &routes {
        let what = format!("{method} {path}");

        let response = call(&server, method.clone(), path, None, body.clone()).await;
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let (status, error) = json_of(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} without a token");
        assert_eq!(error["error"]["code"], "unauthorized", "{what}: {error}");
        assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="kvstore""#));

        let bad = "not-a-configured-token-0123456789";
        let (status, error) =
            json_of(call(&server, method.clone(), path, Some(bad), body.clone()).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} with a bad token");
        assert_eq!(error["error"]["code"], "unauthorized", "{what}: {error}");

        // The docs need only a valid token, so every token passes there.
        if !path.starts_with("/openapi") && !path.starts_with("/docs") {
            let (status, error) =
                json_of(call(&server, method.clone(), path, Some(NO_SCOPE), body.clone()).await)
                    .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{what} without the scope");
            assert_eq!(error["error"]["code"], "forbidden", "{what}: {error}");
            let message = error["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("\"nothing\""),
                "names the token: {message}"
            );
        }

        let response = call(&server, method.clone(), path, Some(FULL), body.clone()).await;
        assert!(
            response.status().is_success(),
            "{what} with a good token: {}",
            response.status()
        );
    }

    // Health and readiness stay open.
    for path in ["/healthz", "/readyz"] {
        let response = call(&server, Method::GET, path, None, None).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
    // Nothing unauthenticated changed the store: only the good token's writes are there.
    let response = call(
        &server,
        Method::GET,
        &format!("/v1/{users}/range"),
        Some(FULL),
        None,
    )
    .await;
    let (_, page) = json_of(response).await;
    let keys: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| item["key"].as_str())
        .collect();
    assert_eq!(keys, ["b"], "{page}");
    let metrics = call(&server, Method::GET, "/metrics", Some(FULL), None)
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics.contains(r#"kvstore_auth_rejections_total{reason="forbidden"}"#),
        "rejections are counted"
    );
    assert!(
        !metrics.contains(FULL) && !server.log().contains(FULL),
        "no secret leaks"
    );
}

#[tokio::test]
async fn scopes_follow_topic_patterns() {
    let broker = Broker::shared();
    let dir = temp_dir("auth-patterns");
    let server = protected_server(broker, &dir);
    let users = topic("users");
    let orders = topic("orders");
    for topic in [&users, &orders] {
        let response = call(
            &server,
            Method::PUT,
            &format!("/v1/{topic}/keys/a"),
            Some(FULL),
            None,
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{topic}");
    }
    let read = |topic: &str| format!("/v1/{topic}/keys/a");
    let response = call(&server, Method::GET, &read(&users), Some(READER), None).await;
    assert_eq!(response.status(), StatusCode::OK, "users* covers {users}");
    let response = call(&server, Method::GET, &read(&orders), Some(READER), None).await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "users* does not cover {orders}"
    );
    let response = call(&server, Method::PUT, &read(&users), Some(READER), None).await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "read does not imply write"
    );
    let response = call(&server, Method::GET, "/v1/topics", Some(READER), None).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "no admin scope");

    // A percent-encoded topic name is matched as decoded, not as written.
    let encoded = format!("/v1/{}/keys/a", orders.replacen('o', "%6F", 1));
    let response = call(&server, Method::GET, &encoded, Some(READER), None).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{encoded}");
    // A malformed topic is told only to a client with a valid token.
    let response = call(&server, Method::GET, "/v1/bad%20topic/keys/a", None, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = call(
        &server,
        Method::GET,
        "/v1/bad%20topic/keys/a",
        Some(READER),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tokens_rotate_on_sighup() {
    let broker = Broker::shared();
    let dir = temp_dir("auth-rotate");
    let server = protected_server(broker, &dir);
    let users = topic("users");
    let path = format!("/v1/{users}/keys/a");
    call(&server, Method::PUT, &path, Some(FULL), None).await;
    assert_eq!(
        call(&server, Method::GET, &path, Some(READER), None)
            .await
            .status(),
        StatusCode::OK
    );

    let rotated = "users-reader-rotated-0123456789abcdef";
    std::fs::write(dir.join("reader-token"), rotated).expect("rotate");
    assert!(server.signal("HUP"), "SIGHUP delivered");
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&server, Method::GET, &path, Some(rotated), None)
        .await
        .status()
        != StatusCode::OK
    {
        assert!(
            Instant::now() < deadline,
            "rotated token not accepted:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = call(&server, Method::GET, &path, Some(READER), None).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "the old token is gone"
    );

    // A broken rotation keeps the tokens in use.
    std::fs::remove_file(dir.join("reader-token")).expect("remove");
    assert!(server.signal("HUP"));
    server
        .wait_log("not reloaded", Duration::from_secs(10))
        .await;
    let response = call(&server, Method::GET, &path, Some(rotated), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        !server.log().contains(rotated),
        "the secret is never logged"
    );
}

#[tokio::test]
async fn metrics_and_docs_can_be_open() {
    let broker = Broker::shared();
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default()
            .env("KVSTORE_AUTH__ENABLED", "true")
            .env("KVSTORE_AUTH__OPEN_METRICS", "true")
            .env(
                "KVSTORE_AUTH__TOKENS",
                r#"[{ name = "app", secret = { env = "TEST_APP_TOKEN" }, scopes = ["read:*"] }]"#,
            )
            .env("TEST_APP_TOKEN", FULL),
    );
    for path in ["/metrics", "/openapi.json", "/docs/"] {
        let response = call(&server, Method::GET, path, None, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path} is open");
    }
    let response = call(&server, Method::GET, "/v1/t/keys/a", None, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "data is not");
}

#[tokio::test]
async fn internal_and_denied_topics_are_never_served() {
    let broker = Broker::shared();
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default().env("KVSTORE_TOPICS__DENY", r#"["__*", "secret*"]"#),
    );
    for topic in ["__consumer_offsets", "__kvstore_probe", "secrets"] {
        for (method, path) in [
            (Method::GET, format!("/v1/{topic}/keys/a")),
            (Method::PUT, format!("/v1/{topic}/keys/a")),
            (Method::GET, format!("/v1/{topic}/range")),
        ] {
            let (status, error) =
                json_of(call(&server, method.clone(), &path, None, None).await).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
            assert_eq!(error["error"]["code"], "topic_denied", "{error}");
        }
        assert!(
            !broker.has_topic(topic) || topic == "__consumer_offsets",
            "{topic} not created"
        );
    }
    let response = call(
        &server,
        Method::PUT,
        &format!("/v1/{}/keys/a", topic("public")),
        None,
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "other topics are served");
}

#[tokio::test]
async fn past_the_in_flight_limit_requests_get_503() {
    let broker = Broker::shared();
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default().env("KVSTORE_HTTP__MAX_CONCURRENT_REQUESTS", "1"),
    );
    server
        .wait_readiness(StatusCode::OK, Duration::from_secs(10))
        .await;
    let address = server.base().trim_start_matches("http://").to_owned();
    // A PUT whose body never comes holds the one slot while its handler waits for the body.
    let put = format!(
        "PUT /v1/{}/keys/a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",
        topic("busy")
    );
    let hold = || {
        let mut holder = TcpStream::connect(&address).expect("connect");
        holder.write_all(put.as_bytes()).expect("send");
        holder.set_nonblocking(true).expect("nonblocking");
        holder
    };
    let mut holder = hold();
    let deadline = Instant::now() + Duration::from_secs(10);
    let busy = loop {
        let response = call(&server, Method::GET, "/v1/topics", None, None).await;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        // The PUT may have come second and been turned away itself: send it again.
        if holder.peek(&mut [0u8; 1]).is_ok() {
            holder = hold();
        }
        assert!(Instant::now() < deadline, "never busy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(busy.headers()["retry-after"], "1");
    let (_, error) = json_of(busy).await;
    assert_eq!(error["error"]["code"], "server_busy", "{error}");
    let response = call(&server, Method::GET, "/readyz", None, None).await;
    assert!(response.status().is_success(), "probes are not counted");

    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&server, Method::GET, "/v1/topics", None, None)
        .await
        .status()
        != StatusCode::OK
    {
        assert!(Instant::now() < deadline, "the slot was not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_server_header_names_no_version() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    for path in ["/healthz", "/v1/topics", "/no/such/route"] {
        let response = call(&server, Method::GET, path, None, None).await;
        assert_eq!(response.headers()["server"], "kvstore", "{path}");
    }
}

#[tokio::test]
async fn auth_is_required_off_loopback_unless_turned_off_with_a_warning() {
    let broker = Broker::shared();
    let brokers = broker.address();
    let off_loopback = ServerOptions {
        listen: Some("0.0.0.0:0".into()),
        ..ServerOptions::default()
    };
    let output = Server::refused_start(&brokers, off_loopback.clone());
    assert!(
        output.contains("auth.tokens") && output.contains("auth.enabled = false"),
        "says why and what to do:\n{output}"
    );

    let server = Server::start_with(&brokers, off_loopback.env("KVSTORE_AUTH__ENABLED", "false"));
    server
        .wait_log("authentication is OFF", Duration::from_secs(10))
        .await;
    let response = call(&server, Method::GET, "/v1/topics", None, None).await;
    assert_eq!(response.status(), StatusCode::OK, "serves without tokens");
    let loopback = Server::start(&brokers);
    assert!(!loopback.log().contains("authentication is OFF"));
}
