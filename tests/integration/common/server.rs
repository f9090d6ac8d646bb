//! `kvstore serve` processes on loopback ports, and a small HTTP client for them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use serde_json::Value;

use super::broker::Flavor;
use super::json_of;

/// Tansu waits out every fetch: with the 500 ms default another replica's write would take a
/// quarter of a second to be seen (README, Configuration). Not one of the settings every
/// kvstore of the tests gets, which `make check-deploy` compares with the compose file.
const TANSU_FETCH_WAIT: (&str, &str) = ("KVSTORE_KAFKA__FETCH_WAIT_MAX", "10ms");

/// Characters escaped in keys placed in URLs (everything but unreserved characters).
const KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A `kvstore serve` process, killed on drop; its log is kept for failure messages.
pub struct Server {
    child: Mutex<Option<Child>>,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

/// What a server is started with beyond the broker address.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Extra `KVSTORE_*` environment variables.
    pub env: Vec<(String, String)>,
    /// A configuration file.
    pub config_file: Option<PathBuf>,
    /// The address to listen on instead of `127.0.0.1:0`.
    pub listen: Option<String>,
    /// A bearer token the harness's HTTP client sends with every request.
    pub token: Option<String>,
    /// The CA that signed the server's certificate, when it serves HTTPS: the base URL is
    /// then `https://` and the client trusts this CA alone.
    pub ca_file: Option<PathBuf>,
}

impl ServerOptions {
    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Serves HTTPS with `cert_file` and `key_file`, which `ca_file` signed.
    pub fn https(self, cert_file: &Path, key_file: &Path, ca_file: &Path) -> Self {
        let mut options = self
            .env("KVSTORE_HTTP__TLS__CERT_FILE", &cert_file.to_string_lossy())
            .env("KVSTORE_HTTP__TLS__KEY_FILE", &key_file.to_string_lossy());
        options.ca_file = Some(ca_file.to_path_buf());
        options
    }
}

/// An HTTP client trusting only the CA in `ca_file` for https:// URLs.
pub fn client_trusting(ca_file: &Path) -> reqwest::Client {
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
    trusting(builder, ca_file).build().expect("client")
}

/// `builder`, trusting the CA in `ca_file` and no other.
fn trusting(builder: reqwest::ClientBuilder, ca_file: &Path) -> reqwest::ClientBuilder {
    let pem = std::fs::read(ca_file).expect("CA file");
    builder
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA certificate"))
}

impl Server {
    /// A server for `brokers` with default settings.
    pub fn start(brokers: &str) -> Server {
        Server::start_with(brokers, ServerOptions::default())
    }

    /// A server for `brokers` with `options`.
    pub fn start_with(brokers: &str, options: ServerOptions) -> Server {
        let mut child = Server::command(brokers, &options)
            .spawn()
            .expect("kvstore starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(address) = listening_address(&line) {
                        let _ = address_tx.send(address);
                    }
                    log.lock().expect("log").push(line);
                }
            });
        }
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().expect("log").push(line);
                }
            });
        }
        let address = match address_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "kvstore did not start listening; its output:\n{}",
                    log.lock().expect("log").join("\n")
                );
            }
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &options.token {
            let value = format!("Bearer {token}").parse().expect("header value");
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            // Below the server's header read timeout (10 s), after which it closes an idle
            // connection: a connection reused just then fails with no answer.
            .pool_idle_timeout(Duration::from_secs(5))
            .default_headers(headers);
        let base = match &options.ca_file {
            Some(ca_file) => {
                client = trusting(client, ca_file);
                format!("https://{address}")
            }
            None => format!("http://{address}"),
        };
        Server {
            child: Mutex::new(Some(child)),
            base,
            log,
            client: client.build().expect("client"),
        }
    }

    /// Starts a server that must refuse to start with `options`; returns its output once it
    /// has exited with status 1 (an error, not a panic) without a backtrace. Fails the test if
    /// it is still running after 20 s.
    pub fn refused_start(brokers: &str, options: ServerOptions) -> String {
        // A refusal is a message, not a backtrace, even where backtraces are asked for.
        let child = Server::command(brokers, &options)
            .env("RUST_BACKTRACE", "1")
            .spawn()
            .expect("kvstore starts");
        let pid = child.id().to_string();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || done_tx.send(child.wait_with_output()));
        let Ok(output) = done_rx.recv_timeout(Duration::from_secs(20)) else {
            // Not reaped yet, so the pid is still this process's.
            let _ = Command::new("kill").arg(pid).status();
            panic!("kvstore did not refuse to start within 20 s");
        };
        let output = output.expect("output");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        // 1 is an error reported as such; a panic would exit with 101.
        assert_eq!(
            output.status.code(),
            Some(1),
            "kvstore did not exit with status 1:\n{text}"
        );
        assert!(
            !text.to_lowercase().contains("backtrace"),
            "a refusal printed a backtrace:\n{text}"
        );
        text
    }

    /// The `kvstore serve` command for `brokers` with `options`, its output piped.
    fn command(brokers: &str, options: &ServerOptions) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kvstore"));
        command
            .arg("serve")
            .arg("--listen")
            .arg(options.listen.as_deref().unwrap_or("127.0.0.1:0"))
            .arg("--brokers")
            .arg(brokers)
            .arg("--log-format")
            .arg("json")
            .env_remove("RUST_LOG")
            .env("KVSTORE_LOG_LEVEL", "info,librdkafka=off")
            .env("KVSTORE_WRITE_TIMEOUT", "10s")
            .env("KVSTORE_SHUTDOWN_TIMEOUT", "5s")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if Flavor::chosen() == Flavor::Tansu {
            command.env(TANSU_FETCH_WAIT.0, TANSU_FETCH_WAIT.1);
        }
        if let Some(file) = &options.config_file {
            command.arg("--config").arg(file);
        }
        for (key, value) in &options.env {
            command.env(key, value);
        }
        command
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The URL of a key, percent-encoding it (including `/`).
    pub fn key_url(&self, topic: &str, key: &str) -> String {
        format!(
            "{}/v1/{topic}/keys/{}",
            self.base,
            utf8_percent_encode(key, KEY_ESCAPES)
        )
    }

    /// The HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// PUT a value with a content type; returns status and JSON body.
    pub async fn put(
        &self,
        topic: &str,
        key: &str,
        value: impl Into<reqwest::Body>,
        content_type: &str,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .put(self.key_url(topic, key))
            .header("content-type", content_type)
            .body(value)
            .send()
            .await
            .expect("PUT sent");
        json_of(response).await
    }

    /// PUT a text value with one condition header (`If-Match` or `If-None-Match`) set to
    /// `tag`; returns status and JSON body.
    pub async fn put_if(
        &self,
        topic: &str,
        key: &str,
        value: &str,
        header: &str,
        tag: &str,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .put(self.key_url(topic, key))
            .header("content-type", "text/plain")
            .header(header, tag)
            .body(value.to_owned())
            .send()
            .await
            .expect("PUT sent");
        json_of(response).await
    }

    /// DELETE a key with one condition header set to `tag`; returns status and JSON body.
    pub async fn delete_if(
        &self,
        topic: &str,
        key: &str,
        header: &str,
        tag: &str,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .delete(self.key_url(topic, key))
            .header(header, tag)
            .send()
            .await
            .expect("DELETE sent");
        json_of(response).await
    }

    /// PUTs `value` under `key` every 200 ms until it succeeds, failing the test if `limit`
    /// passes since `since` first; returns its offset. For waiting out a fault's end.
    pub async fn put_until_ok(
        &self,
        topic: &str,
        key: &str,
        value: &str,
        since: Instant,
        limit: Duration,
    ) -> i64 {
        loop {
            let (status, body) = self.put(topic, key, value.to_owned(), "text/plain").await;
            if status == StatusCode::OK {
                return body["offset"].as_i64().expect("offset");
            }
            assert!(
                since.elapsed() < limit,
                "writes still fail {limit:?} after the fault ended: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// PUT a value and insist it succeeded; returns its offset.
    pub async fn put_ok(&self, topic: &str, key: &str, value: impl Into<reqwest::Body>) -> i64 {
        let (status, body) = self
            .put(topic, key, value, "application/octet-stream")
            .await;
        assert_eq!(status, StatusCode::OK, "PUT {topic}/{key}: {body}");
        body["offset"].as_i64().expect("offset")
    }

    /// GET a key; returns status, content type and raw body.
    pub async fn get(&self, topic: &str, key: &str) -> (StatusCode, String, Vec<u8>) {
        let response = self
            .client
            .get(self.key_url(topic, key))
            .send()
            .await
            .expect("GET sent");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.bytes().await.expect("body").to_vec();
        (status, content_type, body)
    }

    /// DELETE a key; returns status and JSON body.
    pub async fn delete(&self, topic: &str, key: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .delete(self.key_url(topic, key))
            .send()
            .await
            .expect("DELETE sent");
        json_of(response).await
    }

    /// POST a batch; returns status and JSON body.
    pub async fn batch(&self, topic: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(&format!("/v1/{topic}/batch")))
            .json(body)
            .send()
            .await
            .expect("batch sent");
        json_of(response).await
    }

    /// GET a path; returns status and JSON body.
    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("GET sent");
        json_of(response).await
    }

    /// Every item of a topic, paging through the range endpoint `page` items at a time.
    pub async fn dump(&self, topic: &str, query: &str, page: usize) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/{topic}/range?limit={page}");
            if !query.is_empty() {
                path.push('&');
                path.push_str(query);
            }
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let (status, body) = self.get_json(&path).await;
            assert_eq!(status, StatusCode::OK, "range: {body}");
            let page_items = body["items"].as_array().expect("items");
            assert!(page_items.len() <= page, "page larger than its limit");
            items.extend(page_items.iter().cloned());
            match body.get("next_cursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
    }

    /// The `/v1/topics` entry of `topic`, if attached.
    pub async fn topic_info(&self, topic: &str) -> Option<Value> {
        let (_, body) = self.get_json("/v1/topics").await;
        body["topics"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == topic)
            .cloned()
    }

    /// Waits until this server has applied `topic` up to and including `offset`.
    pub async fn wait_applied(&self, topic: &str, offset: i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Reading the topic attaches it if needed.
            let _ = self.get(topic, "__probe__").await;
            if let Some(info) = self.topic_info(topic).await
                && info["applied_offset"].as_i64().unwrap_or(-1) > offset
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{topic} not applied to {offset} in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `/readyz` answers `status`.
    pub async fn wait_readiness(&self, status: StatusCode, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (now, body) = self.get_json("/readyz").await;
            if now == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "readiness stayed {now} ({body}), expected {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/readyz` reports the broker as `state` (`up`, `down`).
    pub async fn wait_broker(&self, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, body) = self.get_json("/readyz").await;
            if body["broker"] == state {
                return;
            }
            assert!(Instant::now() < deadline, "broker not {state}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to `timeout` for a log line containing `needle`; fails the test if none comes.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM; returns whether the signal was delivered.
    pub fn signal_terminate(&self) -> bool {
        self.signal("TERM")
    }

    /// Sends SIGHUP; returns whether the signal was delivered.
    pub fn signal_hangup(&self) -> bool {
        self.signal("HUP")
    }

    /// Sends the signal `name` (`TERM`, `HUP`, ...); returns whether it was delivered.
    pub fn signal(&self, name: &str) -> bool {
        let pid = match self.child.lock().expect("child").as_ref() {
            Some(child) => child.id(),
            None => return false,
        };
        Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits up to `timeout` for the process to exit; kills it if it does not. Returns whether
    /// it exited by itself.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.lock().expect("child").as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(mut child) = self.child.lock().expect("child").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        false
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited in time.
    pub fn terminate(&self, timeout: Duration) -> bool {
        self.signal_terminate() && self.wait_exit(timeout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().expect("child").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- kvstore output ---\n{}", self.log());
        }
    }
}

fn listening_address(line: &str) -> Option<String> {
    let entry: Value = serde_json::from_str(line).ok()?;
    let fields = entry.get("fields")?;
    (fields.get("message")?.as_str()? == "listening")
        .then(|| fields.get("address")?.as_str().map(str::to_owned))
        .flatten()
}
