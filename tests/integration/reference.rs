//! kvstore's topics with Apache Kafka's own tools: its console producer writes what kvstore
//! serves, its console consumer reads what kvstore wrote, and `kafka-topics --describe` shows
//! the topics kvstore creates. Apache Kafka only (the tools come with its jars).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use reqwest::StatusCode;

use crate::common::{Broker, Flavor, Server, repo_path, topic};

/// Runs one of Kafka's tools through `scripts/kafka.sh tool`, with `input` on its stdin.
async fn kafka_tool(args: Vec<String>, input: &str) -> Output {
    let input = input.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(repo_path("scripts/kafka.sh"))
            .arg("tool")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kafka.sh runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("input written");
        let output = child.wait_with_output().expect("tool finished");
        assert!(
            output.status.success(),
            "kafka.sh tool {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    })
    .await
    .expect("joined")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|&arg| arg.to_owned()).collect()
}

fn kafka() -> &'static Broker {
    let broker = Broker::shared();
    assert_eq!(broker.flavor(), Flavor::Kafka, "needs Apache Kafka's tools");
    broker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_producer_writes_what_get_serves_with_its_content_type() {
    let broker = kafka();
    let topic = topic("console-in");
    broker.create_topic(&topic, 1).await;
    // Headers, key and value, each separated by a tab (the tool's defaults).
    let lines = "content-type:application/json\tuser/1\t{\"name\":\"Ada\"}\n\
                 content-type:text/plain\tuser/2\tGrace\n";
    kafka_tool(
        args(&[
            "console-producer",
            "--bootstrap-server",
            &broker.address(),
            "--topic",
            &topic,
            "--property",
            "parse.key=true",
            "--property",
            "parse.headers=true",
        ]),
        lines,
    )
    .await;

    let server = Server::start(&broker.address());
    let (status, content_type, body) = server.get(&topic, "user/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    assert_eq!(body, br#"{"name":"Ada"}"#);
    let (status, content_type, body) = server.get(&topic, "user/2").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "text/plain")
    );
    assert_eq!(body, b"Grace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_consumer_prints_kvstore_records_with_keys_and_content_type() {
    let broker = kafka();
    let topic = topic("console-out");
    let server = Server::start(&broker.address());
    let (status, body) = server.put(&topic, "greeting", "hello", "text/plain").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .put(&topic, "config/app", r#"{"rps":100}"#, "application/json")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.delete(&topic, "greeting").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let output = kafka_tool(
        args(&[
            "console-consumer",
            "--bootstrap-server",
            &broker.address(),
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "3",
            "--timeout-ms",
            "30000",
            "--property",
            "print.key=true",
            "--property",
            "print.headers=true",
        ]),
        "",
    )
    .await;
    let printed = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines,
        [
            "content-type:text/plain\tgreeting\thello",
            "content-type:application/json\tconfig/app\t{\"rps\":100}",
            // A tombstone: no headers, a null value.
            "NO_HEADERS\tgreeting\tnull",
        ],
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topics_describes_what_kvstore_created() {
    let broker = kafka();
    let topic = topic("described");
    let server = Server::start(&broker.address());
    server.put_ok(&topic, "k", "v").await;
    let output = kafka_tool(
        args(&[
            "topics",
            "--bootstrap-server",
            &broker.address(),
            "--describe",
            "--topic",
            &topic,
        ]),
        "",
    )
    .await;
    let described = String::from_utf8_lossy(&output.stdout);
    let summary = described.lines().next().unwrap_or_default();
    assert!(summary.contains("PartitionCount: 1"), "{described}");
    // The replication factor kvstore asks for by default is the broker's (1 on this one).
    assert!(summary.contains("ReplicationFactor: 1"), "{described}");
    assert!(summary.contains("cleanup.policy=compact"), "{described}");
    assert!(summary.contains("max.message.bytes="), "{described}");
}
