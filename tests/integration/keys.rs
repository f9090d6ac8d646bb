//! Single-key reads, writes and deletes.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Broker, Server, ServerOptions};

#[tokio::test]
async fn read_your_own_writes_for_1000_sequential_puts() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    for i in 0..1000 {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let offset = server.put_ok("ryw", &key, value.clone()).await;
        assert_eq!(offset, i, "offsets count up from 0");
        let (status, _, body) = server.get("ryw", &key).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, value.as_bytes(), "read {key} right after writing it");
    }
}

#[tokio::test]
async fn put_answers_offset_in_body_and_headers_and_get_returns_content_type() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let response = server
        .http()
        .put(server.key_url("docs", "a"))
        .header("content-type", "application/json")
        .body(r#"{"x":1}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-kv-offset"], "0");
    assert_eq!(response.headers()["etag"], "\"0\"");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, json!({"topic": "docs", "key": "a", "offset": 0}));

    let response = server
        .http()
        .get(server.key_url("docs", "a"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-kv-offset"], "0");
    assert_eq!(response.headers()["etag"], "\"0\"");
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        br#"{"x":1}"#
    );

    // A conditional GET with the current version is not modified.
    let response = server
        .http()
        .get(server.key_url("docs", "a"))
        .header("if-none-match", "\"0\"")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

    // Without a content type, values are octet streams.
    server.put_ok("docs", "b", "raw").await;
    let (_, content_type, _) = server.get("docs", "b").await;
    assert_eq!(content_type, "application/octet-stream");
}

#[tokio::test]
async fn delete_removes_and_deleting_an_absent_key_is_fine() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    server.put_ok("del", "k", "v").await;
    let (status, body) = server.delete("del", "k").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["offset"], 1);
    let (status, _, body) = server.get("del", "k").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error: serde_json::Value = serde_json::from_slice(&body).expect("json error");
    assert_eq!(error["error"]["code"], "key_not_found");

    let (status, body) = server.delete("del", "never-written").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["offset"], 2);
}

#[tokio::test]
async fn keys_with_slashes_spaces_and_non_ascii() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let keys = [
        "a/b/c",
        "with space",
        "ünïcödé/日本語",
        "emoji 🎉",
        "/leading",
        "trailing/",
        "a%b",
    ];
    for (i, key) in keys.iter().enumerate() {
        server.put_ok("odd", key, format!("v{i}")).await;
    }
    for (i, key) in keys.iter().enumerate() {
        let (status, _, body) = server.get("odd", key).await;
        assert_eq!(status, StatusCode::OK, "{key}");
        assert_eq!(body, format!("v{i}").as_bytes(), "{key}");
    }
    // A `/` may also be sent unescaped.
    let response = server
        .http()
        .get(server.url("/v1/odd/keys/a/b/c"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.text().await.expect("body"), "v0");
    let items = server.dump("odd", "", 100).await;
    let mut listed: Vec<&str> = items
        .iter()
        .map(|i| i["key"].as_str().expect("key"))
        .collect();
    let mut expected = keys.to_vec();
    listed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn binary_empty_and_max_size_values() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let binary: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    server.put_ok("vals", "binary", binary.clone()).await;
    server.put_ok("vals", "empty", Vec::new()).await;
    let max = vec![0xabu8; 1024 * 1024];
    server.put_ok("vals", "max", max.clone()).await;

    assert_eq!(server.get("vals", "binary").await.2, binary);
    let (status, _, body) = server.get("vals", "empty").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an empty value is a value, not a delete"
    );
    assert!(body.is_empty());
    assert_eq!(server.get("vals", "max").await.2, max);
}

#[tokio::test]
async fn oversize_keys_and_values_get_413_and_nothing_is_produced() {
    let broker = Broker::shared();
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default()
            .env("KVSTORE_LIMITS__MAX_KEY_BYTES", "16")
            .env("KVSTORE_LIMITS__MAX_VALUE_BYTES", "100"),
    );
    let first = server.put_ok("big", &"k".repeat(16), vec![1u8; 100]).await;

    let (status, body) = server.put("big", &"k".repeat(17), "v", "text/plain").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "key_too_large");

    let (status, body) = server
        .put("big", "k", vec![1u8; 101], "application/octet-stream")
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "value_too_large");

    // A chunked body with no declared length is cut off at the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![1u8; 60]), Ok(vec![1u8; 60])];
    let response = server
        .http()
        .put(server.key_url("big", "chunked"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Nothing was produced: the next write lands right after the first.
    let next = server.put_ok("big", "after", "v").await;
    assert_eq!(next, first + 1);
    assert_eq!(server.get("big", "k").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_writers_all_read_their_own_writes() {
    let broker = Broker::shared();
    let server = std::sync::Arc::new(Server::start(&broker.address()));
    let mut writers = Vec::new();
    for writer in 0..48 {
        let server = server.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..10 {
                let key = format!("w{writer}");
                let value = format!("{writer}:{round}");
                server.put_ok("conc", &key, value.clone()).await;
                let (status, _, body) = server.get("conc", &key).await;
                assert_eq!(status, StatusCode::OK);
                assert_eq!(String::from_utf8(body).expect("utf8"), value);
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer finished");
    }
}
