//! Batches of puts and deletes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Broker, Server, ServerOptions};

#[tokio::test]
async fn a_batch_of_1000_mixed_puts_and_deletes() {
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let seed: Vec<Value> = (0..200)
        .map(|i| json!({"op": "put", "key": format!("k{i:04}"), "value": "old"}))
        .collect();
    let (status, body) = server.batch("bat", &json!({ "ops": seed })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let base = body["offset"].as_i64().expect("offset") + 1;

    // Deletes of the 200 seeded keys, then 800 puts, some with each encoding.
    let mut ops: Vec<Value> = (0..200)
        .map(|i| json!({"op": "delete", "key": format!("k{i:04}")}))
        .collect();
    for i in 0..800 {
        let key = format!("n{i:04}");
        ops.push(match i % 4 {
            0 => json!({"op": "put", "key": key, "value": format!("text {i}")}),
            1 => json!({"op": "put", "key": key, "value": {"i": i}}),
            2 => json!({"op": "put", "key": key, "value": "AAEC", "encoding": "base64"}),
            _ => json!({"op": "put", "key": key, "value": "<p/>", "content_type": "text/html"}),
        });
    }
    let (status, body) = server.batch("bat", &json!({ "ops": ops })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 1000);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["offset"].as_i64(), Some(base + i as i64), "in order");
        assert_eq!(result["key"], ops[i]["key"]);
        assert_eq!(result["op"], ops[i]["op"]);
    }
    assert_eq!(body["offset"].as_i64(), Some(base + 999));

    // Applied by the time the batch answered.
    assert_eq!(server.get("bat", "k0000").await.0, StatusCode::NOT_FOUND);
    let (_, ct, value) = server.get("bat", "n0000").await;
    assert_eq!(
        (ct.as_str(), value.as_slice()),
        ("text/plain", &b"text 0"[..])
    );
    let (_, ct, value) = server.get("bat", "n0001").await;
    assert_eq!(
        (ct.as_str(), value.as_slice()),
        ("application/json", &br#"{"i":1}"#[..])
    );
    let (_, ct, value) = server.get("bat", "n0002").await;
    assert_eq!(
        (ct.as_str(), value.as_slice()),
        ("application/octet-stream", &[0u8, 1, 2][..])
    );
    let (_, ct, value) = server.get("bat", "n0003").await;
    assert_eq!((ct.as_str(), value.as_slice()), ("text/html", &b"<p/>"[..]));
    assert_eq!(server.dump("bat", "", 1000).await.len(), 800);
}

#[tokio::test]
async fn an_invalid_operation_rejects_the_whole_batch() {
    let broker = Broker::shared();
    let server = Server::start_with(
        &broker.address(),
        ServerOptions::default().env("KVSTORE_LIMITS__MAX_BATCH_OPS", "3"),
    );
    let first = server.put_ok("inv", "x", "1").await;
    let cases = [
        (
            json!({"ops": [{"op": "put", "key": "a", "value": 1}, {"op": "upsert", "key": "b", "value": 2}]}),
            422,
            "invalid_request",
        ),
        (
            json!({"ops": [{"op": "put", "key": "a"}]}),
            422,
            "invalid_request",
        ),
        (
            json!({"ops": [{"op": "put", "key": "", "value": 1}]}),
            400,
            "invalid_key",
        ),
        (
            json!({"ops": [{"op": "put", "key": "a", "value": "%%", "encoding": "base64"}]}),
            422,
            "invalid_request",
        ),
        (
            json!({"ops": [{"op": "delete", "key": "a", "value": 1}]}),
            422,
            "invalid_request",
        ),
        (json!({"ops": []}), 422, "invalid_request"),
        (
            json!({"ops": [{"op": "delete", "key": "a"}, {"op": "delete", "key": "b"}, {"op": "delete", "key": "c"}, {"op": "delete", "key": "d"}]}),
            413,
            "batch_too_large",
        ),
        (json!({"operations": []}), 422, "invalid_request"),
    ];
    for (body, status, code) in cases {
        let (got, answer) = server.batch("inv", &body).await;
        assert_eq!(got.as_u16(), status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}");
    }
    let response = server
        .http()
        .post(server.url("/v1/inv/batch"))
        .header("content-type", "application/json")
        .body("{\"ops\": [")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = server
        .http()
        .post(server.url("/v1/inv/batch"))
        .body("{\"ops\": []}")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Nothing was produced by any of them.
    assert_eq!(server.put_ok("inv", "y", "2").await, first + 1);
}
