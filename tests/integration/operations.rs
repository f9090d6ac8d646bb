//! Health, readiness, metrics and the OpenAPI document.

use std::time::Duration;

use reqwest::StatusCode;

use crate::common::{Broker, Server, free_port, repo_path, topic};

#[tokio::test]
async fn readiness_is_503_while_the_broker_is_down_and_writes_fail_fast() {
    // Nothing listens on this port.
    let server = Server::start(&format!("127.0.0.1:{}", free_port()));
    let (status, body) = server.get_json("/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server
        .wait_readiness(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5))
        .await;
    // Once the probe has seen the broker down, writes are refused at once.
    server.wait_broker("down", Duration::from_secs(10)).await;
    let started = std::time::Instant::now();
    let (status, body) = server.put("t", "k", "v", "text/plain").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "broker_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn ready_once_the_broker_answers() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    server
        .wait_readiness(StatusCode::OK, Duration::from_secs(10))
        .await;
    let (_, body) = server.get_json("/readyz").await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["broker"], "up");
}

#[tokio::test]
async fn metrics_show_lag_0_after_catch_up() {
    let broker = Broker::shared();
    let writer = Server::start(&broker.address());
    let mut last = 0;
    for i in 0..50 {
        last = writer.put_ok("lagging", &format!("k{i}"), "v").await;
    }
    let reader = Server::start(&broker.address());
    reader.wait_applied("lagging", last).await;
    let text = metrics_text(&reader).await;
    assert_eq!(
        metric(&text, "kvstore_consumer_lag_records{topic=\"lagging\"}"),
        0.0
    );
    assert_eq!(
        metric(&text, "kvstore_topic_applied_offset{topic=\"lagging\"}"),
        (last + 1) as f64
    );
    assert_eq!(
        metric(&text, "kvstore_topic_end_offset{topic=\"lagging\"}"),
        (last + 1) as f64
    );
    assert_eq!(metric(&text, "kvstore_topic_keys{topic=\"lagging\"}"), 50.0);

    let text = metrics_text(&writer).await;
    assert_eq!(
        metric(
            &text,
            "kvstore_http_requests_total{method=\"PUT\",route=\"/v1/{topic}/keys/{*key}\",status=\"200\"}"
        ),
        50.0
    );
    assert_eq!(metric(&text, "kvstore_write_wait_seconds_count"), 50.0);
    // Counted whether the writer or the replay applied them.
    assert_eq!(
        metric(&text, "kvstore_records_applied_total{topic=\"lagging\"}"),
        50.0
    );
    let (_, topics) = writer.get_json("/v1/topics").await;
    assert_eq!(topics["topics"][0]["end_offset"], last + 1, "{topics}");
    assert_eq!(metric(&text, "kvstore_broker_up"), 1.0);
}

async fn metrics_text(server: &Server) -> String {
    server
        .http()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body")
}

/// The value of the sample named exactly `series` (name and labels).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

#[tokio::test]
async fn served_openapi_matches_the_checked_in_document() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let (status, served) = server.get_json("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let path = repo_path("openapi/openapi.json");
    let checked_in: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("openapi/openapi.json exists"))
            .expect("valid JSON");
    assert!(
        served == checked_in,
        "openapi/openapi.json is out of date: run `make openapi`"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let (status, body) = server.get_json("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "route_not_found");
    let response = server
        .http()
        .post(server.url("/v1/t/keys/k"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

/// The router and the OpenAPI document come from one list (`http/mod.rs` `api`); this holds
/// the result from outside: every operation the document names is routed, and answers
/// something other than "no route" or "wrong method".
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let (_, document) = server.get_json("/openapi.json").await;
    let topic = topic("routed");
    let paths = document["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        let url = server.url(&path.replace("{topic}", &topic).replace("{key}", "k"));
        for method in item.as_object().expect("path item").keys() {
            let method: reqwest::Method = method.to_uppercase().parse().expect("a method");
            let mut request = server.http().request(method.clone(), &url);
            if method == reqwest::Method::POST {
                request = request.json(&serde_json::json!({"ops": []}));
            }
            let response = request.send().await.expect("sent");
            let status = response.status();
            if response.headers()["content-type"] == "text/event-stream" {
                // A watch: routed, and its stream never ends by itself.
                checked += 1;
                continue;
            }
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let code = body["error"]["code"].as_str().unwrap_or_default();
            assert!(
                code != "route_not_found" && code != "method_not_allowed",
                "{method} {path} is documented but not routed: {status} {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 9, "only {checked} operations documented");
}

#[tokio::test]
async fn reads_are_served_from_memory_while_the_broker_is_down_and_say_how_stale() {
    let mut broker = Broker::dedicated();
    let server = Server::start(&broker.address());
    server.put_ok("kept", "k", "v").await;
    let fresh = server
        .http()
        .get(server.key_url("kept", "k"))
        .send()
        .await
        .expect("sent");
    assert_eq!(fresh.headers()["x-kv-lag"], "0");
    assert!(fresh.headers().get("x-kv-stale-seconds").is_none());

    broker.stop();
    server.wait_broker("down", Duration::from_secs(15)).await;
    let stale = server
        .http()
        .get(server.key_url("kept", "k"))
        .send()
        .await
        .expect("sent");
    assert_eq!(stale.status(), StatusCode::OK);
    assert!(
        stale.headers().contains_key("x-kv-stale-seconds"),
        "{:?}",
        stale.headers()
    );
    assert_eq!(stale.text().await.expect("body"), "v");
    let range = server
        .http()
        .get(server.url("/v1/kept/range"))
        .send()
        .await
        .expect("sent");
    assert_eq!(range.status(), StatusCode::OK);
    assert!(range.headers().contains_key("x-kv-stale-seconds"));
    let (status, body) = server.put("kept", "k2", "v", "text/plain").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}
