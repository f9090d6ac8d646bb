//! Topic names, attaching, creation and the topics listing.

use reqwest::StatusCode;

use crate::common::{Broker, Server, ServerOptions};

#[tokio::test]
async fn invalid_topic_names_are_rejected() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let long = "t".repeat(250);
    // (`.` and `..` are checked in unit tests: HTTP clients resolve them as path segments.)
    for topic in [
        "bad%20name",
        "caf%C3%A9",
        "a%2Fb",
        "tab%09",
        "%ZZ",
        long.as_str(),
    ] {
        let response = server
            .http()
            .put(server.url(&format!("/v1/{topic}/keys/k")))
            .body("v")
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{topic}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "invalid_topic", "{topic}");
    }
    // 249 characters is the longest valid name.
    let longest = "t".repeat(249);
    server.put_ok(&longest, "k", "v").await;
}

#[tokio::test]
async fn unknown_topics_and_keys_are_distinct_404s_and_reads_create_nothing() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let (status, _, body) = server.get("ghost", "k").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error"]["code"], "topic_not_found");
    let (status, body) = server.delete("ghost", "k").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "topic_not_found");
    assert!(
        !broker.has_topic("ghost"),
        "reads and deletes never create a topic"
    );

    server.put_ok("real", "k", "v").await;
    let (status, _, body) = server.get("real", "other").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error"]["code"], "key_not_found");
}

#[tokio::test]
async fn created_topics_are_compacted_single_partition_and_listed() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    server.put_ok("made", "a", "12345").await;
    let metadata = broker
        .admin()
        .inner()
        .fetch_metadata(Some("made"), std::time::Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(metadata.topics()[0].partitions().len(), 1);

    let (status, body) = server.get_json("/v1/topics").await;
    assert_eq!(status, StatusCode::OK);
    let made = &body["topics"][0];
    assert_eq!(made["name"], "made");
    assert_eq!(made["state"], "ready");
    assert_eq!(made["keys"], 1);
    assert_eq!(made["bytes"], 6);
    assert_eq!(made["applied_offset"], 1);
    assert_eq!(made["end_offset"], 1);
    assert_eq!(made["lag"], 0);
}

#[tokio::test]
async fn multi_partition_topics_are_refused() {
    let broker = Broker::shared();
    broker.create_topic("four-parts", 4).await;
    let server = Server::start(&broker.address());
    let (status, body) = server.put("four-parts", "k", "v", "text/plain").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "topic_not_single_partition");
    let (status, _, _) = server.get("four-parts", "k").await;
    assert_eq!(status, StatusCode::CONFLICT);
    // The server goes on serving other topics.
    server.put_ok("narrow", "k", "v").await;
}

#[tokio::test]
async fn without_auto_create_a_put_to_a_missing_topic_is_404() {
    let broker = Broker::shared();
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default().env("KVSTORE_TOPICS__AUTO_CREATE", "false"),
    );
    let (status, body) = server.put("nocreate", "k", "v", "text/plain").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "topic_not_found");
    assert!(!broker.has_topic("nocreate"));

    broker.create_topic("exists", 1).await;
    server.put_ok("exists", "k", "v").await;
}

#[tokio::test]
async fn preloaded_topics_are_replayed_before_ready() {
    let broker = Broker::shared();
    broker.create_topic("pre", 1).await;
    for i in 0..100 {
        broker
            .produce("pre", format!("k{i}").as_bytes(), Some(b"v"))
            .await;
    }
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default().env("KVSTORE_TOPICS__PRELOAD", "[pre]"),
    );
    server
        .wait_readiness(StatusCode::OK, std::time::Duration::from_secs(30))
        .await;
    let info = server.topic_info("pre").await.expect("preloaded");
    assert_eq!(info["keys"], 100);
    assert_eq!(info["lag"], 0);
}
