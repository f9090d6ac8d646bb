//! The network between kvstore and its broker cut and healed: a proxy in the test forwards
//! every connection (the broker advertises it, so that every connection goes through it) and,
//! while cut, stops forwarding without closing anything, as a partition between hosts does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::common::load::{
    assert_acknowledged_present, assert_answers_are_successes_or_unavailable, write_until,
};
use crate::common::{Broker, Server, ServerOptions, topic};

/// Copies `from` to `to`, holding everything back while `cut` is set.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut cut: watch::Receiver<bool>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // Re-check when the cut is made or healed.
            changed = cut.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // What was read while cut waits for the cut to heal.
        while *cut.borrow_and_update() {
            if cut.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// A proxy on `listener` to `upstream` that can be cut; runs as long as the test's runtime.
fn spawn_cuttable_proxy(listener: TcpListener, upstream: String) -> watch::Sender<bool> {
    let (cut, cut_rx) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, cut) = (upstream.clone(), cut_rx.clone());
            tokio::spawn(async move {
                let Ok(broker) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (broker_read, broker_write) = broker.into_split();
                tokio::join!(
                    pump(client_read, broker_write, cut.clone()),
                    pump(broker_read, client_write, cut),
                );
            });
        }
    });
    cut
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_network_cut_to_the_broker_and_its_healing_lose_no_acknowledged_write() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
    let proxy = listener.local_addr().expect("proxy address").to_string();
    let mut broker = Broker::not_started();
    broker.advertise(&proxy);
    broker.restart();
    let cut = spawn_cuttable_proxy(listener, broker.address());
    let topic = topic("partitioned");
    let options = ServerOptions::default().env("KVSTORE_WRITE_TIMEOUT", "5s");
    let server = Arc::new(Server::start_with(&proxy, options.clone()));
    server.put_ok(&topic, "before", "v").await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (server, stop, topic) = (server.clone(), stop.clone(), topic.clone());
        tokio::spawn(async move { write_until(&server, &topic, "w", 4, stop).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut_at = Instant::now();
    cut.send_replace(true);

    // The replica notices, says so, and keeps serving reads from memory.
    server
        .wait_readiness(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(20))
        .await;
    let noticed = cut_at.elapsed();
    let read = server
        .http()
        .get(server.key_url(&topic, "before"))
        .send()
        .await
        .expect("sent");
    assert_eq!(read.status(), StatusCode::OK);
    assert!(
        read.headers().contains_key("x-kv-stale-seconds"),
        "{read:?}"
    );
    let started = Instant::now();
    let (status, body) = server.put(&topic, "during", "x", "text/plain").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let healed_at = Instant::now();
    cut.send_replace(false);
    server
        .wait_readiness(StatusCode::OK, Duration::from_secs(60))
        .await;
    let after = server
        .put_until_ok(&topic, "after", "y", healed_at, Duration::from_secs(60))
        .await;
    let recovered = healed_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.expect("load finished");

    assert_answers_are_successes_or_unavailable(&outcomes);
    server.wait_applied(&topic, after).await;
    assert_acknowledged_present(&server, &topic, &outcomes).await;
    // The log agrees: a fresh replica, straight to the broker, has the same state.
    let fresh = Server::start_with(&proxy, options);
    fresh.wait_applied(&topic, after).await;
    assert_eq!(
        fresh.dump(&topic, "", 1000).await,
        server.dump(&topic, "", 1000).await
    );
    let acknowledged = outcomes.iter().filter(|o| o.acknowledged()).count();
    eprintln!(
        "network cut: noticed (readiness 503) after {:.1} s; writes succeed {:.1} s after the \
         network healed; {} writes, {acknowledged} acknowledged, 0 of them lost",
        noticed.as_secs_f64(),
        recovered.as_secs_f64(),
        outcomes.len()
    );
}
