//! Faults on a three-node Apache Kafka cluster: replication factor 3, `min.insync.replicas=2`,
//! and kvstore's idempotent `acks=all` producer. Apache Kafka only.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::load::{
    Outcome, assert_acknowledged_present, assert_answers_are_successes_or_unavailable, write_until,
};
use crate::common::{Broker, KafkaOptions, Server, ServerOptions, topic};

/// Writers per replica.
const WRITERS: usize = 6;

/// What the answers to the writes in `outcomes` were, by status ("connection" when none came).
fn tally<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for outcome in outcomes {
        let status = outcome
            .status
            .map_or_else(|| "connection".to_owned(), |s| s.as_u16().to_string());
        *counts.entry(status).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort();
    counts
}

/// Writes a key of its own through `server` every 250 ms for `during`, each without waiting
/// for the ones before; returns what each got.
async fn probe_writes(
    server: Arc<Server>,
    topic: String,
    replica: usize,
    during: Duration,
) -> Vec<Outcome> {
    let started = Instant::now();
    let mut sent = Vec::new();
    let mut n = 0;
    while started.elapsed() < during {
        let (server, topic) = (server.clone(), topic.clone());
        let key = format!("probe{replica}-{n}");
        n += 1;
        sent.push(tokio::spawn(async move {
            let value = format!("value of {key}");
            let invoked = Instant::now();
            let (status, body) = server.put(&topic, &key, value.clone(), "text/plain").await;
            Outcome {
                key,
                value,
                status: Some(status),
                offset: body["offset"].as_i64(),
                invoked,
                completed: Instant::now(),
            }
        }));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut outcomes = Vec::new();
    for probe in sent {
        outcomes.push(probe.await.expect("probe finished"));
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_partition_leader_under_load_loses_no_acknowledged_write() {
    let broker = Broker::cluster();
    let topic = topic("failover");
    let options = ServerOptions::default().env("KVSTORE_WRITE_TIMEOUT", "8s");
    let replicas: Vec<Arc<Server>> = (0..2)
        .map(|_| Arc::new(Server::start_with(&broker.address(), options.clone())))
        .collect();
    replicas[0].put_ok(&topic, "warm-up", "v").await;
    replicas[1].wait_applied(&topic, 0).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = replicas
        .iter()
        .enumerate()
        .map(|(i, server)| {
            let (server, stop, topic) = (server.clone(), stop.clone(), topic.clone());
            tokio::spawn(async move {
                write_until(&server, &topic, &format!("r{i}w"), WRITERS, stop).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = broker.leader(&topic);
    assert!(leader > 0, "no leader for {topic}");
    let killed_at = Instant::now();
    broker.kill_node(leader as usize);
    // The writers wait for their writes in flight; new writes go out meanwhile, one every
    // 250 ms on each replica, so that the first to succeed after the kill is seen.
    let probing: Vec<_> = replicas
        .iter()
        .enumerate()
        .map(|(i, server)| {
            let (server, topic) = (server.clone(), topic.clone());
            tokio::spawn(
                async move { probe_writes(server, topic, i, Duration::from_secs(14)).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(14)).await;
    stop.store(true, Ordering::Relaxed);
    let mut probes = Vec::new();
    for task in probing {
        probes.push(task.await.expect("probes finished"));
    }
    let mut per_replica = Vec::new();
    for task in load {
        per_replica.push(task.await.expect("load finished"));
    }
    let new_leader = broker.leader(&topic);

    for (i, outcomes) in per_replica.iter().enumerate() {
        assert_answers_are_successes_or_unavailable(outcomes);
        assert_answers_are_successes_or_unavailable(&probes[i]);
        // Writes succeed again soon after the kill: the first acknowledgement of a write sent
        // after it (the writers' own, or the probes').
        let recovered = outcomes
            .iter()
            .chain(&probes[i])
            .filter(|o| o.acknowledged() && o.invoked > killed_at)
            .map(|o| o.completed - killed_at)
            .min()
            .unwrap_or_else(|| panic!("replica {i}: no write succeeded after the kill"));
        let in_flight: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.invoked <= killed_at && o.completed > killed_at)
            .collect();
        let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.invoked > killed_at).collect();
        eprintln!(
            "failover: replica {i}: node {leader} (leader) killed, node {new_leader} leads now; \
             writes succeed again {:.2} s after the kill; {} writes, {} acknowledged; in \
             flight at the kill: {:?}; sent after it: {:?}",
            recovered.as_secs_f64(),
            outcomes.len(),
            outcomes.iter().filter(|o| o.acknowledged()).count(),
            tally(in_flight),
            tally(after)
        );
        assert!(
            recovered < Duration::from_secs(10),
            "replica {i}: writes failed for {recovered:?} after the kill"
        );
    }

    // Both replicas hold every acknowledged write, with its offset, and the same state.
    let all: Vec<Outcome> = per_replica
        .concat()
        .into_iter()
        .chain(probes.concat())
        .collect();
    let last = all.iter().filter_map(|o| o.offset).max().expect("offsets");
    for server in &replicas {
        server.wait_applied(&topic, last).await;
        assert_acknowledged_present(server, &topic, &all).await;
    }
    assert_eq!(
        replicas[0].dump(&topic, "", 1000).await,
        replicas[1].dump(&topic, "", 1000).await,
        "the replicas differ"
    );
    // No write is in the log twice: each key was written once, by one request.
    let log = broker.read_all(&topic);
    let mut seen: HashMap<Vec<u8>, i64> = HashMap::new();
    for record in &log {
        let key = record.key.clone().expect("key");
        if let Some(first) = seen.insert(key.clone(), record.offset) {
            panic!(
                "{} is in the log twice, at {first} and {}",
                String::from_utf8_lossy(&key),
                record.offset
            );
        }
    }
    let acknowledged = all.iter().filter(|o| o.acknowledged()).count();
    eprintln!(
        "failover: {} writes, {acknowledged} acknowledged, 0 of them lost; {} records in the \
         log, none twice",
        all.len(),
        log.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_brokers_of_three_down_refuse_writes_at_once_while_reads_go_on() {
    // A controller of its own, so that the quorum outlives two brokers and the partition's
    // in-sync replicas shrink to its leader alone.
    let broker = Broker::kafka(KafkaOptions {
        nodes: 3,
        controllers: 1,
        ..KafkaOptions::default()
    });
    let topic = topic("quorum");
    let options = ServerOptions::default().env("KVSTORE_WRITE_TIMEOUT", "8s");
    let server = Server::start_with(&broker.address(), options.clone());
    let before = server.put_ok(&topic, "before", "v").await;
    let leader = broker.leader(&topic);
    let followers: Vec<usize> = (1..=3).filter(|&n| n as i32 != leader).collect();
    let killed_at = Instant::now();
    for &node in &followers {
        broker.kill_node(node);
    }

    // Once the cluster has noticed, writes are refused at once, saying why.
    let mut answers = Vec::new();
    let refused_at = loop {
        let started = Instant::now();
        let (status, body) = server.put(&topic, "during", "x", "text/plain").await;
        let took = started.elapsed();
        answers.push(status.as_u16());
        if body["error"]["code"] == "not_enough_replicas" && took < Duration::from_secs(1) {
            break killed_at.elapsed();
        }
        assert!(
            status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::GATEWAY_TIMEOUT,
            "{status} {body}"
        );
        assert!(
            killed_at.elapsed() < Duration::from_secs(40),
            "writes not refused at once 40 s after two brokers went: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for _ in 0..5 {
        let started = Instant::now();
        let response = server
            .http()
            .put(server.key_url(&topic, "during"))
            .body("x")
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "not_enough_replicas", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("nothing was written"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    // Reads go on, from memory, and the replica says it is ready to serve them.
    let (status, _, body) = server.get(&topic, "before").await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"v"[..]));
    let (status, ready) = server.get_json("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");

    // The brokers come back; writes succeed again without touching kvstore.
    let restarted_at = Instant::now();
    for &node in &followers {
        broker.restart_node(node);
    }
    let after = server
        .put_until_ok(&topic, "after", "y", restarted_at, Duration::from_secs(40))
        .await;
    eprintln!(
        "two of three down: writes refused at once {:.1} s after the kill (answers until \
         then: {answers:?}); writes succeed again {:.1} s after the restart began",
        refused_at.as_secs_f64(),
        restarted_at.elapsed().as_secs_f64()
    );
    assert!(after > before);
    let fresh = Server::start_with(&broker.address(), options);
    fresh.wait_applied(&topic, after).await;
    assert_eq!(
        fresh.dump(&topic, "", 1000).await,
        server.dump(&topic, "", 1000).await
    );
}
