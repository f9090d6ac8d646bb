//! Conditional writes, atomic batches and reads that wait for an offset, across replicas:
//! Apache Kafka only (Tansu accepts transactions but does not honour them).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Broker, Server, ServerOptions, topic};

fn kafka() -> &'static Broker {
    Broker::shared_kafka("Apache Kafka's transactions")
}

/// GET `key` with `query` (such as `consistency=strong`): status, body, and the ETag.
async fn get_with(
    server: &Server,
    topic: &str,
    key: &str,
    query: &str,
) -> (StatusCode, String, Option<String>) {
    let response = server
        .http()
        .get(format!("{}?{query}", server.key_url(topic, key)))
        .send()
        .await
        .expect("GET sent");
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.expect("body");
    (status, body, etag)
}

fn etag(offset: i64) -> String {
    format!("\"{offset}\"")
}

fn version_of(body: &Value) -> Option<i64> {
    body["error"]["failed"][0]["current_version"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_are_judged_against_the_latest_version_in_log_order_on_any_replica() {
    let broker = kafka();
    let topic = topic("conditional");
    let a = Server::start(&broker.address());
    let b = Server::start(&broker.address());

    let first = a.put_ok(&topic, "k", "v1").await;
    // B may not have applied the first write yet; the condition is judged in log order.
    let (status, body) = b.put_if(&topic, "k", "v2", "If-Match", &etag(first)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["offset"].as_i64().expect("offset");
    assert!(second > first);
    // A, which may not have applied B's write, refuses the stale version and names the latest.
    let (status, body) = a.put_if(&topic, "k", "v3", "If-Match", &etag(first)).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(body["error"]["code"], "precondition_failed");
    assert_eq!(body["error"]["failed"][0]["key"], "k");
    assert_eq!(version_of(&body), Some(second), "{body}");
    // A list of ETags holds if any matches; weak tags never do.
    let tags = format!("\"1000000\", {}", etag(second));
    let (status, body) = a.put_if(&topic, "k", "v4", "If-Match", &tags).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fourth = body["offset"].as_i64().expect("offset");
    let weak = format!("W/{}", etag(fourth));
    let (status, _) = b.put_if(&topic, "k", "v5", "If-Match", &weak).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, body, tag) = get_with(&b, &topic, "k", "consistency=strong").await;
    assert_eq!(
        (status, body.as_str(), tag),
        (StatusCode::OK, "v4", Some(etag(fourth)))
    );

    // If-Match: * needs the key; If-None-Match: * needs it absent.
    let (status, body) = a.put_if(&topic, "absent", "x", "If-Match", "*").await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body["error"]["failed"][0]["current_version"], Value::Null);
    let (status, body) = b
        .put_if(&topic, "created", "once", "If-None-Match", "*")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let created = body["offset"].as_i64().expect("offset");
    let (status, body) = a
        .put_if(&topic, "created", "twice", "If-None-Match", "*")
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(version_of(&body), Some(created));

    // DELETE honours If-Match too.
    let stale = b
        .delete_if(&topic, "created", "If-Match", &etag(first))
        .await;
    assert_eq!(stale.0, StatusCode::PRECONDITION_FAILED, "{}", stale.1);
    let current = a
        .delete_if(&topic, "created", "If-Match", &etag(created))
        .await;
    assert_eq!(current.0, StatusCode::OK, "{}", current.1);
    let (status, ..) = get_with(&b, &topic, "created", "consistency=strong").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A malformed tag is a 400 and writes nothing.
    let (status, body) = a.put_if(&topic, "k", "bad", "If-Match", "4").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_header");
    let (_, body, _) = get_with(&a, &topic, "k", "consistency=strong").await;
    assert_eq!(body, "v4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_writes_racing_with_one_version_through_two_replicas_exactly_one_wins() {
    let broker = kafka();
    let topic = topic("race");
    let a = Server::start(&broker.address());
    let b = Server::start(&broker.address());
    let mut version = a.put_ok(&topic, "k", "0").await;
    for round in 1..=20 {
        let tag = etag(version);
        let (value_a, value_b) = (format!("a{round}"), format!("b{round}"));
        let (on_a, on_b) = tokio::join!(
            a.put_if(&topic, "k", &value_a, "If-Match", &tag),
            b.put_if(&topic, "k", &value_b, "If-Match", &tag),
        );
        let winners: Vec<&(StatusCode, Value)> = [&on_a, &on_b]
            .into_iter()
            .filter(|(s, _)| *s == StatusCode::OK)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {on_a:?} {on_b:?}");
        let loser = if on_a.0 == StatusCode::OK {
            &on_b
        } else {
            &on_a
        };
        assert_eq!(
            loser.0,
            StatusCode::PRECONDITION_FAILED,
            "round {round}: {loser:?}"
        );
        version = winners[0].1["offset"].as_i64().expect("offset");
        assert_eq!(version_of(&loser.1), Some(version), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_incremented_by_compare_and_set_from_32_clients_over_3_replicas_loses_nothing() {
    const CLIENTS: usize = 32;
    const INCREMENTS: usize = 3;
    let broker = kafka();
    let topic = topic("counter");
    let servers: Arc<Vec<Server>> =
        Arc::new((0..3).map(|_| Server::start(&broker.address())).collect());
    servers[0].put_ok(&topic, "counter", "0").await;
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let conflicts = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let servers = servers.clone();
            let topic = topic.clone();
            let acknowledged = acknowledged.clone();
            let conflicts = conflicts.clone();
            tokio::spawn(async move {
                let server = &servers[client % servers.len()];
                let mut done = 0;
                while done < INCREMENTS {
                    assert!(
                        started.elapsed() < Duration::from_secs(120),
                        "client {client}: {done} increments in 120 s"
                    );
                    let (status, body, tag) =
                        get_with(server, &topic, "counter", "consistency=strong").await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    let value: usize = body.parse().expect("a number");
                    let tag = tag.expect("an ETag");
                    let next = (value + 1).to_string();
                    let (status, body) = server
                        .put_if(&topic, "counter", &next, "If-Match", &tag)
                        .await;
                    match status {
                        StatusCode::OK => {
                            done += 1;
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        StatusCode::PRECONDITION_FAILED => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("client {client}: {other} {body}"),
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client finished");
    }
    let acknowledged = acknowledged.load(Ordering::Relaxed);
    assert_eq!(acknowledged, CLIENTS * INCREMENTS);
    for server in servers.iter() {
        let (status, body, _) = get_with(server, &topic, "counter", "consistency=strong").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, acknowledged.to_string(), "a replica's counter");
    }
    eprintln!(
        "counter: {acknowledged} increments acknowledged, {} conflicts (412) retried, {:.1} s",
        conflicts.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

/// The accounts of the atomic-batch test, and the total they always hold.
const ACCOUNTS: usize = 8;
const TOTAL: i64 = 8000;

/// The accounts' balances and versions as `server` has them, read by one range request; `None`
/// while some account is missing.
async fn accounts(server: &Server, topic: &str, query: &str) -> Option<Vec<(i64, i64)>> {
    let (status, body) = server
        .get_json(&format!("/v1/{topic}/range?prefix=acct/&{query}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body["items"].as_array().expect("items");
    (items.len() == ACCOUNTS).then(|| {
        items
            .iter()
            .map(|item| {
                (
                    item["value"].as_i64().expect("a balance"),
                    item["offset"].as_i64().expect("a version"),
                )
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reader_on_any_replica_sees_part_of_an_atomic_batch() {
    let broker = kafka();
    let topic = topic("atomic");
    let servers: Arc<Vec<Server>> =
        Arc::new((0..3).map(|_| Server::start(&broker.address())).collect());
    let opening: Vec<Value> = (0..ACCOUNTS)
        .map(|i| json!({"op": "put", "key": format!("acct/{i}"), "value": TOTAL / ACCOUNTS as i64}))
        .collect();
    let (status, body) = servers[0]
        .batch(&topic, &json!({"atomic": true, "ops": opening}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let transfers = Arc::new(AtomicUsize::new(0));
    // Writers on the first replica move money between every account at once, each batch
    // conditional on the versions it read.
    let writers: Vec<_> = (0..3)
        .map(|writer| {
            let (servers, topic, stop, transfers) = (
                servers.clone(),
                topic.clone(),
                stop.clone(),
                transfers.clone(),
            );
            tokio::spawn(async move {
                let mut round = writer as i64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let Some(balances) = accounts(&servers[0], &topic, "consistency=strong").await
                    else {
                        panic!("an account is missing on the writers' replica");
                    };
                    let ops: Vec<Value> = balances
                        .iter()
                        .enumerate()
                        .map(|(i, (balance, version))| {
                            let change = if i % 2 == 0 { round % 7 } else { -(round % 7) };
                            json!({"op": "put", "key": format!("acct/{i}"),
                                   "value": balance + change, "if_version": version})
                        })
                        .collect();
                    let (status, body) = servers[0]
                        .batch(&topic, &json!({"atomic": true, "ops": ops}))
                        .await;
                    match status {
                        StatusCode::OK => {
                            transfers.fetch_add(1, Ordering::Relaxed);
                        }
                        StatusCode::PRECONDITION_FAILED => {}
                        other => panic!("writer {writer}: {other} {body}"),
                    }
                }
            })
        })
        .collect();
    // Readers on the other two replicas check the total on every read.
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..4)
        .map(|reader| {
            let (servers, topic, stop, reads) =
                (servers.clone(), topic.clone(), stop.clone(), reads.clone());
            tokio::spawn(async move {
                let server = &servers[1 + reader % 2];
                while !stop.load(Ordering::Relaxed) {
                    if let Some(balances) = accounts(server, &topic, "").await {
                        let total: i64 = balances.iter().map(|(balance, _)| balance).sum();
                        assert_eq!(
                            total, TOTAL,
                            "reader {reader} saw part of a batch: {balances:?}"
                        );
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    for task in writers.into_iter().chain(readers) {
        task.await.expect("no broken invariant");
    }
    let (transfers, reads) = (
        transfers.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
    );
    eprintln!("atomic batches: {transfers} transfers of {ACCOUNTS} records, {reads} reads whole");
    assert!(transfers >= 20, "only {transfers} transfers");
    assert!(reads >= 100, "only {reads} reads");

    // An atomic batch with a failing check writes nothing, and says which check failed.
    let (status, body) = servers[1]
        .batch(
            &topic,
            &json!({"atomic": true,
                    "ops": [{"op": "put", "key": "acct/0", "value": 0}],
                    "checks": [{"key": "acct/1", "if_absent": true}]}),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(body["error"]["failed"][0]["check"], 0, "{body}");
    let balances = accounts(&servers[2], &topic, "consistency=strong")
        .await
        .expect("every account");
    assert_eq!(balances.iter().map(|(b, _)| b).sum::<i64>(), TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_another_replica_with_min_offset_or_strong_never_miss_the_write() {
    const WRITES: usize = 1000;
    const CLIENTS: usize = 4;
    let broker = kafka();
    let topic = topic("readafter");
    let servers = Arc::new([
        Server::start(&broker.address()),
        Server::start(&broker.address()),
    ]);
    servers[0].put_ok(&topic, "warm", "up").await;
    let started = Instant::now();
    for mode in ["min_offset", "header", "strong"] {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (servers, topic) = (servers.clone(), topic.clone());
                tokio::spawn(async move {
                    let key = format!("{mode}-{client}");
                    for i in 0..WRITES / CLIENTS {
                        let value = format!("{i}");
                        let offset = servers[0].put_ok(&topic, &key, value.clone()).await;
                        let mut request = servers[1].http().get(servers[1].key_url(&topic, &key));
                        request = match mode {
                            "min_offset" => request.query(&[("min_offset", offset)]),
                            "header" => request.header("X-Kv-Min-Offset", offset),
                            _ => request.query(&[("consistency", "strong")]),
                        };
                        let response = request.send().await.expect("GET sent");
                        assert_eq!(response.status(), StatusCode::OK, "{mode} {i}");
                        let applied: i64 = response.headers()["x-kv-applied-offset"]
                            .to_str()
                            .expect("ascii")
                            .parse()
                            .expect("an offset");
                        assert!(
                            applied > offset,
                            "{mode}: applied {applied}, wrote {offset}"
                        );
                        let body = response.text().await.expect("body");
                        assert_eq!(body, value, "{mode}: a stale read after write {i}");
                    }
                })
            })
            .collect();
        for client in clients {
            client.await.expect("no stale read");
        }
    }
    eprintln!(
        "read-after-write on another replica: {} writes each by min_offset, header and strong, \
         0 stale, {:.1} s",
        WRITES,
        started.elapsed().as_secs_f64()
    );

    // An offset the log does not reach answers 503 within the wait, never stale data.
    let asked = Instant::now();
    let (status, body) = servers[1]
        .get_json(&format!(
            "/v1/{topic}/keys/warm?min_offset=100000000&wait=300ms"
        ))
        .await;
    let waited = asked.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "offset_not_applied");
    assert!(body["error"]["applied_offset"].as_i64().is_some(), "{body}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    for bad in [
        "min_offset=-1",
        "min_offset=abc",
        "consistency=eventual",
        "wait=soon",
    ] {
        let (status, body) = servers[1]
            .get_json(&format!("/v1/{topic}/keys/warm?{bad}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_conditional_batches_are_refused_and_write_nothing() {
    let broker = kafka();
    let topic = topic("atomicbad");
    let server = Server::start(&broker.address());
    server.put_ok(&topic, "seed", "1").await;
    let cases = [
        (
            json!({"atomic": true, "ops": [{"op": "put", "key": "a", "value": 1},
                                           {"op": "delete", "key": "a"}]}),
            StatusCode::BAD_REQUEST,
            "duplicate_key",
        ),
        (
            json!({"ops": [{"op": "put", "key": "a", "value": 1, "if_absent": true}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"ops": [{"op": "put", "key": "a", "value": 1}],
                   "checks": [{"key": "seed", "if_exists": true}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"atomic": true, "ops": [{"op": "put", "key": "a", "value": 1,
                                            "if_absent": true, "if_version": 3}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"atomic": true, "ops": [{"op": "put", "key": "a", "value": 1}],
                   "checks": [{"key": "seed"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"atomic": true, "ops": (0..1001)
                .map(|i| json!({"op": "put", "key": format!("k{i}"), "value": i}))
                .collect::<Vec<_>>()}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = server.batch(&topic, &request).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let (status, ..) = get_with(&server, &topic, "a", "consistency=strong").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused batch wrote something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_inside_a_transaction_holds_others_up_about_its_timeout_and_leaves_nothing()
 {
    const TIMEOUT: Duration = Duration::from_secs(3);
    let broker = kafka();
    let topic = topic("killed");
    // The doomed replica stops for 30 s once it has produced a transaction's records, before
    // judging them: the transaction is open when it is killed.
    let doomed = Server::start_with(
        &broker.address(),
        ServerOptions::default()
            .env("KVSTORE_CONSISTENCY__TRANSACTION_TIMEOUT", "3s")
            .env("FAILPOINTS", "judge=sleep(30000)"),
    );
    let other = Server::start(&broker.address());
    other.put_ok(&topic, "before", "1").await;
    let batch = json!({"atomic": true,
                       "ops": [{"op": "put", "key": "half/1", "value": 1},
                               {"op": "put", "key": "half/2", "value": 2}],
                       "checks": [{"key": "before", "if_exists": true}]});
    let request = doomed
        .http()
        .post(doomed.url(&format!("/v1/{topic}/batch")))
        .json(&batch)
        .send();
    let pending = tokio::spawn(request);
    // Wait until the transaction's records are in the log (past the end of `before`).
    let deadline = Instant::now() + Duration::from_secs(10);
    while end_offset(broker, &topic) < 3 {
        assert!(
            Instant::now() < deadline,
            "the transaction's records never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(doomed.signal("KILL"), "the replica was killed");
    let killed = Instant::now();
    assert!(
        pending.await.expect("joined").is_err(),
        "a killed replica answered"
    );

    // A plain write through the other replica is stored at once but applied only once the
    // broker has aborted the open transaction.
    let offset = other.put_ok(&topic, "after", "2").await;
    let held_for = killed.elapsed();
    eprintln!(
        "killed inside a transaction: a write through another replica answered {:.2} s after \
         the kill (transaction timeout {TIMEOUT:?}), at offset {offset}",
        held_for.as_secs_f64()
    );
    assert!(
        held_for < TIMEOUT + Duration::from_secs(4),
        "writes held up for {held_for:?}"
    );
    for key in ["half/1", "half/2"] {
        let (status, ..) = get_with(&other, &topic, key, "consistency=strong").await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{key} of the killed transaction"
        );
    }
    let fresh = Server::start(&broker.address());
    let (status, body, _) =
        get_with(&fresh, &topic, "after", &format!("min_offset={offset}")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "2"));
    for key in ["half/1", "half/2"] {
        let (status, ..) = get_with(&fresh, &topic, key, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{key} on a fresh replica");
    }
}

/// The partition's high watermark, records of open transactions included.
fn end_offset(broker: &Broker, topic: &str) -> i64 {
    let consumer: rdkafka::consumer::BaseConsumer = broker
        .client_config()
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    rdkafka::consumer::Consumer::fetch_watermarks(&consumer, topic, 0, Duration::from_secs(5))
        .map(|(_, high)| high)
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_writes_conditionally_reads_fresh_and_batches_atomically() {
    use crate::clients::kvstore;
    let broker = kafka();
    let topic = topic("cliconditional");
    let (a, b) = (
        Server::start(&broker.address()),
        Server::start(&broker.address()),
    );
    let first: i64 = kvstore(a.base(), &["put", &topic, "k", "v1"], b"")
        .ok()
        .trim()
        .parse()
        .expect("an offset");
    let version = first.to_string();
    let second = kvstore(
        b.base(),
        &["put", &topic, "k", "v2", "--if-match", &version],
        b"",
    )
    .ok();
    // The same version again: the condition fails, exit status 6, and the message says why.
    let stale = kvstore(
        a.base(),
        &["put", &topic, "k", "v3", "--if-match", &version],
        b"",
    );
    assert_eq!(stale.code, 6, "{}", stale.stderr);
    assert!(
        stale.stderr.contains("precondition_failed") || stale.stderr.contains("not hold"),
        "{}",
        stale.stderr
    );
    let exists = kvstore(a.base(), &["put", &topic, "k", "v4", "--if-absent"], b"");
    assert_eq!(exists.code, 6, "{}", exists.stderr);
    assert_eq!(
        kvstore(
            a.base(),
            &["get", &topic, "k", "--min-offset", second.trim()],
            b""
        )
        .ok(),
        "v2"
    );
    assert_eq!(
        kvstore(
            a.base(),
            &["get", &topic, "k", "--strong", "--wait", "2s"],
            b""
        )
        .ok(),
        "v2"
    );
    let refused = kvstore(
        b.base(),
        &[
            "batch",
            &topic,
            "--atomic",
            r#"{"ops": [{"op": "put", "key": "j", "value": 1}], "checks": [{"key": "k", "if_absent": true}]}"#,
        ],
        b"",
    );
    assert_eq!(refused.code, 6, "{}", refused.stderr);
    let done = kvstore(
        b.base(),
        &[
            "batch",
            &topic,
            "--atomic",
            r#"[{"op": "put", "key": "j", "value": 1}, {"op": "delete", "key": "k"}]"#,
        ],
        b"",
    )
    .ok();
    let bad = kvstore(
        a.base(),
        &["put", &topic, "k", "x", "--if-match", "W/1"],
        b"",
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert_eq!(
        kvstore(
            a.base(),
            &["get", &topic, "j", "--min-offset", done.trim()],
            b""
        )
        .ok(),
        "1"
    );
    assert_eq!(
        kvstore(a.base(), &["get", &topic, "k", "--strong"], b"").code,
        1
    );
}
