//! Faults: the broker down at startup or killed under load, applies that come too late, a
//! replay loop that dies, SIGTERM under load, and the bounds on waiting writes and topics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::load::{
    assert_acknowledged_present, assert_answers_are_successes_or_unavailable, write_until,
};
use crate::common::{Broker, Server, ServerOptions};

#[tokio::test]
async fn broker_down_at_startup_then_up() {
    let mut broker = Broker::not_started();
    let server = Server::start(&broker.address());
    server.wait_broker("down", Duration::from_secs(10)).await;
    let (status, _) = server.get_json("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let started = Instant::now();
    let (status, body) = server.put("late", "k", "v", "text/plain").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "broker_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "503 took {:?}",
        started.elapsed()
    );

    broker.restart();
    server
        .wait_readiness(StatusCode::OK, Duration::from_secs(30))
        .await;
    server.put_ok("late", "k", "v").await;
    assert_eq!(server.get("late", "k").await.2, b"v");
}

#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_write_not_applied_in_time_gets_504_within_the_write_timeout() {
    let broker = Broker::shared();
    broker.create_topic("slow", 1).await;
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default()
            .env("KVSTORE_WRITE_TIMEOUT", "1s")
            .env("FAILPOINTS", "replay-apply=sleep(4000)"),
    );
    // Attach the empty topic (no records to apply, so no delay yet).
    assert_eq!(server.get("slow", "k").await.0, StatusCode::NOT_FOUND);
    // A record this replica has not applied yet precedes the write.
    broker.produce("slow", b"other", Some(b"x")).await;
    let started = Instant::now();
    let (status, body) = server.put("slow", "k", "v", "text/plain").await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "write_timeout");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("may still apply"), "{message}");
    assert!(
        took < Duration::from_millis(2500),
        "504 after {took:?}, write_timeout is 1s"
    );
    // It did apply in the end.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.get("slow", "k").await.0 != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the timed-out write never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_dead_replay_loop_takes_readiness_down() {
    let broker = Broker::shared();
    broker.create_topic("doomed", 1).await;
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default()
            .env("KVSTORE_WRITE_TIMEOUT", "2s")
            .env("FAILPOINTS", "replay-apply=panic"),
    );
    assert_eq!(server.get("doomed", "k").await.0, StatusCode::NOT_FOUND);
    server
        .wait_readiness(StatusCode::OK, Duration::from_secs(10))
        .await;
    broker.produce("doomed", b"k", Some(b"v")).await;
    server
        .wait_readiness(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10))
        .await;
    let (_, body) = server.get_json("/readyz").await;
    assert_eq!(body["pending_topics"][0], "doomed", "{body}");
    assert!(
        server.log().contains("replay loop stopped unexpectedly"),
        "{}",
        server.log()
    );
    // Requests say so rather than serve what the dead loop left behind.
    let (status, body) = server.get_json("/v1/doomed/keys/k").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "topic_unavailable");
    // The server itself keeps answering.
    assert_eq!(server.get_json("/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn sigterm_under_load_loses_no_acknowledged_write() {
    let broker = Broker::shared();
    let server = Arc::new(Server::start(&broker.address()));
    server.put_ok("term", "warm-up", "v").await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let server = server.clone();
        let stop = stop.clone();
        tokio::spawn(async move { write_until(&server, "term", "w", 16, stop).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = server.signal_terminate();
    let exit_started = Instant::now();
    let exited = tokio::task::spawn_blocking({
        let server = server.clone();
        move || server.wait_exit(Duration::from_secs(15))
    })
    .await
    .expect("waited");
    assert!(signalled, "SIGTERM was delivered");
    assert!(exited, "the process exits within the shutdown timeout");
    assert!(exit_started.elapsed() < Duration::from_secs(15));
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.expect("load finished");
    for outcome in &outcomes {
        if let Some(status) = outcome.status {
            assert!(
                status.is_success() || status.is_server_error(),
                "{}: {status}",
                outcome.key
            );
        }
    }
    // A fresh replica finds every acknowledged write in the log.
    let replica = Server::start(&broker.address());
    assert_acknowledged_present(&replica, "term", &outcomes).await;
}

#[cfg(feature = "failpoints")]
#[tokio::test]
async fn waiting_writes_and_topics_are_bounded() {
    let broker = Broker::shared();
    broker.create_topic("busy", 1).await;
    let server = Arc::new(Server::start_with(
        &broker.address(),
        ServerOptions::default()
            .env("KVSTORE_LIMITS__MAX_PENDING_WRITES", "2")
            .env("KVSTORE_LIMITS__MAX_TOPICS", "2")
            .env("KVSTORE_WRITE_TIMEOUT", "10s")
            .env("FAILPOINTS", "replay-apply=sleep(1500)"),
    ));
    assert_eq!(server.get("busy", "k").await.0, StatusCode::NOT_FOUND);
    // A record the (slowed) replay has yet to apply: the writes below must wait for it.
    broker.produce("busy", b"other", Some(b"x")).await;
    let mut writes = Vec::new();
    for i in 0..8 {
        let server = server.clone();
        writes.push(tokio::spawn(async move {
            server
                .put("busy", &format!("k{i}"), "v", "text/plain")
                .await
        }));
    }
    let mut statuses = Vec::new();
    for write in writes {
        let (status, body) = write.await.expect("write finished");
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"]["code"], "overloaded");
        }
        statuses.push(status);
    }
    let overloaded = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let applied = statuses.iter().filter(|s| s.is_success()).count();
    assert!(overloaded >= 1, "{statuses:?}");
    assert!(applied >= 1, "{statuses:?}");
    assert_eq!(overloaded + applied, 8, "{statuses:?}");

    server.put_ok("second", "k", "v").await;
    let (status, body) = server.put("third", "k", "v", "text/plain").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "too_many_topics");
}

#[tokio::test]
async fn range_pages_are_bounded_by_items_and_bytes() {
    let broker = Broker::shared();
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default().env("KVSTORE_LIMITS__MAX_RANGE_BYTES", "20000"),
    );
    let value = "x".repeat(1000);
    for chunk in 0..10 {
        let ops: Vec<serde_json::Value> = (0..500)
            .map(|i| serde_json::json!({"op": "put", "key": format!("k{chunk}-{i:03}"), "value": value}))
            .collect();
        let (status, body) = server
            .batch("wide", &serde_json::json!({ "ops": ops }))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (_, body) = server.get_json("/v1/wide/range?limit=100000").await;
    let items = body["items"].as_array().expect("items");
    assert!(
        items.len() <= 21,
        "a page holds about max_range_bytes of data, got {} items",
        items.len()
    );
    assert!(body["next_cursor"].is_string());
    assert_eq!(server.dump("wide", "", 1000).await.len(), 5000);
}

/// Needs a broker whose data survives a restart: Kafka's does; Tansu's needs SQLite storage.
#[tokio::test]
async fn broker_killed_under_load_and_restarted_loses_nothing() {
    let dir = tempdir();
    let mut broker = Broker::persistent_not_started(&dir);
    broker.restart();
    let server = Arc::new(Server::start_with(
        &broker.address(),
        ServerOptions::default().env("KVSTORE_WRITE_TIMEOUT", "3s"),
    ));
    server.put_ok("crash", "warm-up", "v").await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let server = server.clone();
        let stop = stop.clone();
        tokio::spawn(async move { write_until(&server, "crash", "w", 8, stop).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    broker.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server
        .wait_readiness(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10))
        .await;
    broker.restart();
    server
        .wait_readiness(StatusCode::OK, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.expect("load finished");

    let failed = outcomes
        .iter()
        .filter(|o| !o.status.is_some_and(|s| s.is_success()))
        .count();
    assert_answers_are_successes_or_unavailable(&outcomes);
    assert!(failed > 0, "the outage was noticed");
    // Writes work again without restarting the service.
    let after = server.put_ok("crash", "after", "v").await;
    server.wait_applied("crash", after).await;
    assert_acknowledged_present(&server, "crash", &outcomes).await;
    // The replay went on from where it was: it started from the beginning once.
    let replays = server
        .log()
        .matches("replaying topic from the beginning")
        .count();
    assert_eq!(replays, 1, "{}", server.log());

    // The log itself holds every acknowledged write: a fresh replica agrees.
    let replica = Server::start(&broker.address());
    assert_acknowledged_present(&replica, "crash", &outcomes).await;
    replica.wait_applied("crash", after).await;
    assert_eq!(
        server.dump("crash", "", 1000).await,
        replica.dump("crash", "", 1000).await,
        "nothing skipped or applied twice"
    );
}

fn tempdir() -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("kvstore-test-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
#[ignore = "loads a million keys; run with make test-long"]
async fn a_range_over_a_million_keys_is_paged_not_buffered() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    const KEYS: usize = 1_000_000;
    const PER_BATCH: usize = 10_000;
    for batch in 0..KEYS / PER_BATCH {
        let ops: Vec<serde_json::Value> = (0..PER_BATCH)
            .map(|i| {
                serde_json::json!({"op": "put", "key": format!("k{:07}", batch * PER_BATCH + i), "value": "v"})
            })
            .collect();
        let (status, body) = server
            .batch("million", &serde_json::json!({ "ops": ops }))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let info = server.topic_info("million").await.expect("attached");
    assert_eq!(info["keys"], KEYS);

    // However large the limit asked, a page holds at most limits.max_range_limit items.
    let (status, body) = server.get_json("/v1/million/range?limit=1000000000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"].as_array().expect("items").len(), 1000);
    assert!(body["next_cursor"].is_string());

    // And paging reaches every key, once, in order.
    let items = server.dump("million", "", 1000).await;
    assert_eq!(items.len(), KEYS);
    assert_eq!(items[0]["key"], "k0000000");
    assert_eq!(items[KEYS - 1]["key"], format!("k{:07}", KEYS - 1));
}
