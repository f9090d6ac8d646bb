//! Linearizability of single-key histories (strong reads, writes, compare-and-set) from many
//! clients over several replicas, checked by Porcupine: `tests/linearizability/` (Go) drives the
//! replicas and checks the history it recorded. Apache Kafka only.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Broker, Server, ServerOptions, repo_path, topic};

/// The checker, built once per test run into the target directory.
fn kvlin() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let binary = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kvlin");
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(".")
            .current_dir(repo_path("tests/linearizability"))
            .status()
            .expect("go runs (Go is needed for the linearizability checks)");
        assert!(built.success(), "the checker did not build");
        binary
    })
}

/// Runs the checker against `servers` for `duration` with `clients`; returns its summary
/// once it has judged the history linearizable, and fails the test (printing its seed and its
/// output) otherwise.
fn check(servers: &[&Server], topic: &str, clients: usize, duration: Duration) -> Value {
    let urls: Vec<&str> = servers.iter().map(|s| s.base()).collect();
    let html = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{topic}.html"));
    let output = Command::new(kvlin())
        .arg("--urls")
        .arg(urls.join(","))
        .args(["--topic", topic])
        .args(["--clients", &clients.to_string()])
        .args(["--duration", &format!("{}s", duration.as_secs())])
        .args(["--keys", "4", "--timeout", "12s", "--check-timeout", "120s"])
        .arg("--html")
        .arg(&html)
        .output()
        .expect("the checker runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or(Value::Null);
    assert!(
        output.status.success() && summary["result"] == "ok",
        "the history is not shown linearizable ({}): {summary}\n{stderr}\nits visualization: {}",
        output.status,
        html.display()
    );
    eprintln!("linearizability: {summary}");
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_from_16_clients_over_two_replicas_are_linearizable() {
    let broker = Broker::shared_kafka("Apache Kafka's transactions");
    let topic = topic("linear");
    let a = Server::start(&broker.address());
    let b = Server::start(&broker.address());
    let summary =
        tokio::task::spawn_blocking(move || check(&[&a, &b], &topic, 16, Duration::from_secs(12)))
            .await
            .expect("checked");
    assert!(summary["cas_ok"].as_u64() > Some(20), "{summary}");
    assert!(
        summary["cas_failed"].as_u64() > Some(0),
        "no CAS ever lost: {summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_stay_linearizable_while_the_partition_leader_is_killed() {
    let broker = Broker::cluster();
    let topic = topic("linear-failover");
    let options = ServerOptions::default().env("KVSTORE_WRITE_TIMEOUT", "8s");
    let servers: Vec<Server> = (0..3)
        .map(|_| Server::start_with(&broker.address(), options.clone()))
        .collect();
    servers[0].put_ok(&topic, "warm-up", "v").await;
    let leader = broker.leader(&topic);
    assert!(leader > 0, "no leader for {topic}");
    let checking = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let servers: Vec<&Server> = servers.iter().collect();
            check(&servers, &topic, 16, Duration::from_secs(24))
        })
    };
    tokio::time::sleep(Duration::from_secs(6)).await;
    broker.kill_node(leader as usize);
    tokio::time::sleep(Duration::from_secs(8)).await;
    broker.restart_node(leader as usize);
    let summary = checking.await.expect("checked");
    eprintln!(
        "linearizability under failover: node {leader} (leader) killed 6 s in, back 8 s later, \
         node {} leads now",
        broker.leader(&topic)
    );
    // Few under a loaded machine (three JVM brokers, three replicas, other tests), but some.
    assert!(summary["cas_ok"].as_u64() > Some(0), "{summary}");
}
