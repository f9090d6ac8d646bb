//! The log as the source of truth: foreign producers, restarts and several replicas.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Broker, Server};

#[tokio::test]
async fn records_from_a_plain_kafka_producer_are_served() {
    let broker = Broker::shared();
    broker.create_topic("foreign", 1).await;
    broker
        .produce("foreign", b"plain", Some(b"from kafka"))
        .await;
    let server = Server::start(&broker.address());
    let (status, content_type, body) = server.get("foreign", "plain").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"from kafka");
    assert_eq!(content_type, "application/octet-stream");

    // Written while the server is serving: seen once caught up.
    let offset = broker.produce("foreign", b"later", Some(b"second")).await;
    server.wait_applied("foreign", offset).await;
    assert_eq!(server.get("foreign", "later").await.2, b"second");

    // A tombstone from the plain producer deletes.
    let offset = broker.produce("foreign", b"plain", None).await;
    server.wait_applied("foreign", offset).await;
    assert_eq!(
        server.get("foreign", "plain").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn content_types_and_empty_values_from_a_plain_kafka_producer() {
    let broker = Broker::shared();
    broker.create_topic("headers", 1).await;
    // Another header first, the name in another case: found all the same.
    let headers: [(&str, &[u8]); 2] = [("trace-id", b"abc"), ("Content-Type", b"text/plain")];
    broker
        .produce_with_headers("headers", b"typed", Some(b"hello"), &headers)
        .await;
    // Not something an HTTP header can carry: the default instead.
    let headers: [(&str, &[u8]); 1] = [("content-type", b"text/\x01plain")];
    broker
        .produce_with_headers("headers", b"odd", Some(b"v"), &headers)
        .await;
    // An empty value is a value, not a tombstone.
    broker.produce("headers", b"empty", Some(b"")).await;

    // Everything arrives through the replay of a server started afterwards.
    let server = Server::start(&broker.address());
    let (status, content_type, body) = server.get("headers", "typed").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (content_type.as_str(), body.as_slice()),
        ("text/plain", &b"hello"[..])
    );
    let (status, content_type, _) = server.get("headers", "odd").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/octet-stream");
    let (status, _, body) = server.get("headers", "empty").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
}

async fn write_mixed_history(server: &Server, topic: &str) -> i64 {
    let mut last = 0;
    for round in 0..5 {
        let ops: Vec<Value> = (0..100)
            .map(|i| {
                if (i + round) % 7 == 0 {
                    json!({"op": "delete", "key": format!("k{i}")})
                } else {
                    json!({"op": "put", "key": format!("k{i}"), "value": {"round": round, "i": i}})
                }
            })
            .collect();
        let (status, body) = server.batch(topic, &json!({ "ops": ops })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        last = body["offset"].as_i64().expect("offset");
    }
    for i in 0..20 {
        last = server
            .put_ok(topic, &format!("single{i}"), vec![i as u8; 10])
            .await;
    }
    last
}

#[tokio::test]
async fn a_restarted_replica_rebuilds_identical_state() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    write_mixed_history(&server, "state").await;
    let before = server.dump("state", "", 1000).await;
    assert!(!before.is_empty());
    drop(server);

    let restarted = Server::start(&broker.address());
    let after = restarted.dump("state", "", 1000).await;
    assert_eq!(
        before, after,
        "replay rebuilds the same keys, values, types and offsets"
    );
}

#[tokio::test]
async fn two_replicas_on_one_topic_converge() {
    let broker = Broker::shared();
    let a = Server::start(&broker.address());
    let b = Server::start(&broker.address());
    // Both write, interleaved, to the same keys.
    let (last_a, last_b) = tokio::join!(write_mixed_history(&a, "shared"), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        write_mixed_history(&b, "shared").await
    });
    let last = last_a.max(last_b);
    a.wait_applied("shared", last).await;
    b.wait_applied("shared", last).await;
    let state_a = a.dump("shared", "", 1000).await;
    let state_b = b.dump("shared", "", 1000).await;
    assert!(!state_a.is_empty());
    assert_eq!(
        state_a, state_b,
        "replicas that applied the same offsets agree"
    );

    // A write on one replica becomes visible on the other once it catches up.
    let offset = a.put_ok("shared", "late", "from a").await;
    b.wait_applied("shared", offset).await;
    assert_eq!(b.get("shared", "late").await.2, b"from a");
}
