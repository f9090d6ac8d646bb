//! The test harness: a real Kafka-compatible broker (Tansu) and real `kvstore` processes on
//! loopback ports, and a small HTTP client for them.
//!
//! Every test starts its own broker, so tests share no state. The broker binary comes from
//! `KVSTORE_TEST_TANSU` (set by `make test`, which installs it).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::StatusCode;
use serde_json::Value;

/// Characters escaped in keys placed in URLs (everything but unreserved characters).
const KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A free loopback port (free when asked; the OS will not hand it out again soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn tansu_binary() -> PathBuf {
    match std::env::var_os("KVSTORE_TEST_TANSU") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "KVSTORE_TEST_TANSU is not set: run the tests with `make test`, which installs the \
             Tansu broker and points this variable at it"
        ),
    }
}

/// A Tansu broker process on a loopback port, killed on drop.
pub struct Broker {
    child: Option<Child>,
    producer: std::sync::OnceLock<FutureProducer>,
    port: u16,
    storage: String,
    workdir: PathBuf,
    binary: PathBuf,
    /// What the broker advertises to clients (`host:port`) when not its own address.
    advertised: Option<String>,
    /// Extra `tansu broker` arguments, such as `--authentication`.
    args: Vec<String>,
}

impl Broker {
    /// A broker with in-memory storage.
    pub fn start() -> Broker {
        Broker::start_with(
            tansu_binary(),
            "memory://tansu/".into(),
            std::env::temp_dir(),
        )
    }

    /// A broker with the given binary, storage URL and working directory.
    pub fn start_with(binary: PathBuf, storage: String, workdir: PathBuf) -> Broker {
        let mut broker = Broker::stopped(binary, storage, workdir);
        broker.restart();
        broker
    }

    /// An in-memory broker with a port reserved but not started: `restart` starts it.
    pub fn not_started() -> Broker {
        Broker::stopped(
            tansu_binary(),
            "memory://tansu/".into(),
            std::env::temp_dir(),
        )
    }

    /// A broker with SQLite storage in `workdir`, which survives a restart. The binary comes
    /// from `KVSTORE_TEST_TANSU_SQLITE` (set by `make test-long`).
    pub fn start_persistent(workdir: &Path) -> Broker {
        let mut broker = Broker::persistent_not_started(workdir);
        broker.restart();
        broker
    }

    /// A broker as `start_persistent` makes, with a port reserved but not started: `restart`
    /// starts it.
    pub fn persistent_not_started(workdir: &Path) -> Broker {
        let binary = match std::env::var_os("KVSTORE_TEST_TANSU_SQLITE") {
            Some(path) => PathBuf::from(path),
            None => panic!(
                "KVSTORE_TEST_TANSU_SQLITE is not set: run these tests with `make test-long`"
            ),
        };
        Broker::stopped(binary, "sqlite://tansu.db".into(), workdir.to_path_buf())
    }

    fn stopped(binary: PathBuf, storage: String, workdir: PathBuf) -> Broker {
        Broker {
            child: None,
            producer: std::sync::OnceLock::new(),
            port: free_port(),
            storage,
            workdir,
            binary,
            advertised: None,
            args: Vec::new(),
        }
    }

    /// From the next `restart` on, advertises `address` (`host:port`) to clients instead of
    /// the broker's own, as a broker behind a proxy must: clients then make every connection
    /// after the first through the proxy too.
    pub fn advertise(&mut self, address: &str) {
        self.advertised = Some(address.to_owned());
    }

    /// From the next `restart` on, also passes `args` to `tansu broker`.
    pub fn add_args(&mut self, args: &[&str]) {
        self.args.extend(args.iter().map(|&arg| arg.to_owned()));
    }

    /// Creates a SCRAM user through the broker with `tansu user create`; `mechanism` is
    /// `scram256` or `scram512`. The broker must not require authentication yet: Tansu refuses
    /// this request from a client that has not authenticated.
    pub fn create_user(&self, mechanism: &str, name: &str, password: &str) {
        let output = Command::new(&self.binary)
            .args(["user", "create", "--broker"])
            .arg(format!("tcp://{}", self.address()))
            .args(["--mechanism", mechanism, name, password])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.binary.display()));
        assert!(
            output.status.success(),
            "tansu user create {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `host:port` for clients.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker process.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker process again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let advertised = match &self.advertised {
            Some(address) => format!("tcp://{address}"),
            None => format!("tcp://{}", self.address()),
        };
        let child = Command::new(&self.binary)
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://{}", self.address()))
            .arg("--advertised-listener-url")
            .arg(advertised)
            .arg("--storage-engine")
            .arg(&self.storage)
            .args(&self.args)
            .current_dir(&self.workdir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20));
    }

    /// An admin client for this broker.
    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.client_config().create().expect("admin client")
    }

    /// A plain producer, as any other Kafka application would use; one per broker.
    pub fn producer(&self) -> &FutureProducer {
        self.producer.get_or_init(|| {
            self.client_config()
                .set("enable.idempotence", "true")
                .set("linger.ms", "0")
                .create()
                .expect("producer")
        })
    }

    /// Client settings for this broker.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.address())
            .set("allow.auto.create.topics", "false");
        config
    }

    /// Creates a topic with `partitions` partitions.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact");
        let results = self
            .admin()
            .create_topics([&topic], &AdminOptions::new())
            .await
            .expect("create topics");
        for result in results {
            result.expect("topic created");
        }
    }

    /// Whether the broker's metadata lists `name`.
    pub fn has_topic(&self, name: &str) -> bool {
        let metadata = self
            .admin()
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata");
        metadata.topics().iter().any(|t| t.name() == name)
    }

    /// Produces a record with a plain Kafka producer; `None` writes a tombstone.
    pub async fn produce(&self, topic: &str, key: &[u8], value: Option<&[u8]>) -> i64 {
        self.produce_with_headers(topic, key, value, &[]).await
    }

    /// Produces a record with these headers (name, value) with a plain Kafka producer.
    pub async fn produce_with_headers(
        &self,
        topic: &str,
        key: &[u8],
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> i64 {
        let producer = self.producer();
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        if !headers.is_empty() {
            let owned = headers
                .iter()
                .fold(OwnedHeaders::new(), |all, (name, value)| {
                    all.insert(Header {
                        key: name,
                        value: Some(*value),
                    })
                });
            record = record.headers(owned);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produced")
            .offset
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
    /// has exited with status 1 (an error, not a panic). Fails the test if it is still running
    /// after 20 s.
    pub fn refused_start(brokers: &str, options: ServerOptions) -> String {
        let child = Server::command(brokers, &options)
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

/// Status and JSON body of a response (`Value::Null` if the body is not JSON).
pub async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A unique topic name for a test.
pub fn topic(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// The path of a file in the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code, or 0 if the server closed the connection without answering.
    pub status: u16,
    /// Everything after the headers.
    pub body: String,
}

/// Sends `request` as raw bytes (for requests an HTTP client would refuse or normalise) and
/// reads the response until the server closes the connection or `timeout` passes.
pub fn raw_request(base: &str, request: &[u8], timeout: Duration) -> RawResponse {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    // The server may answer (e.g. 413) and close before reading everything we send.
    let _ = stream.write_all(request);
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let text = String::from_utf8_lossy(&received).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    RawResponse { status, body }
}
