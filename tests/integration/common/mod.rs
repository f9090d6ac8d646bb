//! The test harness: real brokers (Apache Kafka by default, see [`broker`]), real
//! `kvstore serve` processes on loopback ports ([`server`]), and raw sockets for requests an
//! HTTP client would refuse to send ([`raw`]).

pub mod broker;
mod kafka;
pub mod load;
pub mod raw;
pub mod server;
pub mod sse;
mod tansu;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

pub use broker::{Broker, Flavor, KafkaOptions};
pub use raw::raw_request;
pub use server::{Server, ServerOptions, client_trusting};

/// A free loopback port (free when asked; the OS will not hand it out again soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub(crate) fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Status and JSON body of a response (`Value::Null` if the body is not JSON).
pub async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A topic name no other test of this run uses, on a broker the tests share.
pub fn topic(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// The path of a file in the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}
