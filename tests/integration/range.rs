//! Ranges by prefix and by bounds, paged with cursors.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Broker, Server};

/// Loads `keys` through batches, each value being the key itself as text.
async fn load(server: &Server, topic: &str, keys: &[String]) {
    for chunk in keys.chunks(500) {
        let ops: Vec<Value> = chunk
            .iter()
            .map(|k| json!({"op": "put", "key": k, "value": k}))
            .collect();
        let (status, body) = server.batch(topic, &json!({ "ops": ops })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

fn keys_of(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["key"].as_str().expect("key").to_owned())
        .collect()
}

#[tokio::test]
async fn prefix_and_bounds_page_through_more_than_1000_keys() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let mut users: Vec<String> = (0..1200).map(|i| format!("user/{i:05}")).collect();
    let others: Vec<String> = ["a", "user", "user0", "usera", "v/1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    load(&server, "rng", &users).await;
    load(&server, "rng", &others).await;
    users.sort();

    for page in [1000, 100, 7] {
        let items = server.dump("rng", "prefix=user/", page).await;
        assert_eq!(keys_of(&items), users, "page size {page}");
    }
    let first = &server.dump("rng", "prefix=user/", 1000).await[0];
    assert_eq!(first["value"], "user/00000");
    assert_eq!(first["encoding"], "text");

    let items = server
        .dump("rng", "start=user/00100&end=user/01100", 64)
        .await;
    assert_eq!(keys_of(&items), users[100..1100].to_vec());

    let all = server.dump("rng", "", 250).await;
    assert_eq!(all.len(), users.len() + others.len());
    let keys = keys_of(&all);
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "keys come in order");
}

#[tokio::test]
async fn values_are_embedded_by_content_type() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    server
        .put("emb", "json", r#"{"a":[1,2]}"#, "application/json")
        .await;
    server.put("emb", "text", "hello", "text/plain").await;
    server
        .put("emb", "bin", vec![0xffu8, 0x00], "application/octet-stream")
        .await;
    server
        .put("emb", "badjson", "{nope", "application/json")
        .await;
    let items = server.dump("emb", "", 10).await;
    let by_key = |k: &str| items.iter().find(|i| i["key"] == k).expect("item").clone();
    assert_eq!(by_key("json")["value"], json!({"a": [1, 2]}));
    assert_eq!(by_key("json")["encoding"], "json");
    assert_eq!(by_key("json")["content_type"], "application/json");
    assert_eq!(by_key("text")["value"], "hello");
    assert_eq!(by_key("text")["encoding"], "text");
    assert_eq!(by_key("bin")["value"], "/wA=");
    assert_eq!(by_key("bin")["encoding"], "base64");
    assert_eq!(by_key("badjson")["value"], "{nope");
    assert_eq!(by_key("badjson")["encoding"], "text");
    assert!(by_key("bin")["offset"].is_i64());
}

#[tokio::test]
async fn limits_are_capped_and_bad_queries_rejected() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let keys: Vec<String> = (0..1100).map(|i| format!("k{i:04}")).collect();
    load(&server, "lim", &keys).await;

    let (status, body) = server.get_json("/v1/lim/range").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["items"].as_array().expect("items").len(),
        100,
        "default limit"
    );
    let (_, body) = server.get_json("/v1/lim/range?limit=5000").await;
    assert_eq!(
        body["items"].as_array().expect("items").len(),
        1000,
        "capped limit"
    );
    assert!(body["next_cursor"].is_string());

    for query in ["limit=0", "limit=-1", "limit=abc", "cursor=***", "bogus=1"] {
        let (status, body) = server.get_json(&format!("/v1/lim/range?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{query}");
    }
    let (status, body) = server.get_json("/v1/lim/range?start=k0500&end=k0100").await;
    assert_eq!(status, StatusCode::OK, "an inverted range is empty: {body}");
    assert_eq!(body["items"], json!([]));
    let (status, body) = server.get_json("/v1/absent/range").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "topic_not_found");
}
