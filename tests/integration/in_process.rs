//! The service run in the test's own process through `kvstore::app::run`, on a listener the
//! test binds to port 0 and stopped by a future the test completes: the entry point for fast
//! tests of the HTTP layer. The other tests run the `kvstore` binary.

use std::time::Duration;

use kvstore::config::Config;
use reqwest::StatusCode;

use crate::common::{Broker, topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_run_serves_on_a_listener_of_the_tests_own_and_stops_when_told() {
    let broker = Broker::shared();
    let config = Config {
        brokers: broker.address(),
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bound");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(kvstore::app::run(config, listener, None, async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let url = format!("{base}/v1/{}/keys/greeting", topic("in-process"));
    let put = client
        .put(&url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("PUT sent");
    assert_eq!(put.status(), StatusCode::OK);
    let get = client.get(&url).send().await.expect("GET sent");
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.text().await.expect("body"), "hello");

    stop.send(()).expect("the service still runs");
    let stopped = tokio::time::timeout(Duration::from_secs(15), service)
        .await
        .expect("stopped in time")
        .expect("joined");
    assert!(stopped.is_ok(), "{stopped:?}");
    assert!(client.get(&url).send().await.is_err(), "still listening");
}
