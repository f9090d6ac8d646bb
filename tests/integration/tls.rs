//! HTTPS on the listener, with certificates made here by rcgen: round trips, plain HTTP on
//! the TLS port, reloading on SIGHUP, stalled handshakes and slow headers, a certificate that
//! cannot be used; and the `kvstore` client and bench over HTTPS with `--ca-file`, and their
//! bearer token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Broker, Server, ServerOptions, client_trusting, free_port};

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`, followed by this CA's own (a
    /// chain, as a certificate file may hold), and its key.
    fn issue(&self) -> (String, String) {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (format!("{}{}", cert.pem(), self.pem), key.serialize_pem())
    }
}

/// The files of one server: its certificate and key, and the CA that signed them.
struct TlsFiles {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl TlsFiles {
    fn new(ca: &Ca) -> TlsFiles {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            ca: dir.path().join("ca.pem"),
            _dir: dir,
        };
        files.install(ca);
        files
    }

    /// Replaces the certificate and key with new ones from `ca`, and the CA file with `ca`'s.
    fn install(&self, ca: &Ca) {
        let (cert, key) = ca.issue();
        std::fs::write(&self.cert, cert).expect("cert written");
        std::fs::write(&self.key, key).expect("key written");
        std::fs::write(&self.ca, &ca.pem).expect("CA written");
    }

    /// A copy of the CA file that stays when the files are replaced.
    fn keep_ca(&self, name: &str) -> PathBuf {
        let kept = self.ca.with_file_name(name);
        std::fs::copy(&self.ca, &kept).expect("CA copied");
        kept
    }

    fn options(&self) -> ServerOptions {
        ServerOptions::default().https(&self.cert, &self.key, &self.ca)
    }
}

fn address(server: &Server) -> String {
    server.base().trim_start_matches("https://").to_owned()
}

#[tokio::test]
async fn put_then_get_over_https_and_alpn_offers_h2() {
    let broker = Broker::shared();
    let files = TlsFiles::new(&Ca::new("round trip CA"));
    let server = Server::start_with(&broker.address(), files.options());
    assert!(server.base().starts_with("https://127.0.0.1:"));
    wait_for_log(&server, r#""scheme":"https""#).await;

    let offset = server.put_ok("tls", "greeting", "hello over TLS").await;
    let (status, _, body) = server.get("tls", "greeting").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"hello over TLS");

    // ALPN settles the protocol: HTTP/2 where the client offers it, else HTTP/1.1.
    let response = server
        .http()
        .get(server.key_url("tls", "greeting"))
        .send()
        .await
        .expect("GET sent");
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(
        response.headers()["x-kv-offset"],
        offset.to_string().as_str()
    );
    let alpn = tls_handshake(&address(&server), &files.ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(alpn.1.as_deref(), Some(&b"h2"[..]));
}

/// Completes a handshake trusting `ca_file`, offering `alpn`; the stream and the protocol
/// the server chose.
async fn tls_handshake(
    address: &str,
    ca_file: &Path,
    alpn: &[&[u8]],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Option<Vec<u8>>,
) {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca_file).expect("CA file") {
        roots.add(cert.expect("CA certificate")).expect("added");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let chosen = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    (stream, chosen)
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_no_data() {
    // No broker needed: nothing here gets past the handshake.
    let files = TlsFiles::new(&Ca::new("plain CA"));
    let server = Server::start_with(&format!("127.0.0.1:{}", free_port()), files.options());

    let mut stream = TcpStream::connect(address(&server)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("sent");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    // rustls answers bytes that are no TLS record with a fatal alert record (content type
    // 21) and closes: no HTTP status line, no body.
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    assert_eq!(answer.first(), Some(&21), "{answer:?}");
    assert!(answer.len() < 16, "{answer:?}");

    // What an HTTP client makes of it: an error, not a response.
    let url = server.base().replace("https://", "http://");
    let error = reqwest::get(format!("{url}/healthz"))
        .await
        .expect_err("no HTTP answer");
    assert!(error.status().is_none(), "{error:?}");
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_a_bad_one_is_not_taken() {
    let files = TlsFiles::new(&Ca::new("CA A"));
    let ca_a = files.keep_ca("ca-a.pem");
    let server = Server::start_with(&format!("127.0.0.1:{}", free_port()), files.options());
    let healthz = server.url("/healthz");
    let status = |client: reqwest::Client| {
        let url = healthz.clone();
        async move { client.get(url).send().await.map(|r| r.status()) }
    };
    assert_eq!(
        status(client_trusting(&ca_a)).await.expect("A trusted"),
        StatusCode::OK
    );

    files.install(&Ca::new("CA B"));
    let ca_b = files.keep_ca("ca-b.pem");
    assert!(server.signal_hangup());
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(client_trusting(&ca_b)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "not reloaded; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error = status(client_trusting(&ca_a))
        .await
        .expect_err("A no longer");
    assert!(error.is_connect(), "{error:?}");
    wait_for_log(&server, "reloaded the TLS certificate").await;

    // A broken file is refused and logged; the certificate in use stays.
    std::fs::write(&files.key, "-----BEGIN PRIVATE KEY-----\nbroken\n").expect("written");
    assert!(server.signal_hangup());
    wait_for_log(&server, "cannot reload the TLS certificate").await;
    assert!(server.log().contains("tls.key"), "{}", server.log());
    assert_eq!(
        status(client_trusting(&ca_b)).await.expect("B still"),
        StatusCode::OK
    );
}

/// Waits until the server has logged `message`.
async fn wait_for_log(server: &Server, message: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains(message) {
        assert!(
            Instant::now() < deadline,
            "{message:?} not logged:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn stalled_handshakes_and_slow_headers_are_cut_off_at_the_header_timeout() {
    let files = TlsFiles::new(&Ca::new("slow CA"));
    let options = files
        .options()
        .env("KVSTORE_HTTP__HEADER_READ_TIMEOUT", "1s");
    let server = Server::start_with(&format!("127.0.0.1:{}", free_port()), options);
    let address = address(&server);

    // Connects and never says a word: no handshake ever starts.
    let silent = address.clone();
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(silent).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let started = Instant::now();
        let mut buffer = [0u8; 64];
        let read = stream.read(&mut buffer);
        (started.elapsed(), read.ok())
    })
    .await
    .expect("silent client ran");
    assert_eq!(closed_after.1, Some(0), "closed without a word");
    assert!(
        closed_after.0 >= Duration::from_millis(900) && closed_after.0 < Duration::from_secs(3),
        "silent client kept for {:?}",
        closed_after.0
    );

    // Completes the handshake, then trickles its headers.
    let (mut stream, _) = tls_handshake(&address, &files.ca, &[b"http/1.1"]).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("sent");
    let started = Instant::now();
    let mut buffer = [0u8; 256];
    let closed_after = loop {
        assert!(started.elapsed() < Duration::from_secs(10), "never closed");
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break started.elapsed();
        }
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer));
        // An answer, an end or an error: the server has given up on the request.
        if read.await.is_ok() {
            break started.elapsed();
        }
    };
    assert!(
        closed_after < Duration::from_secs(3),
        "slow client kept for {closed_after:?}"
    );

    // Others are served all along.
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

/// The output of a server that must refuse to start with `env`; no broker is needed for that.
fn refused_start(env: &[(&str, &Path)]) -> String {
    let mut options = ServerOptions::default();
    for (key, value) in env {
        options = options.env(key, &value.to_string_lossy());
    }
    Server::refused_start("127.0.0.1:9", options)
}

#[test]
fn a_certificate_that_cannot_be_used_stops_the_service() {
    let files = TlsFiles::new(&Ca::new("startup CA"));
    let missing = files.cert.with_file_name("missing.crt");
    let other_key = files.key.with_file_name("other.key");
    let key = KeyPair::generate().expect("key").serialize_pem();
    std::fs::write(&other_key, key).expect("written");
    // The certificate file, the key file, the message, and the file it names.
    for (cert, key, expected, named) in [
        (
            &missing,
            &files.key,
            "cannot read TLS certificate file",
            &missing,
        ),
        (
            &files.key,
            &files.key,
            "holds no PEM certificate",
            &files.key,
        ),
        (
            &files.cert,
            &other_key,
            "does not fit certificate",
            &other_key,
        ),
    ] {
        let stderr = refused_start(&[
            ("KVSTORE_HTTP__TLS__CERT_FILE", cert),
            ("KVSTORE_HTTP__TLS__KEY_FILE", key),
        ]);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(stderr.contains(&*named.to_string_lossy()), "{stderr}");
    }

    // One file without the other is a configuration error naming the missing key.
    let stderr = refused_start(&[("KVSTORE_HTTP__TLS__CERT_FILE", &files.cert)]);
    assert!(stderr.contains("http.tls.key_file"), "{stderr}");
}

/// What a `kvstore` command did: exit status, stdout, stderr.
fn kvstore(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kvstore"));
    command
        .args(args)
        .env_remove("KVSTORE_URL")
        .env_remove("KVSTORE_CA_FILE")
        .env_remove("KVSTORE_TOKEN")
        .env_remove("KVSTORE_TOKEN_FILE")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("kvstore ran");
    (
        output.status.code().expect("exited"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_and_bench_speak_https_with_a_ca_file() {
    let broker = Broker::shared();
    let files = TlsFiles::new(&Ca::new("CLI CA"));
    let server = Server::start_with(&broker.address(), files.options());
    let url = server.base().to_owned();
    let ca = files.ca.to_string_lossy().into_owned();

    let (code, out, err) = kvstore(
        &["put", "cli", "k", "v", "--url", &url, "--ca-file", &ca],
        &[],
    );
    assert_eq!((code, out.as_str()), (0, "0\n"), "{err}");
    let (code, out, err) = kvstore(
        &["get", "cli", "k"],
        &[("KVSTORE_URL", &url), ("KVSTORE_CA_FILE", &ca)],
    );
    assert_eq!((code, out.as_str()), (0, "v"), "{err}");

    // Without the CA: the built-in roots do not know it.
    let (code, out, err) = kvstore(&["get", "cli", "k", "--url", &url], &[]);
    assert_eq!(code, 5, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert!(err.contains("--ca-file"), "{err}");

    let (code, out, err) = kvstore(
        &[
            "bench",
            "--url",
            &url,
            "--ca-file",
            &ca,
            "--scenario",
            "healthz",
            "--requests",
            "5",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report["requests"], 4, "{report}");
}

#[tokio::test]
async fn cli_and_bench_send_the_bearer_token_and_a_refusal_exits_5() {
    let broker = Broker::shared();
    let full = "cli-full-token-0123456789abcdef";
    let reader = "cli-reader-token-0123456789abcdef";
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default()
            .env("KVSTORE_AUTH__ENABLED", "true")
            .env(
                "KVSTORE_AUTH__TOKENS",
                r#"[{ name = "full", secret = { env = "TEST_FULL" }, scopes = ["read:*", "write:*", "admin"] }, { name = "reader", secret = { env = "TEST_READER" }, scopes = ["read:*"] }]"#,
            )
            .env("TEST_FULL", full)
            .env("TEST_READER", reader),
    );
    let url = server.base().to_owned();
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{reader}\n")).expect("written");
    let token_file = token_file.to_string_lossy().into_owned();

    let (code, out, err) = kvstore(
        &["put", "t", "k", "v", "--url", &url],
        &[("KVSTORE_TOKEN", full)],
    );
    assert_eq!((code, out.as_str()), (0, "0\n"), "{err}");

    // No token: the server's 401 message, exit 5.
    let (code, out, err) = kvstore(&["get", "t", "k", "--url", &url], &[]);
    assert_eq!(code, 5, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("needs a bearer token"), "{err}");
    assert!(err.contains("(unauthorized, HTTP 401)"), "{err}");

    // A token file wins over the variable: the reader may read but not list topics.
    let (code, out, err) = kvstore(
        &["get", "t", "k", "--url", &url, "--token-file", &token_file],
        &[("KVSTORE_TOKEN", full)],
    );
    assert_eq!((code, out.as_str()), (0, "v"), "{err}");
    let (code, _, err) = kvstore(
        &["topics", "--url", &url, "--token-file", &token_file],
        &[("KVSTORE_TOKEN", full)],
    );
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("token \"reader\" lacks the admin scope"),
        "{err}"
    );

    // bench sends it too: every write accepted with the full token, none with the reader's.
    let bench = |token_file: &str| {
        kvstore(
            &[
                "bench",
                "--url",
                &url,
                "--scenario",
                "put",
                "--topic",
                "b",
                "--requests",
                "5",
                "--json",
            ],
            &[("KVSTORE_TOKEN_FILE", token_file)],
        )
    };
    let (code, _, err) = bench(&token_file);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no request succeeded"), "{err}");
    std::fs::write(dir.path().join("full"), full).expect("written");
    let (code, out, err) = bench(&dir.path().join("full").to_string_lossy());
    assert_eq!(code, 0, "{err}");
    let accepted: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert!(accepted["requests"].as_u64() > Some(0), "{accepted}");
    assert_eq!(accepted["errors"], serde_json::json!({}), "{accepted}");

    // A token file that cannot be read is a usage error.
    let (code, _, err) = kvstore(
        &[
            "get",
            "t",
            "k",
            "--url",
            &url,
            "--token-file",
            "/nonexistent/token",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/token"), "{err}");
}
