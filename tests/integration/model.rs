//! The model test: random operation sequences through HTTP, compared step by step with a
//! `BTreeMap`; proptest shrinks a failure to a minimal sequence.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Broker, Server};

/// Keys chosen to collide on prefixes and to need escaping.
const KEYS: [&str; 6] = ["a", "a/b", "ab", "a b", "ü/x", "z"];
const PREFIXES: [&str; 4] = ["", "a", "a/", "ü"];
const CONTENT_TYPES: [&str; 3] = ["application/octet-stream", "text/plain", "application/json"];

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: usize,
        value: Vec<u8>,
        content_type: usize,
    },
    Delete {
        key: usize,
    },
    Get {
        key: usize,
    },
    Range {
        prefix: usize,
        limit: usize,
    },
    Batch(Vec<(usize, Option<Vec<u8>>)>),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let value = prop::collection::vec(any::<u8>(), 0..12);
    prop_oneof![
        4 => (key.clone(), value.clone(), 0..CONTENT_TYPES.len())
            .prop_map(|(key, value, content_type)| Op::Put { key, value, content_type }),
        2 => key.clone().prop_map(|key| Op::Delete { key }),
        3 => key.clone().prop_map(|key| Op::Get { key }),
        2 => (0..PREFIXES.len(), 1..4usize).prop_map(|(prefix, limit)| Op::Range { prefix, limit }),
        2 => prop::collection::vec((key, prop::option::weighted(0.7, value)), 1..5).prop_map(Op::Batch),
    ]
}

type Model = BTreeMap<&'static str, (Vec<u8>, &'static str)>;

async fn run(server: &Server, topic: &str, ops: &[Op]) -> Result<(), TestCaseError> {
    // Create the (empty) topic, so reads of absent keys are key_not_found.
    let (status, body) = server
        .batch(topic, &json!({"ops": [{"op": "delete", "key": "init"}]}))
        .await;
    prop_assert_eq!(status, StatusCode::OK, "{}", body);
    let mut model = Model::new();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Put {
                key,
                value,
                content_type,
            } => {
                let (status, body) = server
                    .put(
                        topic,
                        KEYS[*key],
                        value.clone(),
                        CONTENT_TYPES[*content_type],
                    )
                    .await;
                prop_assert_eq!(status, StatusCode::OK, "step {}: {}", step, body);
                model.insert(KEYS[*key], (value.clone(), CONTENT_TYPES[*content_type]));
            }
            Op::Delete { key } => {
                let (status, body) = server.delete(topic, KEYS[*key]).await;
                prop_assert_eq!(status, StatusCode::OK, "step {}: {}", step, body);
                model.remove(KEYS[*key]);
            }
            Op::Get { key } => {
                let (status, content_type, body) = server.get(topic, KEYS[*key]).await;
                match model.get(KEYS[*key]) {
                    Some((value, ct)) => {
                        prop_assert_eq!(status, StatusCode::OK, "step {}", step);
                        prop_assert_eq!(&body, value, "step {}", step);
                        prop_assert_eq!(content_type.as_str(), *ct, "step {}", step);
                    }
                    None => prop_assert_eq!(status, StatusCode::NOT_FOUND, "step {}", step),
                }
            }
            Op::Range { prefix, limit } => {
                let prefix = PREFIXES[*prefix];
                let query = format!("prefix={}", urlencode(prefix));
                let items = server.dump(topic, &query, *limit).await;
                let got: Vec<(String, Embedded)> = items.iter().map(decode_item).collect();
                let expected: Vec<(String, Embedded)> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(k, (v, ct))| (k.to_string(), expected_embedding(v, ct)))
                    .collect();
                prop_assert_eq!(got, expected, "step {}", step);
            }
            Op::Batch(writes) => {
                let ops: Vec<Value> = writes
                    .iter()
                    .map(|(key, value)| match value {
                        Some(value) => json!({"op": "put", "key": KEYS[*key],
                            "value": BASE64.encode(value), "encoding": "base64"}),
                        None => json!({"op": "delete", "key": KEYS[*key]}),
                    })
                    .collect();
                let (status, body) = server.batch(topic, &json!({ "ops": ops })).await;
                prop_assert_eq!(status, StatusCode::OK, "step {}: {}", step, body);
                for (key, value) in writes {
                    match value {
                        Some(value) => {
                            model.insert(KEYS[*key], (value.clone(), "application/octet-stream"))
                        }
                        None => model.remove(KEYS[*key]),
                    };
                }
            }
        }
    }
    Ok(())
}

/// A value as a range result carries it: JSON values compare as JSON (their text is not
/// kept), everything else as its exact bytes.
#[derive(Debug, PartialEq)]
enum Embedded {
    Json(Value),
    Bytes(Vec<u8>),
}

fn decode_item(item: &Value) -> (String, Embedded) {
    let key = item["key"].as_str().unwrap_or_default().to_owned();
    let value = match item["encoding"].as_str() {
        Some("base64") => Embedded::Bytes(
            BASE64
                .decode(item["value"].as_str().unwrap_or_default())
                .unwrap_or_default(),
        ),
        Some("text") => Embedded::Bytes(
            item["value"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec(),
        ),
        _ => Embedded::Json(item["value"].clone()),
    };
    (key, value)
}

fn expected_embedding(bytes: &[u8], content_type: &str) -> Embedded {
    if content_type == "application/json"
        && let Ok(value) = serde_json::from_slice(bytes)
    {
        return Embedded::Json(value);
    }
    Embedded::Bytes(bytes.to_vec())
}

fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[test]
fn http_behaves_like_a_btreemap() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let cases = std::env::var("KVSTORE_MODEL_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let topics = AtomicUsize::new(0);
    let result = runner.run(&prop::collection::vec(op(), 1..30), |ops| {
        let topic = format!("model-{}", topics.fetch_add(1, Ordering::Relaxed));
        runtime.block_on(run(&server, &topic, &ops))
    });
    eprintln!("model test: {} sequences", topics.load(Ordering::Relaxed));
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
