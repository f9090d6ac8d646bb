//! Security between kvstore and the brokers, end to end: the typed `kafka.security_protocol`,
//! `kafka.tls` and `kafka.sasl` settings against a real broker, with secrets by file and by
//! environment variable.
//!
//! Tansu 0.6 cannot serve TLS itself: its `--cert` and `--key` share a clap group, which makes
//! them mutually exclusive ("the argument '--cert <CERT>' cannot be used with '--key <KEY>'"),
//! and either one alone leaves the listener plaintext. So TLS is terminated here by a small
//! tokio-rustls proxy in front of the broker's plaintext port, and the broker advertises the
//! proxy, so that the connections clients make after bootstrap go through TLS as well.
//!
//! The same proxy serves Apache Kafka, which advertises it likewise. SASL SCRAM runs on a Kafka
//! node of the test's own whose client listener is `SASL_PLAINTEXT`, its users made when its
//! storage is formatted. On Tansu (`KVSTORE_TEST_BROKER=tansu`), whose `--authentication` is
//! SASL SCRAM too, users are made with `tansu user create`, which the broker refuses from a
//! client that has not authenticated; so they are made before the broker requires
//! authentication, and the broker is then restarted with `--authentication`. Only the SQLite
//! Tansu keeps them across that restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use reqwest::StatusCode;
use rustls::ServerConfig;
use rustls::pki_types::PrivatePkcs8KeyDer;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::common::{Broker, Flavor, KafkaOptions, Server, ServerOptions};

/// The SCRAM user's password. Long and odd enough that finding it in a log is no accident.
const PASSWORD: &str = "scram-Pa55word-4f9c2e71";

/// A certificate authority made for one test.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = CertificateParams::default();
        // rcgen gives every certificate the same default name; a leaf named like its issuer
        // looks self-issued to OpenSSL, which then fails to verify it.
        params
            .distinguished_name
            .push(DnType::CommonName, "kvstore test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// Writes this CA's certificate into `dir` as `name`, for `kafka.tls.ca_file`.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).expect("CA written");
        path
    }

    /// A TLS server configuration presenting a certificate for `names`, signed by this CA.
    fn server_config(&self, names: &[&str]) -> Arc<ServerConfig> {
        let names: Vec<String> = names.iter().map(|&name| name.to_owned()).collect();
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(names)
            .expect("server params")
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivatePkcs8KeyDer::from(key).into(),
            )
            .expect("server configuration");
        Arc::new(config)
    }
}

/// Terminates TLS on `listener` with `config` and forwards each connection in plaintext to
/// `upstream`, for as long as the test's runtime lives. Returns the count of completed
/// handshakes.
fn spawn_tls_proxy(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    upstream: String,
) -> Arc<AtomicUsize> {
    let handshakes = Arc::new(AtomicUsize::new(0));
    let acceptor = TlsAcceptor::from(config);
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (acceptor, upstream, counted) =
                (acceptor.clone(), upstream.clone(), counted.clone());
            tokio::spawn(async move {
                // A client that rejects the certificate aborts the handshake: nothing to forward.
                let Ok(mut client) = acceptor.accept(client).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut broker) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                }
            });
        }
    });
    handshakes
}

/// A broker of the test's own behind a TLS proxy.
struct TlsBroker {
    /// Kept for as long as the proxy forwards to it.
    _broker: Broker,
    /// The proxy's address: the bootstrap server, and the address the broker advertises.
    address: String,
    /// Shared with the proxy's task, which counts its completed handshakes.
    handshakes: Arc<AtomicUsize>,
}

impl TlsBroker {
    /// A broker behind a proxy presenting a certificate for `names`, signed by `ca`.
    async fn start(ca: &TestCa, names: &[&str]) -> TlsBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let address = listener.local_addr().expect("proxy address").to_string();
        let mut broker = Broker::not_started();
        broker.advertise(&address);
        broker.restart();
        let handshakes = spawn_tls_proxy(listener, ca.server_config(names), broker.address());
        TlsBroker {
            _broker: broker,
            address,
            handshakes,
        }
    }

    /// How many TLS handshakes the proxy has completed so far.
    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::Relaxed)
    }
}

/// The names the broker's certificate is for, normally: those of the loopback interface.
const LOOPBACK: &[&str] = &["localhost", "127.0.0.1"];

/// kvstore over TLS to the brokers, trusting the CA in `ca_file`, logging at the default
/// level (under which librdkafka's own reports are logged too).
fn ssl_options(ca_file: &Path) -> ServerOptions {
    ServerOptions::default()
        .env("KVSTORE_LOG_LEVEL", "info")
        .env("KVSTORE_KAFKA__SECURITY_PROTOCOL", "ssl")
        .env("KVSTORE_KAFKA__TLS__CA_FILE", &ca_file.to_string_lossy())
}

/// kvstore authenticating with SASL `mechanism` as `user` over `protocol`; the password
/// reference is the caller's to add.
fn sasl_options(protocol: &str, mechanism: &str, user: &str) -> ServerOptions {
    ServerOptions::default()
        .env("KVSTORE_LOG_LEVEL", "info")
        .env("KVSTORE_KAFKA__SECURITY_PROTOCOL", protocol)
        .env("KVSTORE_KAFKA__SASL__MECHANISM", mechanism)
        .env("KVSTORE_KAFKA__SASL__USERNAME", user)
}

/// A broker that requires SASL SCRAM and knows the user `kv` with [`PASSWORD`] for
/// `mechanism` (`scram256` or `scram512`; Kafka's knows both); it advertises `advertised`, if
/// given, instead of its own address. A Tansu one keeps its data in `dir`.
fn scram_broker(dir: &Path, mechanism: &str, advertised: Option<&str>) -> Broker {
    let mut broker = match Flavor::chosen() {
        Flavor::Kafka => Broker::kafka_not_started(KafkaOptions {
            scram_users: vec![format!("kv:{PASSWORD}")],
            ..KafkaOptions::default()
        }),
        Flavor::Tansu => Broker::persistent_not_started(dir),
    };
    if let Some(address) = advertised {
        broker.advertise(address);
    }
    broker.restart();
    if broker.flavor() == Flavor::Tansu {
        broker.create_tansu_user(mechanism, "kv", PASSWORD);
        broker.add_tansu_args(&["--authentication"]);
        broker.restart();
    }
    broker
}

/// What librdkafka logs when the broker turns a SCRAM login down: Kafka refuses the
/// `SaslAuthenticate` request; Tansu answers the SCRAM exchange with an error.
fn scram_refused() -> &'static str {
    match Flavor::chosen() {
        Flavor::Kafka => "Authentication failed",
        Flavor::Tansu => "SASL SCRAM authentication failed",
    }
}

/// Waits until `server` is ready, then writes `value` and reads it back.
async fn assert_ready_and_round_trips(server: &Server, value: &str) {
    server
        .wait_readiness(StatusCode::OK, Duration::from_secs(10))
        .await;
    server.put_ok("secured", "greeting", value.to_owned()).await;
    let (status, _, body) = server.get("secured", "greeting").await;
    assert_eq!(status, StatusCode::OK, "{}", server.log());
    assert_eq!(body, value.as_bytes());
}

/// Waits until `server` reports the broker down, then checks that readiness is 503 and that
/// a write fails at once with a JSON error.
async fn assert_unready_and_writes_fail_fast(server: &Server, cause: &str) {
    server.wait_broker("down", Duration::from_secs(10)).await;
    let (status, body) = server.get_json("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let started = Instant::now();
    let (status, body) = server.put("secured", "k", "v", "text/plain").await;
    assert!(status.is_server_error(), "{status}: {body}");
    assert_eq!(body["error"]["code"], "broker_unavailable", "{body}");
    // The answer says why, not just that the broker is away.
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(cause), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_round_trips_and_a_second_replica_replays_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new();
    let ca_file = ca.write(dir.path(), "ca.pem");
    let broker = TlsBroker::start(&ca, LOOPBACK).await;

    let writer = Server::start_with(&broker.address, ssl_options(&ca_file));
    assert_ready_and_round_trips(&writer, "hello over TLS").await;

    // A second replica builds its state by replaying the topic, over TLS as well.
    let reader = Server::start_with(&broker.address, ssl_options(&ca_file));
    let (status, _, body) = reader.get("secured", "greeting").await;
    assert_eq!(status, StatusCode::OK, "{}", reader.log());
    assert_eq!(body, b"hello over TLS");
    assert!(broker.handshakes() >= 2, "no TLS handshakes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_with_a_ca_that_did_not_sign_the_broker_stays_unready_and_fails_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stranger = TestCa::new().write(dir.path(), "other-ca.pem");
    let broker = TlsBroker::start(&TestCa::new(), LOOPBACK).await;

    let server = Server::start_with(&broker.address, ssl_options(&stranger));
    assert_unready_and_writes_fail_fast(&server, "certificate verify failed").await;
    server
        .wait_log("certificate verify failed", Duration::from_secs(5))
        .await;
    assert_eq!(broker.handshakes(), 0, "a handshake completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_checks_the_broker_name_unless_verify_hostname_is_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new();
    let ca_file = ca.write(dir.path(), "ca.pem");
    // Signed by the trusted CA, but for another host than the one connected to.
    let broker = TlsBroker::start(&ca, &["kafka.elsewhere.test"]).await;

    let checking = Server::start_with(&broker.address, ssl_options(&ca_file));
    let trusting = Server::start_with(
        &broker.address,
        ssl_options(&ca_file).env("KVSTORE_KAFKA__TLS__VERIFY_HOSTNAME", "false"),
    );
    assert_unready_and_writes_fail_fast(&checking, "certificate verify failed").await;
    checking
        .wait_log("certificate verify failed", Duration::from_secs(5))
        .await;
    assert_ready_and_round_trips(&trusting, "name unchecked").await;
}

#[tokio::test]
async fn sasl_scram_sha_512_with_a_password_file_round_trips() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = scram_broker(dir.path(), "scram512", None);
    let password_file = dir.path().join("kafka-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password written");

    let server = Server::start_with(
        &broker.address(),
        sasl_options("sasl_plaintext", "SCRAM-SHA-512", "kv").env(
            "KVSTORE_KAFKA__SASL__PASSWORD__FILE",
            &password_file.to_string_lossy(),
        ),
    );
    assert_ready_and_round_trips(&server, "hello, authenticated").await;
    assert!(!server.log().contains(PASSWORD), "{}", server.log());

    // The broker does require authentication: a client without it gets nothing.
    let metadata = broker
        .admin()
        .inner()
        .fetch_metadata(None, Duration::from_secs(2));
    assert!(metadata.is_err(), "served without SASL: {metadata:?}");
}

#[tokio::test]
async fn sasl_scram_with_a_wrong_password_stays_unready_and_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = scram_broker(dir.path(), "scram512", None);
    let wrong = "not-the-Pa55word-81d3";

    let server = Server::start_with(
        &broker.address(),
        sasl_options("sasl_plaintext", "SCRAM-SHA-512", "kv")
            .env("KVSTORE_KAFKA__SASL__PASSWORD__ENV", "TEST_KAFKA_PASSWORD")
            .env("TEST_KAFKA_PASSWORD", wrong),
    );
    assert_unready_and_writes_fail_fast(&server, scram_refused()).await;
    server
        .wait_log(scram_refused(), Duration::from_secs(5))
        .await;
    assert!(!server.log().contains(wrong), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_scram_sha_256_with_a_password_from_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new();
    let ca_file = ca.write(dir.path(), "ca.pem");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
    let proxy = listener.local_addr().expect("proxy address").to_string();
    let broker = scram_broker(dir.path(), "scram256", Some(&proxy));
    let config = ca.server_config(LOOPBACK);
    let handshakes = spawn_tls_proxy(listener, config, broker.address());

    let server = Server::start_with(
        &proxy,
        sasl_options("sasl_ssl", "SCRAM-SHA-256", "kv")
            .env("KVSTORE_KAFKA__TLS__CA_FILE", &ca_file.to_string_lossy())
            .env("KVSTORE_KAFKA__SASL__PASSWORD__ENV", "TEST_KAFKA_PASSWORD")
            .env("TEST_KAFKA_PASSWORD", PASSWORD),
    );
    assert_ready_and_round_trips(&server, "hello, privately").await;
    assert!(handshakes.load(Ordering::Relaxed) > 0, "no TLS handshakes");
    assert!(!server.log().contains(PASSWORD), "{}", server.log());
}

#[test]
fn a_password_that_cannot_be_read_stops_the_start_naming_where_it_was_looked_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("kafka-password");
    let output = Server::refused_start(
        "127.0.0.1:9",
        sasl_options("sasl_plaintext", "SCRAM-SHA-512", "kv").env(
            "KVSTORE_KAFKA__SASL__PASSWORD__FILE",
            &missing.to_string_lossy(),
        ),
    );
    assert!(output.contains(&*missing.to_string_lossy()), "{output}");

    let output = Server::refused_start(
        "127.0.0.1:9",
        sasl_options("sasl_plaintext", "SCRAM-SHA-512", "kv").env(
            "KVSTORE_KAFKA__SASL__PASSWORD__ENV",
            "TEST_UNSET_KAFKA_PASSWORD",
        ),
    );
    assert!(output.contains("TEST_UNSET_KAFKA_PASSWORD"), "{output}");
}
