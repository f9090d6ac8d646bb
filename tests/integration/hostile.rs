//! Hostile input: each request gets the expected 4xx, and afterwards the server is healthy and
//! the topic unchanged.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::{Broker, Server, ServerOptions, raw_request};

/// A request and what it must get: the status, and the error code when the answer is ours
/// (protocol errors are answered by the HTTP layer without a JSON body).
struct Case {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    code: Option<&'static str>,
}

fn req(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "PUT" || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn case(name: &'static str, request: Vec<u8>, status: u16, code: Option<&'static str>) -> Case {
    Case {
        name,
        request,
        status,
        code,
    }
}

fn cases() -> Vec<Case> {
    const JSON: (&str, &str) = ("Content-Type", "application/json");
    let key_at_limit = "k".repeat(1024);
    let key_over_limit = "k".repeat(1025);
    let topic_249 = "t".repeat(249);
    let topic_250 = "t".repeat(250);
    let deep = format!(
        "{{\"ops\":[{{\"op\":\"put\",\"key\":\"a\",\"value\":{}}}]}}",
        "[".repeat(50_000)
    );
    let many_ops = format!(
        "{{\"ops\":[{}]}}",
        vec![r#"{"op":"delete","key":"x"}"#; 101].join(",")
    );
    let big_batch = format!(
        "{{\"ops\":[{{\"op\":\"put\",\"key\":\"x\",\"value\":\"{}\"}}]}}",
        "v".repeat(70_000)
    );
    let mut too_many_headers =
        String::from("GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for i in 0..200 {
        too_many_headers.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    too_many_headers.push_str("\r\n");
    let mut chunked_over = b"PUT /v1/hostile/keys/chunked HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        chunked_over.extend_from_slice(b"400\r\n");
        chunked_over.extend_from_slice(&[b'x'; 0x400]);
        chunked_over.extend_from_slice(b"\r\n");
    }
    chunked_over.extend_from_slice(b"0\r\n\r\n");
    let mut lying_short = b"PUT /v1/hostile/keys/lying HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 100\r\n\r\n".to_vec();
    lying_short.extend_from_slice(b"only ten b");

    vec![
        // Keys
        case("key with invalid percent-encoding", req("GET", "/v1/hostile/keys/a%zzb", &[], b""), 400, Some("invalid_key")),
        case("key ending in a lone %", req("GET", "/v1/hostile/keys/a%", &[], b""), 400, Some("invalid_key")),
        case("key with truncated UTF-8", req("GET", "/v1/hostile/keys/%C3", &[], b""), 400, Some("invalid_key")),
        case("key that is not UTF-8", req("GET", "/v1/hostile/keys/%FF%FE", &[], b""), 400, Some("invalid_key")),
        case("PUT key that is not UTF-8", req("PUT", "/v1/hostile/keys/%FF", &[], b"v"), 400, Some("invalid_key")),
        case("empty key", req("GET", "/v1/hostile/keys/", &[], b""), 400, Some("invalid_key")),
        case("empty key on PUT", req("PUT", "/v1/hostile/keys/", &[], b"v"), 400, Some("invalid_key")),
        case("key of exactly the limit", req("GET", &format!("/v1/hostile/keys/{key_at_limit}"), &[], b""), 404, Some("key_not_found")),
        case("key one byte over the limit", req("GET", &format!("/v1/hostile/keys/{key_over_limit}"), &[], b""), 413, Some("key_too_large")),
        case("PUT key one byte over the limit", req("PUT", &format!("/v1/hostile/keys/{key_over_limit}"), &[], b"v"), 413, Some("key_too_large")),
        case("key with a dot-dot segment is just a key", req("GET", "/v1/hostile/keys/../x", &[], b""), 404, Some("key_not_found")),
        case("key with a NUL character", req("GET", "/v1/hostile/keys/%00", &[], b""), 404, Some("key_not_found")),
        // Topics
        case("topic ..", req("GET", "/v1/../keys/k", &[], b""), 400, Some("invalid_topic")),
        case("topic .", req("GET", "/v1/./keys/k", &[], b""), 400, Some("invalid_topic")),
        case("topic %2E%2E", req("PUT", "/v1/%2E%2E/keys/k", &[], b"v"), 400, Some("invalid_topic")),
        case("topic with an escaped control character", req("PUT", "/v1/a%01b/keys/k", &[], b"v"), 400, Some("invalid_topic")),
        case("topic with a raw control character", req("GET", "/v1/a\x01b/keys/k", &[], b""), 400, None),
        case("topic with a space", req("PUT", "/v1/a%20b/keys/k", &[], b"v"), 400, Some("invalid_topic")),
        case("topic with non-ASCII", req("PUT", "/v1/caf%C3%A9/keys/k", &[], b"v"), 400, Some("invalid_topic")),
        case("topic of 249 characters (valid, absent)", req("GET", &format!("/v1/{topic_249}/keys/k"), &[], b""), 404, Some("topic_not_found")),
        case("topic of 250 characters", req("PUT", &format!("/v1/{topic_250}/keys/k"), &[], b"v"), 400, Some("invalid_topic")),
        case("Kafka-internal topic (topics.deny)", req("GET", "/v1/__consumer_offsets/keys/k", &[], b""), 403, Some("topic_denied")),
        case("write to an internal-looking topic", req("PUT", "/v1/__absent/keys/k", &[], b"v"), 403, Some("topic_denied")),
        // Bodies
        case("value over the limit", req("PUT", "/v1/hostile/keys/big", &[], &[b'x'; 4097]), 413, Some("value_too_large")),
        case("Content-Length over the limit, body never sent", b"PUT /v1/hostile/keys/big HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 100000000\r\n\r\n".to_vec(), 413, Some("value_too_large")),
        case("chunked body over the limit", chunked_over, 413, Some("value_too_large")),
        case("Content-Length larger than the body sent", lying_short, 408, Some("request_timeout")),
        case("Content-Type that is not ASCII", req("PUT", "/v1/hostile/keys/ct", &[("Content-Type", "text/\u{e9}")], b"v"), 400, Some("invalid_header")),
        case("Content-Type of 300 characters", req("PUT", "/v1/hostile/keys/ct", &[("Content-Type", &format!("text/{}", "x".repeat(300)))], b"v"), 400, Some("invalid_header")),
        // Batches
        case("malformed batch JSON", req("POST", "/v1/hostile/batch", &[JSON], b"{\"ops\": [}"), 400, Some("malformed_json")),
        case("batch with trailing garbage", req("POST", "/v1/hostile/batch", &[JSON], b"{\"ops\": []} x"), 400, Some("malformed_json")),
        case("empty batch body", req("POST", "/v1/hostile/batch", &[JSON], b""), 400, Some("malformed_json")),
        case("deeply nested JSON", req("POST", "/v1/hostile/batch", &[JSON], deep.as_bytes()), 400, Some("malformed_json")),
        case("unknown batch op", req("POST", "/v1/hostile/batch", &[JSON], br#"{"ops":[{"op":"upsert","key":"a","value":1}]}"#), 422, Some("invalid_request")),
        case("batch op with wrong types", req("POST", "/v1/hostile/batch", &[JSON], br#"{"ops":[{"op":"put","key":5,"value":1}]}"#), 422, Some("invalid_request")),
        case("batch op with an unknown field", req("POST", "/v1/hostile/batch", &[JSON], br#"{"ops":[{"op":"put","key":"a","value":1,"ttl":3}]}"#), 422, Some("invalid_request")),
        case("batch that is an array", req("POST", "/v1/hostile/batch", &[JSON], b"[]"), 422, Some("invalid_request")),
        case("batch put without a value", req("POST", "/v1/hostile/batch", &[JSON], br#"{"ops":[{"op":"put","key":"a"}]}"#), 422, Some("invalid_request")),
        case("batch with invalid base64", req("POST", "/v1/hostile/batch", &[JSON], br#"{"ops":[{"op":"put","key":"a","value":"!!","encoding":"base64"}]}"#), 422, Some("invalid_request")),
        case("batch with a key over the limit", req("POST", "/v1/hostile/batch", &[JSON], format!(r#"{{"ops":[{{"op":"delete","key":"{key_over_limit}"}}]}}"#).as_bytes()), 413, Some("key_too_large")),
        case("batch valid then invalid op", req("POST", "/v1/hostile/batch", &[JSON], br#"{"ops":[{"op":"put","key":"a","value":1},{"op":"delete","key":""}]}"#), 400, Some("invalid_key")),
        case("batch over the operation limit", req("POST", "/v1/hostile/batch", &[JSON], many_ops.as_bytes()), 413, Some("batch_too_large")),
        case("batch body over the byte limit", req("POST", "/v1/hostile/batch", &[JSON], big_batch.as_bytes()), 413, Some("body_too_large")),
        case("batch without a content type", req("POST", "/v1/hostile/batch", &[], br#"{"ops":[]}"#), 415, Some("unsupported_media_type")),
        case("batch as text/plain", req("POST", "/v1/hostile/batch", &[("Content-Type", "text/plain")], br#"{"ops":[]}"#), 415, Some("unsupported_media_type")),
        // Ranges
        case("range with start after end is empty", req("GET", "/v1/hostile/range?start=b&end=a", &[], b""), 200, None),
        case("range with a negative limit", req("GET", "/v1/hostile/range?limit=-5", &[], b""), 400, Some("invalid_query")),
        case("range with limit 0", req("GET", "/v1/hostile/range?limit=0", &[], b""), 400, Some("invalid_query")),
        case("range with a limit past u64", req("GET", "/v1/hostile/range?limit=99999999999999999999999", &[], b""), 400, Some("invalid_query")),
        case("range with a non-numeric limit", req("GET", "/v1/hostile/range?limit=ten", &[], b""), 400, Some("invalid_query")),
        case("range with a fractional limit", req("GET", "/v1/hostile/range?limit=1.5", &[], b""), 400, Some("invalid_query")),
        case("range with a huge limit is capped", req("GET", "/v1/hostile/range?limit=1000000", &[], b""), 200, None),
        case("range with a bad cursor", req("GET", "/v1/hostile/range?cursor=%%%", &[], b""), 400, Some("invalid_query")),
        case("range with an unknown parameter", req("GET", "/v1/hostile/range?frm=a", &[], b""), 400, Some("invalid_query")),
        // Methods and routes
        case("POST on a key", req("POST", "/v1/hostile/keys/k", &[], b"v"), 405, Some("method_not_allowed")),
        case("PUT on range", req("PUT", "/v1/hostile/range", &[], b"v"), 405, Some("method_not_allowed")),
        case("GET on batch", req("GET", "/v1/hostile/batch", &[], b""), 405, Some("method_not_allowed")),
        case("DELETE on topics", req("DELETE", "/v1/topics", &[], b""), 405, Some("method_not_allowed")),
        case("unknown route", req("GET", "/v2/hostile/keys/k", &[], b""), 404, Some("route_not_found")),
        // Protocol
        case("garbage request line", b"HELLO\r\n\r\n".to_vec(), 400, None),
        case("too many headers", too_many_headers.into_bytes(), 431, None),
    ]
}

#[tokio::test]
async fn hostile_requests_get_4xx_and_change_nothing() {
    let broker = Broker::shared();
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default()
            .env("KVSTORE_LIMITS__MAX_VALUE_BYTES", "4096")
            .env("KVSTORE_LIMITS__MAX_BATCH_OPS", "100")
            .env("KVSTORE_LIMITS__MAX_BATCH_BYTES", "65536")
            .env("KVSTORE_HTTP__HEADER_READ_TIMEOUT", "1s")
            .env("KVSTORE_HTTP__BODY_READ_TIMEOUT", "1s"),
    );
    for i in 0..20 {
        server
            .put_ok("hostile", &format!("seed{i}"), format!("v{i}"))
            .await;
    }
    let before = server.dump("hostile", "", 100).await;
    let next_before =
        server.topic_info("hostile").await.expect("attached")["applied_offset"].clone();

    let cases = cases();
    assert!(cases.len() >= 40, "the table has {} cases", cases.len());
    let base = server.base().to_owned();
    let mut failures = Vec::new();
    for case in &cases {
        let request = case.request.clone();
        let base = base.clone();
        let response = tokio::task::spawn_blocking(move || {
            raw_request(&base, &request, Duration::from_secs(20))
        })
        .await
        .expect("request ran");
        let code_ok = case
            .code
            .is_none_or(|code| response.body.contains(&format!("\"code\":\"{code}\"")));
        if response.status != case.status || !code_ok {
            failures.push(format!(
                "{}: expected {} {:?}, got {} {}",
                case.name,
                case.status,
                case.code,
                response.status,
                response.body.chars().take(200).collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Slow headers: a client trickling its headers is cut off at the header deadline.
    let started = Instant::now();
    let base_slow = base.clone();
    let closed_after = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect(base_slow.trim_start_matches("http://")).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n");
        let started = Instant::now();
        let mut buffer = [0u8; 1024];
        while started.elapsed() < Duration::from_secs(10) {
            if stream.write_all(b"X-Slow: 1\r\n").is_err() {
                return started.elapsed();
            }
            match stream.read(&mut buffer) {
                Ok(0) => return started.elapsed(),
                Ok(_) => return started.elapsed(),
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        started.elapsed()
    })
    .await
    .expect("slow client ran");
    assert!(
        closed_after < Duration::from_secs(3),
        "slow client kept for {closed_after:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Healthy, and nothing changed.
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    server
        .wait_readiness(StatusCode::OK, Duration::from_secs(10))
        .await;
    let after = server.dump("hostile", "", 100).await;
    assert_eq!(before, after, "the topic's state is unchanged");
    let next_after =
        server.topic_info("hostile").await.expect("attached")["applied_offset"].clone();
    assert_eq!(next_before, next_after, "nothing was produced");
    assert!(!broker.has_topic(&"t".repeat(249)));
}
