//! What clients other than curl meet: Swagger UI at `/docs`, and the `kvstore` client
//! commands run as processes against a live server.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Broker, Server, free_port};

/// The response's content type, or "" without one.
fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary_and_reads_openapi_json() {
    // The UI needs no broker; nothing listens on this port.
    let server = Server::start(&format!("127.0.0.1:{}", free_port()));

    // /docs redirects to /docs/ (followed), which is the UI's page.
    let response = server
        .http()
        .get(server.url("/docs"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.url().path(), "/docs/");
    assert!(content_type(&response).starts_with("text/html"));
    let page = response.text().await.expect("body");
    assert!(page.contains("swagger-ui-bundle.js"), "{page}");

    // The scripts the page loads are served too (built in, nothing fetched elsewhere).
    for (file, needle) in [
        ("swagger-ui-bundle.js", "SwaggerUIBundle"),
        (
            "swagger-ui-standalone-preset.js",
            "SwaggerUIStandalonePreset",
        ),
        ("swagger-initializer.js", "\"url\": \"/openapi.json\""),
    ] {
        let response = server
            .http()
            .get(server.url(&format!("/docs/{file}")))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert!(
            content_type(&response).contains("javascript"),
            "{file}: {}",
            content_type(&response)
        );
        let script = response.text().await.expect("body");
        assert!(script.contains(needle), "{file} lacks {needle}");
    }

    // The document it shows is the one at /openapi.json.
    let (status, doc) = server.get_json("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["info"]["title"], "kvstore");

    // An unknown file is a JSON 404 like any other unknown route.
    let (status, body) = server.get_json("/docs/nope.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "route_not_found");
}

/// What a `kvstore` client command did.
pub(crate) struct Run {
    pub(crate) code: i32,
    stdout: Vec<u8>,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("UTF-8 output")
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.stdout)
            )
        })
    }

    /// Asserts success and returns stdout as text.
    pub(crate) fn ok(self) -> String {
        assert_eq!(self.code, 0, "failed: {}", self.stderr);
        self.text()
    }
}

/// Runs `kvstore ARGS` with `KVSTORE_URL` pointing at `server`, feeding it `stdin`.
pub(crate) fn kvstore(server: &str, args: &[&str], stdin: &[u8]) -> Run {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvstore"))
        .args(args)
        .env("KVSTORE_URL", server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kvstore runs");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // A command that reads no input may exit before taking it.
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("kvstore finishes");
    writer.join().expect("stdin written");
    Run {
        code: output.status.code().expect("exited"),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn cli_puts_gets_and_deletes_values_from_arguments_files_and_stdin() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let url = server.base();

    let out = kvstore(
        url,
        &[
            "put",
            "users",
            "user/1",
            r#"{"name":"Ada"}"#,
            "-t",
            "application/json",
        ],
        b"",
    );
    assert_eq!(out.ok(), "0\n");
    // GET writes the value as stored, nothing added.
    assert_eq!(
        kvstore(url, &["get", "users", "user/1"], b"").ok(),
        r#"{"name":"Ada"}"#
    );
    let shown = kvstore(url, &["get", "users", "user/1", "--json"], b"").json();
    assert_eq!(
        shown,
        json!({"topic": "users", "key": "user/1", "value": {"name": "Ada"}, "encoding": "json",
               "content_type": "application/json", "offset": 0})
    );

    // Binary from stdin, byte for byte, with the server's default content type.
    let binary = [0u8, 1, 0xff, b'\n', 0xfe];
    assert_eq!(
        kvstore(url, &["put", "users", "bin", "-"], &binary).ok(),
        "1\n"
    );
    let out = kvstore(url, &["get", "users", "bin"], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, binary);
    let (_, content_type, _) = server.get("users", "bin").await;
    assert_eq!(content_type, "application/octet-stream");

    // From a file, with --json.
    let file = std::env::temp_dir().join(format!("kvstore-cli-{}.txt", std::process::id()));
    std::fs::write(&file, "from a file\n").expect("written");
    let path = file.to_str().expect("UTF-8 path");
    let out = kvstore(
        url,
        &[
            "put",
            "users",
            "notes",
            "--file",
            path,
            "-t",
            "text/plain",
            "--json",
        ],
        b"",
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json(),
        json!({"topic": "users", "key": "notes", "offset": 2})
    );
    assert_eq!(server.get("users", "notes").await.2, b"from a file\n");

    // Keys with characters URLs treat specially arrive as they were typed.
    let key = "a/b c?d#e%f/é/../.";
    assert_eq!(kvstore(url, &["put", "users", key, "odd"], b"").ok(), "3\n");
    assert_eq!(server.get("users", key).await.2, b"odd");
    assert_eq!(kvstore(url, &["get", "users", key], b"").ok(), "odd");

    // Delete, then the key is gone: exit 1, nothing on stdout.
    assert_eq!(
        kvstore(url, &["delete", "users", "user/1"], b"").ok(),
        "4\n"
    );
    let out = kvstore(url, &["get", "users", "user/1"], b"");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("key_not_found"), "{}", out.stderr);
}

#[tokio::test]
async fn cli_range_prints_one_line_per_key_across_pages() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let url = server.base();
    server.put("r", "p/1", "plain", "text/plain").await;
    server
        .put("r", "p/2", "tab\there\nnewline\\", "text/plain")
        .await;
    server
        .put("r", "p/3", r#"{"n":[1,2]}"#, "application/json")
        .await;
    server
        .put("r", "p/4", vec![0u8, 0xff], "application/octet-stream")
        .await;
    server.put("r", "p/5\tkey", "x", "text/plain").await;
    server.put("r", "q/1", "other", "text/plain").await;

    let all = "p/1\tplain\n\
               p/2\ttab\\there\\nnewline\\\\\n\
               p/3\t{\"n\":[1,2]}\n\
               p/4\tAP8=\n\
               p/5\\tkey\tx\n";
    // Pages of two keys, followed to the end.
    let out = kvstore(
        url,
        &["range", "r", "--prefix", "p/", "--page-size", "2"],
        b"",
    );
    assert_eq!(out.ok(), all);
    let out = kvstore(url, &["range", "r", "--start", "p/2", "--end", "p/4"], b"");
    assert_eq!(
        out.ok(),
        "p/2\ttab\\there\\nnewline\\\\\np/3\t{\"n\":[1,2]}\n"
    );

    // --limit stops early; with --json the next cursor continues where it stopped.
    let out = kvstore(
        url,
        &[
            "range",
            "r",
            "--prefix",
            "p/",
            "--limit",
            "3",
            "--page-size",
            "2",
            "--json",
        ],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let first = out.json();
    let items = first["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[2],
        json!({"key": "p/3", "value": {"n": [1, 2]}, "encoding": "json",
                                "content_type": "application/json", "offset": 2})
    );
    let cursor = first["next_cursor"].as_str().expect("a cursor");
    let out = kvstore(
        url,
        &["range", "r", "--prefix", "p/", "--cursor", cursor, "--json"],
        b"",
    );
    let rest = out.json();
    let keys: Vec<_> = rest["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["key"].clone())
        .collect();
    assert_eq!(keys, [json!("p/4"), json!("p/5\tkey")]);
    assert!(rest.get("next_cursor").is_none(), "{rest}");

    // Nothing in the range: no output, success.
    assert_eq!(kvstore(url, &["range", "r", "--prefix", "z"], b"").ok(), "");
}

#[tokio::test]
async fn cli_batch_and_topics() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let url = server.base();

    // One operation per line on stdin, as `jq -c` writes them.
    let lines = b"{\"op\":\"put\",\"key\":\"k/1\",\"value\":\"one\"}\n\
                  {\"op\":\"put\",\"key\":\"k/2\",\"value\":{\"two\":2}}\n\
                  {\"op\":\"put\",\"key\":\"k/3\",\"value\":\"/wA=\",\"encoding\":\"base64\"}\n";
    assert_eq!(kvstore(url, &["batch", "b", "-"], lines).ok(), "2\n");
    let out = kvstore(
        url,
        &["batch", "b", r#"[{"op":"delete","key":"k/1"}]"#, "--json"],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json(),
        json!({"offset": 3, "results": [{"op": "delete", "key": "k/1", "offset": 3}]})
    );
    assert_eq!(server.get("b", "k/3").await.2, [0xffu8, 0]);
    assert_eq!(
        kvstore(url, &["range", "b"], b"").ok(),
        "k/2\t{\"two\":2}\nk/3\t/wA=\n"
    );

    // Not a terminal, so no header: name, state, keys, bytes, applied, end, lag.
    let out = kvstore(url, &["topics"], b"").ok();
    let line = out
        .lines()
        .find(|l| l.starts_with("b\t"))
        .expect("topic b listed");
    let fields: Vec<_> = line.split('\t').collect();
    assert_eq!(fields[..3], ["b", "ready", "2"]);
    assert_eq!(fields[4..], ["4", "4", "0"]);
    let topics = kvstore(url, &["topics", "--json"], b"").json();
    assert!(
        topics["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .any(|t| t["name"] == "b" && t["keys"] == 2)
    );
}

#[tokio::test]
async fn cli_exit_codes_say_what_went_wrong() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let url = server.base();
    server.put_ok("e", "k", "v").await;
    let check = |args: &[&str], stdin: &[u8], code: i32, says: &str| {
        let out = kvstore(url, args, stdin);
        assert_eq!(out.code, code, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.text());
    };
    // 1: not found.
    check(&["get", "e", "nope"], b"", 1, "key_not_found");
    check(&["get", "missing", "k"], b"", 1, "topic_not_found");
    check(&["range", "missing"], b"", 1, "topic_not_found");
    check(&["range", "missing", "--json"], b"", 1, "topic_not_found");
    // 2: usage and input.
    check(&["put", "e", "k"], b"", 2, "required");
    check(
        &["put", "e", "k", "v", "--file", "/nonexistent/file"],
        b"",
        2,
        "cannot be used with",
    );
    check(
        &["put", "e", "k", "--file", "/nonexistent/file"],
        b"",
        2,
        "/nonexistent/file",
    );
    check(&["batch", "e", "{\"ops\": ["], b"", 2, "not JSON");
    check(&["get", "e", ".."], b"", 2, "dot segments");
    check(&["get", "e", "k", "--url", "not a url"], b"", 2, "--url");
    check(&["frobnicate"], b"", 2, "unrecognized subcommand");
    // 3: no server, or it failed.
    let nobody = format!("http://127.0.0.1:{}", free_port());
    check(
        &["get", "e", "k", "--url", &nobody],
        b"",
        3,
        "cannot connect",
    );
    // 4: the server refused the request.
    check(
        &["put", "e", &"k".repeat(1025), "v"],
        b"",
        4,
        "key_too_large",
    );
    check(
        &["batch", "e", r#"{"op":"frob","key":"k"}"#],
        b"",
        4,
        "invalid_request",
    );
    check(&["put", "bad topic", "k", "v"], b"", 4, "invalid_topic");
    // Nothing above wrote anything.
    assert_eq!(kvstore(url, &["range", "e"], b"").ok(), "k\tv\n");
}
