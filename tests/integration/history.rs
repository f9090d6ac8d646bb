//! The history checker: many clients against three replicas of one topic, every operation
//! recorded with its invocation and completion, then checked against kvstore's promises.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Broker, Server};

const CLIENTS: usize = 36;
const OPS_PER_CLIENT: usize = 40;
const KEYS: usize = 8;
const TOPIC: &str = "history";

/// What one operation did.
#[derive(Debug, Clone)]
enum Action {
    /// Puts (key, value) pairs, or deletes (value `None`); one pair unless a batch.
    Write(Vec<(String, Option<String>)>),
    /// Reads a key.
    Read(String),
}

/// One completed operation.
#[derive(Debug, Clone)]
struct Event {
    client: usize,
    replica: usize,
    action: Action,
    invoked: Instant,
    completed: Instant,
    status: StatusCode,
    /// For writes: the offset of each pair. For reads: the offset of the value read.
    offsets: Vec<i64>,
    /// For reads that found a value: the value.
    read_value: Option<String>,
}

async fn run_client(
    client: usize,
    replica: usize,
    server: Arc<Server>,
    mut rng: StdRng,
) -> Vec<Event> {
    let mut events = Vec::new();
    for seq in 0..OPS_PER_CLIENT {
        let key = |rng: &mut StdRng| format!("k{}", rng.random_range(0..KEYS));
        let value = |n: usize| format!("c{client}-{seq}-{n}");
        let roll = rng.random_range(0..100);
        let action = if roll < 35 {
            Action::Write(vec![(key(&mut rng), Some(value(0)))])
        } else if roll < 45 {
            Action::Write(vec![(key(&mut rng), None)])
        } else if roll < 60 {
            let n = rng.random_range(2..6);
            Action::Write(
                (0..n)
                    .map(|i| {
                        let k = key(&mut rng);
                        (k, rng.random_bool(0.8).then(|| value(i)))
                    })
                    .collect(),
            )
        } else {
            Action::Read(key(&mut rng))
        };
        let invoked = Instant::now();
        let (status, offsets, read_value) = match &action {
            Action::Write(pairs) if pairs.len() == 1 => {
                let (key, value) = &pairs[0];
                let (status, body) = match value {
                    Some(value) => server.put(TOPIC, key, value.clone(), "text/plain").await,
                    None => server.delete(TOPIC, key).await,
                };
                (status, body["offset"].as_i64().into_iter().collect(), None)
            }
            Action::Write(pairs) => {
                let ops: Vec<Value> = pairs
                    .iter()
                    .map(|(key, value)| match value {
                        Some(value) => json!({"op": "put", "key": key, "value": value}),
                        None => json!({"op": "delete", "key": key}),
                    })
                    .collect();
                let (status, body) = server.batch(TOPIC, &json!({ "ops": ops })).await;
                let offsets = body["results"]
                    .as_array()
                    .map(|r| r.iter().filter_map(|x| x["offset"].as_i64()).collect())
                    .unwrap_or_default();
                (status, offsets, None)
            }
            Action::Read(key) => {
                let response = server
                    .http()
                    .get(server.key_url(TOPIC, key))
                    .send()
                    .await
                    .expect("GET sent");
                let status = response.status();
                let offset = response
                    .headers()
                    .get("x-kv-offset")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let body = response.text().await.expect("body");
                (
                    status,
                    offset.into_iter().collect(),
                    (status == StatusCode::OK).then_some(body),
                )
            }
        };
        events.push(Event {
            client,
            replica,
            action,
            invoked,
            completed: Instant::now(),
            status,
            offsets,
            read_value,
        });
    }
    events
}

#[tokio::test]
async fn concurrent_history_on_three_replicas_is_consistent() {
    let seed: u64 = std::env::var("KVSTORE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("history seed {seed} (KVSTORE_TEST_SEED={seed} replays it)");
    let broker = Broker::shared();
    let replicas: Vec<Arc<Server>> = (0..3)
        .map(|_| Arc::new(Server::start(&broker.address())))
        .collect();
    replicas[0].put_ok(TOPIC, "setup", "x").await;
    for replica in &replicas[1..] {
        replica.wait_applied(TOPIC, 0).await;
    }

    let mut seeds = StdRng::seed_from_u64(seed);
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let replica = client % replicas.len();
        let rng = StdRng::seed_from_u64(seeds.random());
        clients.push(tokio::spawn(run_client(
            client,
            replica,
            replicas[replica].clone(),
            rng,
        )));
    }
    let mut history = Vec::new();
    for client in clients {
        history.extend(client.await.expect("client finished"));
    }

    let failures = check(&history);
    let end = history
        .iter()
        .filter(|e| matches!(e.action, Action::Write(_)))
        .flat_map(|e| e.offsets.iter().copied())
        .max()
        .unwrap_or(0);
    for replica in &replicas {
        replica.wait_applied(TOPIC, end).await;
    }
    let mut states = Vec::new();
    for replica in &replicas {
        states.push(replica.dump(TOPIC, "", 1000).await);
    }
    let mut failures = failures;
    for (i, state) in states.iter().enumerate().skip(1) {
        if *state != states[0] {
            failures.push(format!(
                "replica {i}'s final state differs from replica 0's"
            ));
        }
    }
    // The final state is every acknowledged write applied in offset order.
    let mut writes: Vec<(i64, &str, Option<&str>)> = Vec::new();
    for event in &history {
        if let (Action::Write(pairs), true) = (&event.action, event.status.is_success()) {
            for ((key, value), offset) in pairs.iter().zip(&event.offsets) {
                writes.push((*offset, key, value.as_deref()));
            }
        }
    }
    writes.sort_unstable();
    let mut model: BTreeMap<&str, &str> = BTreeMap::from([("setup", "x")]);
    for (_, key, value) in &writes {
        match value {
            Some(value) => model.insert(key, value),
            None => model.remove(key),
        };
    }
    let actual: BTreeMap<&str, &str> = states[0]
        .iter()
        .map(|i| {
            (
                i["key"].as_str().expect("key"),
                i["value"].as_str().expect("value"),
            )
        })
        .collect();
    if actual != model {
        failures.push(format!(
            "final state {actual:?} is not the acknowledged writes in offset order {model:?}"
        ));
    }
    let reads = history
        .iter()
        .filter(|e| matches!(e.action, Action::Read(_)))
        .count();
    eprintln!(
        "history: {} operations ({} reads, {} writes of {} records) by {CLIENTS} clients on 3 replicas",
        history.len(),
        reads,
        history.len() - reads,
        writes.len()
    );
    assert!(
        failures.is_empty(),
        "seed {seed}: {} violations:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Checks every operation of the history; returns the violations.
fn check(history: &[Event]) -> Vec<String> {
    let mut failures = Vec::new();
    // Every write's records by offset: what a read may legitimately return.
    let mut written: HashMap<i64, (&str, Option<&str>)> = HashMap::new();
    for event in history {
        if let Action::Write(pairs) = &event.action {
            if !event.status.is_success() {
                failures.push(format!("write failed without a fault: {event:?}"));
                continue;
            }
            if event.offsets.len() != pairs.len() {
                failures.push(format!("write answered the wrong offsets: {event:?}"));
                continue;
            }
            for ((key, value), offset) in pairs.iter().zip(&event.offsets) {
                if written.insert(*offset, (key, value.as_deref())).is_some() {
                    failures.push(format!("two writes at offset {offset}"));
                }
            }
        }
    }
    for event in history {
        let Action::Read(key) = &event.action else {
            continue;
        };
        // The reader's own last write to this key on this replica, finished before the read.
        let own = history
            .iter()
            .filter(|w| {
                w.client == event.client
                    && w.replica == event.replica
                    && w.completed <= event.invoked
                    && w.status.is_success()
            })
            .filter_map(|w| match &w.action {
                Action::Write(pairs) => pairs
                    .iter()
                    .zip(&w.offsets)
                    .filter(|((k, _), _)| k == key)
                    .map(|(_, o)| *o)
                    .max(),
                Action::Read(_) => None,
            })
            .max();
        match event.status {
            StatusCode::OK => {
                let Some(&offset) = event.offsets.first() else {
                    failures.push(format!("read without a version: {event:?}"));
                    continue;
                };
                match written.get(&offset) {
                    Some((k, Some(v))) if k == key && event.read_value.as_deref() == Some(*v) => {}
                    other => failures.push(format!(
                        "read returned a value never written there ({other:?}): {event:?}"
                    )),
                }
                if own.is_some_and(|own| offset < own) {
                    failures.push(format!(
                        "read older than the reader's own write at {own:?}: {event:?}"
                    ));
                }
            }
            StatusCode::NOT_FOUND => {
                // Absent is fine unless the reader's own put is newer than every delete.
                if let Some(own) = own {
                    let own_was_put = matches!(written.get(&own), Some((_, Some(_))));
                    let deleted_since = written
                        .iter()
                        .any(|(o, (k, v))| *o > own && k == key && v.is_none());
                    if own_was_put && !deleted_since {
                        failures.push(format!(
                            "read missed the reader's own write at {own}: {event:?}"
                        ));
                    }
                }
            }
            other => failures.push(format!("read failed with {other}: {event:?}")),
        }
    }
    failures
}
