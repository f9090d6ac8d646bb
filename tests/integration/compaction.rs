//! The log cleaner actually run, and offsets that carry no record: Apache Kafka only (Tansu
//! never compacts and does not honour transactions).
//!
//! Topics here are set up so that the shared broker's cleaner (which looks for work every
//! half second, see `scripts/kafka.sh`) cleans them within seconds: segments roll after
//! 100 ms, any dirty share is worth cleaning, and tombstones outlive one cleaning by 1 s.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Broker, Server, ServerOptions, topic};

/// Topic settings under which the cleaner runs within seconds.
const CLEAN_QUICKLY: &[(&str, &str)] = &[
    ("segment.ms", "100"),
    ("min.cleanable.dirty.ratio", "0.01"),
    ("min.compaction.lag.ms", "0"),
    ("delete.retention.ms", "1000"),
];

const KEYS: usize = 30;
const ROUNDS: usize = 12;

fn kafka() -> &'static Broker {
    Broker::shared_kafka("Apache Kafka's log cleaner and transactions")
}

/// The state as (key, value, version) triples, from the range endpoint.
async fn state(server: &Server, topic: &str) -> Vec<(String, Value, i64)> {
    server
        .dump(topic, "", 1000)
        .await
        .into_iter()
        .map(|item| {
            (
                item["key"].as_str().expect("key").to_owned(),
                item["value"].clone(),
                item["offset"].as_i64().expect("offset"),
            )
        })
        .collect()
}

/// Writes through `server`: every key overwritten each round, keys 0-9 deleted in round 8,
/// keys 0-4 written again in round 10. Returns the records written and the last offset.
async fn overwrite_and_delete(server: &Server, topic: &str) -> (usize, i64) {
    let mut records = 0;
    let mut last = 0;
    for round in 0..ROUNDS {
        let mut ops: Vec<Value> = (0..KEYS)
            .filter(|k| match round {
                0..8 => true,
                8..10 => *k >= 10,
                _ => !(5..10).contains(k),
            })
            .map(|k| json!({"op": "put", "key": format!("k{k:02}"), "value": format!("r{round}")}))
            .collect();
        if round == 8 {
            ops.extend((0..10).map(|k| json!({"op": "delete", "key": format!("k{k:02}")})));
        }
        records += ops.len();
        let (status, body) = server.batch(topic, &json!({ "ops": ops })).await;
        assert_eq!(status, StatusCode::OK, "round {round}: {body}");
        last = body["offset"].as_i64().expect("offset");
        // Past segment.ms, so that the next round's first append rolls the segment.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    (records, last)
}

/// Writes one key through `writer` until the cleaner has removed overwritten values and the
/// `deleted` keys' tombstones: a bare consumer from offset 0 then sees fewer than `written`
/// records (plus the filler's), and none of the deleted keys. Returns how many filler writes
/// it took and the last offset written.
async fn wait_until_cleaned(
    broker: &Broker,
    writer: &Server,
    topic: &str,
    written: usize,
    deleted: &BTreeSet<String>,
) -> (usize, i64) {
    let started = Instant::now();
    let mut filler = 0;
    let mut last = -1;
    let log = loop {
        let log = broker.read_all(topic);
        let tombstones_left = log.iter().any(|r| {
            r.key
                .as_deref()
                .is_some_and(|k| deleted.contains(&*String::from_utf8_lossy(k)))
        });
        if log.len() < written && !tombstones_left {
            break log;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the cleaner did not clean {topic} in 90 s: {} records of {written} left, \
             tombstones left: {tombstones_left}",
            log.len()
        );
        last = writer.put_ok(topic, "filler", format!("f{filler}")).await;
        filler += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!(
        "compaction: {} records written, {} left after cleaning ({:.1} s); tombstones of {} \
         deleted keys expired",
        written + filler,
        log.len(),
        started.elapsed().as_secs_f64(),
        deleted.len()
    );
    (filler, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_cleaner_ran_a_fresh_replica_equals_one_that_saw_every_write() {
    let broker = kafka();
    let topic = topic("cleaned");
    broker.create_topic_with(&topic, 1, CLEAN_QUICKLY).await;
    let writer = Server::start(&broker.address());
    // A replica that replays slowly, through the writes and the cleaning.
    let slow = Server::start_with(
        &broker.address(),
        ServerOptions::default().env("FAILPOINTS", "replay-apply=sleep(40)"),
    );
    assert_eq!(slow.get(&topic, "k00").await.0, StatusCode::NOT_FOUND);

    let (written, last_written) = overwrite_and_delete(&writer, &topic).await;
    let deleted: BTreeSet<String> = (5..10).map(|k| format!("k{k:02}")).collect();

    let (filler, last) = wait_until_cleaned(broker, &writer, &topic, written, &deleted).await;
    let last = last.max(last_written);
    writer.wait_applied(&topic, last).await;
    let expected = state(&writer, &topic).await;
    // The filler key is there if the cleaner needed more writes to get going.
    let filler_key = usize::from(filler > 0);
    assert_eq!(
        expected.len(),
        KEYS - deleted.len() + filler_key,
        "{expected:?}"
    );

    let fresh = Server::start(&broker.address());
    fresh.wait_applied(&topic, last).await;
    assert_eq!(state(&fresh, &topic).await, expected, "the fresh replica");
    for key in &deleted {
        assert_eq!(
            fresh.get(&topic, key).await.0,
            StatusCode::NOT_FOUND,
            "{key}"
        );
    }
    slow.wait_applied(&topic, last).await;
    assert_eq!(
        state(&slow, &topic).await,
        expected,
        "the replica replaying meanwhile"
    );

    // The fresh replica writes and reads its own write at once, its log full of gaps.
    let offset = fresh.put_ok(&topic, "after", "cleaning").await;
    assert!(offset > last);
    assert_eq!(fresh.get(&topic, "after").await.2, b"cleaning");
}

/// A transactional producer, as another Kafka application might use.
fn transactional_producer(broker: &Broker, id: &str) -> FutureProducer {
    let producer: FutureProducer = broker
        .client_config()
        .set("transactional.id", id)
        .create()
        .expect("producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("transactions initialised");
    producer
}

async fn send(producer: &FutureProducer, topic: &str, key: &str, value: &str) -> i64 {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent")
        .offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_markers_and_aborted_records_hold_up_no_write_and_no_readiness() {
    let broker = kafka();
    let topic = topic("markers");
    broker.create_topic(&topic, 1).await;
    let server = Server::start(&broker.address());
    server.put_ok(&topic, "before", "plain").await;

    let producer = transactional_producer(broker, &format!("{topic}-tx"));
    producer.begin_transaction().expect("begun");
    send(&producer, &topic, "committed", "yes").await;
    producer
        .commit_transaction(Duration::from_secs(10))
        .expect("committed");
    producer.begin_transaction().expect("begun");
    let aborted = send(&producer, &topic, "aborted", "no").await;
    producer
        .abort_transaction(Duration::from_secs(10))
        .expect("aborted");

    // The log now ends in an abort marker: no record this replica applies is at its last
    // offsets, and yet it catches up to the end.
    let end = {
        let consumer: rdkafka::consumer::BaseConsumer =
            broker.client_config().create().expect("consumer");
        rdkafka::consumer::Consumer::fetch_watermarks(&consumer, &topic, 0, Duration::from_secs(5))
            .expect("watermarks")
            .1
    };
    assert!(end > aborted + 1, "no marker after the aborted record");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = server.topic_info(&topic).await.expect("attached");
        if info["applied_offset"] == end && info["lag"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "applied offset never reached the end {end}: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.get(&topic, "committed").await.2, b"yes");
    assert_eq!(server.get(&topic, "aborted").await.0, StatusCode::NOT_FOUND);

    // A write right behind the marker answers at once, on this replica and a fresh one.
    let started = Instant::now();
    let offset = server.put_ok(&topic, "after", "marker").await;
    assert_eq!(offset, end, "the write follows the marker");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let fresh = Server::start(&broker.address());
    let (status, _, body) = fresh.get(&topic, "after").await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"marker"[..]));
    assert_eq!(fresh.get(&topic, "aborted").await.0, StatusCode::NOT_FOUND);
    let started = Instant::now();
    fresh.put_ok(&topic, "fresh", "write").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_cleaner_ran_over_accepted_and_rejected_conditional_writes_replicas_agree() {
    const ROUNDS: usize = 10;
    let broker = kafka();
    let topic = topic("cleaned-conditional");
    broker.create_topic_with(&topic, 1, CLEAN_QUICKLY).await;
    let servers = [
        Server::start(&broker.address()),
        Server::start(&broker.address()),
    ];
    let deleted: BTreeSet<String> = (0..3).map(|k| format!("c{k}")).collect();
    // Committed records only: a bare consumer reads `read_committed` and so never counts
    // the aborted ones.
    let mut committed = 0;
    let (mut accepted, mut rejected) = (0, 0);
    let mut last = 0;
    let mut versions: Vec<Option<i64>> = vec![None; 10];
    for round in 0..ROUNDS {
        for (k, version) in versions.iter_mut().enumerate() {
            let key = format!("c{k}");
            if round > 6 && deleted.contains(&key) {
                continue;
            }
            let server = &servers[(k + round) % 2];
            let value = format!("r{round}");
            let condition = match version {
                Some(v) => ("If-Match", format!("\"{v}\"")),
                None => ("If-None-Match", "*".to_owned()),
            };
            let (status, body) = if round == 6 && deleted.contains(&key) {
                server
                    .delete_if(&topic, &key, condition.0, &condition.1)
                    .await
            } else {
                server
                    .put_if(&topic, &key, &value, condition.0, &condition.1)
                    .await
            };
            let offset = body["offset"].as_i64();
            assert_eq!(status, StatusCode::OK, "round {round}, {key}");
            let offset = offset.expect("offset");
            *version = Some(offset);
            (committed, accepted) = (committed + 1, accepted + 1);
            // The same condition again, now stale, and a create of a key that exists: both
            // refused, both leaving aborted records in the log.
            let (status, _) = server
                .put_if(&topic, &key, "stale", condition.0, &condition.1)
                .await;
            assert_eq!(
                status,
                StatusCode::PRECONDITION_FAILED,
                "round {round}, {key}"
            );
            rejected += 1;
        }
        let batch = |check: i64| {
            json!({"atomic": true,
                   "ops": [{"op": "put", "key": "b0", "value": round},
                           {"op": "put", "key": "b1", "value": round},
                           {"op": "delete", "key": "b2"}],
                   "checks": [{"key": "c9", "if_version": check}]})
        };
        let c9 = versions[9].expect("c9 written");
        let (status, body) = servers[round % 2]
            .batch(&topic, &batch(c9 + 1_000_000))
            .await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
        let (status, body) = servers[round % 2].batch(&topic, &batch(c9)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        last = body["offset"].as_i64().expect("offset");
        (committed, accepted, rejected) = (committed + 3, accepted + 1, rejected + 1);
        // Past segment.ms, so that the next round's first append rolls the segment.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let mut deleted = deleted;
    deleted.insert("b2".to_owned());
    let (_, filler_last) =
        wait_until_cleaned(broker, &servers[0], &topic, committed, &deleted).await;
    let last = last.max(filler_last);
    let fresh = Server::start(&broker.address());
    let mut states = Vec::new();
    for server in servers.iter().chain([&fresh]) {
        server.wait_applied(&topic, last).await;
        states.push(state(server, &topic).await);
    }
    let keys: Vec<&str> = states[0].iter().map(|(key, ..)| key.as_str()).collect();
    assert!(
        keys.contains(&"c9") && !keys.contains(&"c0") && !keys.contains(&"b2"),
        "{keys:?}"
    );
    assert_eq!(states[0], states[1], "the two replicas that wrote");
    assert_eq!(states[0], states[2], "a fresh replica after the cleaning");
    eprintln!(
        "compaction over conditional writes: {accepted} accepted, {rejected} refused (aborted \
         in the log); {} keys agree on three replicas",
        states[0].len()
    );
}
