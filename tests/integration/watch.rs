//! `/v1/{topic}/watch`: change streams checked against the writes that were acknowledged,
//! across two replicas, through resumes, snapshots under writes, positions no longer kept,
//! slow readers, shutdown, a real browser's `EventSource` and the `kvstore watch` command.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::sse::{Event, EventStream};
use crate::common::{Broker, Server, ServerOptions, topic};

/// Long enough for anything a test waits for; a stream silent this long has failed.
const PATIENCE: Duration = Duration::from_secs(30);

/// Servers that send `progress` often, so that a watcher learns soon that it has seen
/// everything up to an offset.
fn quick_progress() -> ServerOptions {
    ServerOptions::default().env("KVSTORE_WATCH__PROGRESS_INTERVAL", "200ms")
}

/// Which keys a watch's query selects.
type KeyFilter = fn(&str) -> bool;

/// A change as a write made it: offset, key, and the value (`None` for a delete).
type Applied = (i64, String, Option<String>);

/// The changes in `events`, in the order received.
fn changes(events: &[Event]) -> Vec<Applied> {
    events
        .iter()
        .filter(|e| e.event == "put" || e.event == "delete")
        .map(|e| {
            let value =
                (e.event == "put").then(|| e.data["value"].as_str().unwrap_or_default().to_owned());
            (e.offset(), e.key().to_owned(), value)
        })
        .collect()
}

/// Reads `stream` until it has passed `last` (an event or a progress with an id at or past
/// it); returns the events.
async fn read_through(stream: &mut EventStream, last: i64) -> Vec<Event> {
    stream
        .until(PATIENCE, |e| e.id.is_some_and(|id| id >= last))
        .await
}

/// Writes `count` changes to keys `{prefix}{0..10}` on `server`, a delete now and then;
/// returns what was applied.
async fn write_changes(server: &Server, topic: &str, writer: usize, count: usize) -> Vec<Applied> {
    let mut applied = Vec::new();
    for i in 0..count {
        let prefix = ["a/", "b/", "c/"][(writer + i) % 3];
        let key = format!("{prefix}{}", (writer * 7 + i * 3) % 10);
        if i % 5 == 4 {
            let (status, body) = server.delete(topic, &key).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            applied.push((body["offset"].as_i64().expect("offset"), key, None));
        } else {
            let value = format!("w{writer}-{i}");
            let (status, body) = server.put(topic, &key, value.clone(), "text/plain").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            applied.push((body["offset"].as_i64().expect("offset"), key, Some(value)));
        }
    }
    applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watchers_on_two_replicas_see_exactly_the_applied_changes_of_their_keys() {
    let broker = Broker::shared();
    let topic = topic("watch-many");
    let replicas = [
        Arc::new(Server::start_with(&broker.address(), quick_progress())),
        Arc::new(Server::start_with(&broker.address(), quick_progress())),
    ];
    let first = replicas[0].put_ok(&topic, "init", "x").await;
    replicas[1].wait_applied(&topic, first).await;

    // Each range on each replica, opened before anything is written.
    let ranges: [(&str, KeyFilter); 4] = [
        ("prefix=a/", |k| k.starts_with("a/")),
        ("prefix=b/", |k| k.starts_with("b/")),
        ("start=a/5&end=b/5", |k| ("a/5".."b/5").contains(&k)),
        ("", |_| true),
    ];
    let mut watchers = Vec::new();
    for replica in &replicas {
        for (query, _) in &ranges {
            watchers.push(EventStream::open(replica, &topic, query, None).await);
        }
    }

    // Four writers, two on each replica.
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let server = replicas[writer % 2].clone();
            let topic = topic.clone();
            tokio::spawn(async move { write_changes(&server, &topic, writer, 40).await })
        })
        .collect();
    let mut applied = Vec::new();
    for writer in writers {
        applied.extend(writer.await.expect("writer"));
    }
    applied.sort();
    let last = applied.last().expect("writes").0;

    let mut seen: Vec<Vec<Applied>> = Vec::new();
    for (i, watcher) in watchers.iter_mut().enumerate() {
        let (query, matches) = &ranges[i % ranges.len()];
        let got = changes(&read_through(watcher, last).await);
        let expected: Vec<Applied> = applied
            .iter()
            .filter(|(_, key, _)| matches(key))
            .cloned()
            .collect();
        assert!(!expected.is_empty(), "{query}");
        assert_eq!(got, expected, "watcher {i} ({query:?})");
        seen.push(got);
    }
    // The same on both replicas.
    assert_eq!(seen[..ranges.len()], seen[ranges.len()..]);
}

#[tokio::test]
async fn a_stream_resumed_with_last_event_id_on_the_other_replica_misses_nothing() {
    let broker = Broker::shared();
    let topic = topic("watch-resume");
    let a = Server::start_with(&broker.address(), quick_progress());
    let b = Server::start_with(&broker.address(), quick_progress());
    let first = a.put_ok(&topic, "other", "x").await;
    b.wait_applied(&topic, first).await;

    let mut stream = EventStream::open(&a, &topic, "prefix=r/", None).await;
    let mut written = Vec::new();
    for i in 0..20 {
        written.push(a.put_ok(&topic, &format!("r/{i}"), format!("{i}")).await);
    }
    let mut received = Vec::new();
    for _ in 0..10 {
        received.push(stream.next_change(PATIENCE).await.expect("an event"));
    }
    let last_id = received.last().and_then(|e| e.id).expect("an id");
    // The connection drops; meanwhile the other replica takes writes.
    drop(stream);
    for i in 20..40 {
        written.push(b.put_ok(&topic, &format!("r/{i}"), format!("{i}")).await);
    }
    let mut resumed = EventStream::open(&b, &topic, "prefix=r/", Some(last_id)).await;
    let last = *written.last().expect("writes");
    received.extend(read_through(&mut resumed, last).await);
    let offsets: Vec<i64> = changes(&received).iter().map(|c| c.0).collect();
    assert_eq!(offsets, written, "every write once, in order");
    let keys: Vec<String> = changes(&received).into_iter().map(|c| c.1).collect();
    let expected: Vec<String> = (0..40).map(|i| format!("r/{i}")).collect();
    assert_eq!(keys, expected);

    // `from` is the same resume point as a query parameter, for clients without headers.
    let mut from =
        EventStream::open(&b, &topic, &format!("prefix=r/&from={}", written[29]), None).await;
    let tail = changes(&read_through(&mut from, last).await);
    assert_eq!(tail.iter().map(|c| c.0).collect::<Vec<_>>(), written[30..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_under_concurrent_writes_and_the_changes_after_it_reproduce_the_state() {
    let broker = Broker::shared();
    let topic = topic("watch-snapshot");
    let a = Arc::new(Server::start_with(&broker.address(), quick_progress()));
    let b = Server::start_with(&broker.address(), quick_progress());
    // 3000 keys of 1 KiB: more than one page, and more than the connection buffers, so later
    // pages are read while the writes below go on.
    let filler = "x".repeat(1000);
    for chunk in 0..6 {
        let ops: Vec<Value> = (chunk * 500..(chunk + 1) * 500)
            .map(|i| json!({"op": "put", "key": format!("s/{i:05}"), "value": filler}))
            .collect();
        let (status, body) = a.batch(&topic, &json!({ "ops": ops })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let loaded = a.put_ok(&topic, "outside", "x").await;
    b.wait_applied(&topic, loaded).await;

    let writer = {
        let a = a.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..300 {
                let key = format!("s/{:05}", (i * 37) % 3100);
                last = if i % 4 == 3 {
                    let (status, body) = a.delete(&topic, &key).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    body["offset"].as_i64().expect("offset")
                } else {
                    a.put_ok(&topic, &key, format!("new-{i}")).await
                };
            }
            last
        })
    };
    let mut stream = EventStream::open(&b, &topic, "prefix=s/&snapshot=true", None).await;
    let mut state: BTreeMap<String, Value> = BTreeMap::new();
    let apply = |state: &mut BTreeMap<String, Value>, event: &Event| match event.event.as_str() {
        "put" => {
            state.insert(event.key().to_owned(), event.data.clone());
        }
        "delete" => {
            state.remove(event.key());
        }
        _ => {}
    };
    let mut snapshot_events = 0;
    let synced = loop {
        let event = stream.next(PATIENCE).await.expect("an event");
        if event.event == "synced" {
            break event;
        }
        assert!(event.id.is_none(), "snapshot events carry no id: {event:?}");
        apply(&mut state, &event);
        snapshot_events += 1;
        if snapshot_events % 100 == 0 {
            // A slow reader, so that the writes overlap the snapshot's pages.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert_eq!(synced.id, Some(synced.offset()), "{synced:?}");
    assert!(state.len() >= 2900, "{} keys in the snapshot", state.len());
    let last = writer.await.expect("writer");
    eprintln!(
        "snapshot: {snapshot_events} events for {} keys, synced at {} (loaded at {loaded}, \
         writes until {last})",
        state.len(),
        synced.offset()
    );
    for event in read_through(&mut stream, last).await {
        apply(&mut state, &event);
    }
    let expected: BTreeMap<String, Value> = a
        .dump(&topic, "prefix=s/", 1000)
        .await
        .into_iter()
        .map(|item| (item["key"].as_str().expect("key").to_owned(), item))
        .collect();
    assert_eq!(state.len(), expected.len());
    assert!(
        state == expected,
        "the snapshot and the changes after it differ from the state"
    );
}

#[tokio::test]
async fn positions_no_longer_kept_are_410_and_bad_requests_are_refused() {
    let broker = Broker::shared();
    let topic = topic("watch-expired");
    let options = quick_progress().env("KVSTORE_WATCH__RETAIN_CHANGES", "10");
    let server = Server::start_with(&broker.address(), options.clone());
    let mut offsets = Vec::new();
    for i in 0..30 {
        offsets.push(server.put_ok(&topic, &format!("k{i}"), "v").await);
    }
    // Ten changes kept: 20 to 29; resuming after 19 misses nothing, after 18 might.
    let check = |server: &Server| {
        let url = server.url(&format!("/v1/{topic}/watch?from={}", offsets[0]));
        let client = server.http().clone();
        async move {
            let response = client.get(url).send().await.expect("sent");
            assert_eq!(response.status(), StatusCode::GONE);
            let earliest: i64 = response.headers()["x-kv-earliest-offset"]
                .to_str()
                .expect("text")
                .parse()
                .expect("an offset");
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["error"]["code"], "watch_expired", "{body}");
            earliest
        }
    };
    assert_eq!(check(&server).await, offsets[19]);
    let mut stream =
        EventStream::open(&server, &topic, &format!("from={}", offsets[19]), None).await;
    // The stream opens with its start position, then the changes after it.
    let opening = stream.next(PATIENCE).await.expect("event");
    assert_eq!(
        (opening.event.as_str(), opening.id),
        ("progress", Some(offsets[19]))
    );
    assert_eq!(
        stream.next(PATIENCE).await.expect("event").id,
        Some(offsets[20])
    );

    // A replica started afterwards kept the same history from its replay (no gap in it).
    let fresh = Server::start_with(&broker.address(), options);
    fresh.wait_applied(&topic, offsets[29]).await;
    assert_eq!(check(&fresh).await, offsets[19]);
    let mut stream =
        EventStream::open(&fresh, &topic, &format!("from={}", offsets[25]), None).await;
    assert_eq!(
        stream.next_change(PATIENCE).await.expect("event").id,
        Some(offsets[26])
    );

    // A position ahead of the replica waits for it, within `wait`.
    let started = Instant::now();
    let (status, body) = server
        .get_json(&format!("/v1/{topic}/watch?from=1000000000&wait=300ms"))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "offset_not_applied");
    assert!(started.elapsed() < Duration::from_secs(5));

    let bad = [
        ("from=-2", "invalid_query"),
        ("from=x", "invalid_query"),
        ("snapshot=true&from=3", "invalid_query"),
        ("wait=forever", "invalid_query"),
        ("nope=1", "invalid_query"),
    ];
    for (query, code) in bad {
        let (status, body) = server.get_json(&format!("/v1/{topic}/watch?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], code, "{query}");
    }
    let (status, body) = crate::common::json_of(
        server
            .http()
            .get(server.url(&format!("/v1/{topic}/watch")))
            .header("last-event-id", "not-an-offset")
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_header");
    let (status, body) = server.get_json("/v1/no-such-topic-at-all/watch").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "topic_not_found");
}

#[tokio::test]
async fn watchers_past_the_limit_get_503() {
    let broker = Broker::shared();
    let topic = topic("watch-limit");
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default().env("KVSTORE_WATCH__MAX_WATCHERS", "2"),
    );
    server.put_ok(&topic, "k", "v").await;
    let first = EventStream::open(&server, &topic, "", None).await;
    let _second = EventStream::open(&server, &topic, "", None).await;
    let Err((status, body)) = EventStream::try_open(&server, &topic, "", None).await else {
        panic!("a third watcher was let in");
    };
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "too_many_watchers");
    // A watcher that hangs up frees its place.
    drop(first);
    let deadline = Instant::now() + PATIENCE;
    while EventStream::try_open(&server, &topic, "", None)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the place was not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Percentile `p` (0 to 100) of `samples`.
fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples[(samples.len() - 1) * p / 100]
}

/// `count` PUTs of `value` to keys `{prefix}{i}` from 2 writers; returns their latencies.
async fn timed_puts(
    server: &Arc<Server>,
    topic: &str,
    prefix: &str,
    count: usize,
    value: &str,
) -> Vec<Duration> {
    let tasks: Vec<_> = (0..2)
        .map(|writer| {
            let server = server.clone();
            let topic = topic.to_owned();
            let value = value.to_owned();
            let prefix = prefix.to_owned();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                for i in (writer..count).step_by(2) {
                    let started = Instant::now();
                    server
                        .put_ok(&topic, &format!("{prefix}{i}"), value.clone())
                        .await;
                    samples.push(started.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("writer"));
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watcher_that_reads_nothing_is_ended_with_an_error_and_slows_no_one() {
    let broker = Broker::shared();
    let topic = topic("watch-slow");
    let server = Arc::new(Server::start_with(
        &broker.address(),
        // About 500 changes of 32 KiB.
        quick_progress().env("KVSTORE_WATCH__RETAIN_BYTES", "16777216"),
    ));
    let value = "v".repeat(32 * 1024);
    server.put_ok(&topic, "warm", "up").await;
    // A watcher that reads everything, throughout: the writes' latency is measured with it
    // alone, then with a stalled watcher beside it.
    let mut reader = EventStream::open(&server, &topic, "prefix=slow/", None).await;
    let read_all = tokio::spawn(async move {
        let mut puts = 0;
        let events = reader
            .until(PATIENCE * 2, |e| {
                puts += usize::from(e.event == "put");
                puts == 1800
            })
            .await;
        changes(&events)
    });
    let mut before = timed_puts(&server, &topic, "slow/base/", 200, &value).await;
    let mut stalled = EventStream::open(&server, &topic, "prefix=slow/", None).await;
    // 1600 values of 32 KiB: 50 MiB, far more than the stalled watcher's connection holds.
    let mut during = timed_puts(&server, &topic, "slow/", 1600, &value).await;
    let all = read_all.await.expect("reader");
    assert_eq!(all.len(), 1800, "the other watcher saw every write");
    let all = &all[200..];
    let (p50_before, p99_before) = (percentile(&mut before, 50), percentile(&mut before, 99));
    let (p50_during, p99_during) = (percentile(&mut during, 50), percentile(&mut during, 99));
    eprintln!(
        "PUT latency without a stalled watcher p50 {p50_before:?} p99 {p99_before:?}; \
         with one p50 {p50_during:?} p99 {p99_during:?}"
    );
    // Loose: the machine is shared; a watcher the writes waited on would take them to the
    // write timeout (10 s).
    assert!(
        p99_during < Duration::from_secs(2),
        "PUT p99 {p99_during:?}"
    );

    // The stalled watcher, reading at last: what its connection held, in order, then the
    // error, then the end; never a gap.
    let mut events = Vec::new();
    while let Some(event) = stalled.next(PATIENCE).await {
        events.push(event);
    }
    let error = events.pop().expect("events");
    assert_eq!(error.event, "error", "{error:?}");
    assert_eq!(
        error.data["error"]["code"], "watch_fell_behind",
        "{error:?}"
    );
    let got = changes(&events);
    assert!(got.len() < 1600, "the stalled watcher was not ended");
    assert_eq!(
        got[..],
        all[..got.len()],
        "what it got is the start of what was applied"
    );
    let text = server
        .http()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(
        text.lines()
            .any(|l| l.starts_with("kvstore_watchers_fell_behind_total") && !l.ends_with(" 0")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_with_100_open_streams_finishes_within_the_timeout() {
    let broker = Broker::shared();
    let topic = topic("watch-shutdown");
    // The harness's shutdown timeout is 5 s.
    let server = Server::start(&broker.address());
    server.put_ok(&topic, "k", "v").await;
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(EventStream::open(&server, &topic, "", None).await);
    }
    let offset = server.put_ok(&topic, "k", "again").await;
    for stream in &mut streams {
        assert_eq!(
            stream.next_change(PATIENCE).await.expect("event").id,
            Some(offset)
        );
    }
    let started = Instant::now();
    assert!(server.signal_terminate());
    let ended = futures::future::join_all(
        streams
            .iter_mut()
            .map(|stream| stream.ends_within(Duration::from_secs(4))),
    )
    .await;
    assert!(
        ended.iter().all(|ended| *ended),
        "every stream ended cleanly"
    );
    assert!(server.wait_exit(Duration::from_secs(5)), "did not exit");
    let took = started.elapsed();
    eprintln!("shutdown with 100 streams took {took:?}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
}

/// A `kvstore watch` process; its stdout lines arrive on a channel.
struct WatchCommand {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl WatchCommand {
    fn start(url: &str, args: &[&str]) -> WatchCommand {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_kvstore"))
            .arg("watch")
            .args(args)
            .env("KVSTORE_URL", url)
            .stdout(Stdio::piped())
            .spawn()
            .expect("kvstore watch runs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let value = serde_json::from_str(&line).expect("a JSON line");
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        WatchCommand { child, lines }
    }

    /// The next line, failing the test if none comes in time.
    #[track_caller]
    fn line(&self) -> Value {
        self.lines.recv_timeout(PATIENCE).expect("a line")
    }
}

impl Drop for WatchCommand {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_watch_command_prints_json_lines_and_resumes_after_the_server_restarts() {
    let broker = Broker::shared();
    let topic = topic("watch-cli");
    let listen = format!("127.0.0.1:{}", crate::common::free_port());
    let options = ServerOptions {
        listen: Some(listen.clone()),
        ..quick_progress()
    };
    let server = Server::start_with(&broker.address(), options.clone());
    server.put_ok(&topic, "c/before", "0").await;
    let snapshot = WatchCommand::start(server.base(), &[&topic, "--prefix", "c/", "--snapshot"]);
    let put = snapshot.line();
    assert_eq!(
        (put["event"].as_str(), put["key"].as_str()),
        (Some("put"), Some("c/before"))
    );
    assert_eq!(snapshot.line()["event"], "synced");
    drop(snapshot);

    let command = WatchCommand::start(server.base(), &[&topic, "--prefix", "c/"]);
    // It is following once it reports a position reached.
    let deadline = Instant::now() + PATIENCE;
    loop {
        server.put_ok(&topic, "other", "x").await;
        if let Ok(line) = command.lines.recv_timeout(Duration::from_millis(500)) {
            assert_eq!(line["event"], "progress", "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "kvstore watch reports nothing");
    }
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(
            server
                .put_ok(&topic, &format!("c/{i}"), format!("{i}"))
                .await,
        );
    }
    assert!(server.terminate(Duration::from_secs(10)), "stopped");
    let restarted = Server::start_with(&broker.address(), options);
    for i in 5..10 {
        written.push(
            restarted
                .put_ok(&topic, &format!("c/{i}"), format!("{i}"))
                .await,
        );
    }
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let line = command.line();
        if line["event"] == "put" {
            assert_eq!(line["id"], line["offset"], "{line}");
            assert_eq!(line["key"], format!("c/{}", seen.len()), "{line}");
            seen.push(line["offset"].as_i64().expect("offset"));
        }
    }
    assert_eq!(
        seen, written,
        "every change once, in order, across the restart"
    );
}

#[tokio::test]
async fn keys_that_are_not_utf8_come_as_range_shows_them() {
    let broker = Broker::shared();
    let topic = topic("watch-foreign");
    broker.create_topic(&topic, 1).await;
    let server = Server::start(&broker.address());
    let mut stream = EventStream::open(&server, &topic, "", None).await;
    // Written by another Kafka producer: kvstore's API only takes UTF-8 keys.
    broker.produce(&topic, b"\xff\xfe", Some(b"v")).await;
    broker.produce(&topic, b"\xff\xfe", None).await;
    let put = stream.next_change(PATIENCE).await.expect("the put");
    assert_eq!(put.event, "put");
    assert_eq!(
        (put.key(), &put.data["key_encoding"]),
        ("//4=", &json!("base64"))
    );
    let delete = stream.next_change(PATIENCE).await.expect("the delete");
    assert_eq!(delete.event, "delete");
    assert_eq!(
        (delete.key(), &delete.data["key_encoding"]),
        ("//4=", &json!("base64"))
    );
}
