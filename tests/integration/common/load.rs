//! Load under faults: writers of unique keys whose every answer is kept, and the check that
//! every acknowledged write survived.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::Server;

/// What one write under load got.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The key written (each write its own).
    pub key: String,
    /// The value written.
    pub value: String,
    /// The HTTP status, or `None` if the request failed at the connection.
    pub status: Option<StatusCode>,
    /// The offset the answer gave.
    pub offset: Option<i64>,
    /// When the request was sent.
    pub invoked: Instant,
    /// When its answer (or failure) came.
    pub completed: Instant,
}

impl Outcome {
    /// Whether the write was acknowledged (2xx).
    pub fn acknowledged(&self) -> bool {
        self.status.is_some_and(|s| s.is_success())
    }
}

/// `writers` clients putting unique keys (`{prefix}{writer}-{n}`) one after another, as fast
/// as they can, until `stop`.
pub async fn write_until(
    server: &Arc<Server>,
    topic: &str,
    prefix: &str,
    writers: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Outcome> {
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let server = server.clone();
        let stop = stop.clone();
        let (topic, prefix) = (topic.to_owned(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("{prefix}{writer}-{n}");
                let value = format!("value of {key}");
                n += 1;
                let invoked = Instant::now();
                let sent = server
                    .http()
                    .put(server.key_url(&topic, &key))
                    .body(value.clone())
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                let (status, offset) = match sent {
                    Ok(response) => {
                        let status = response.status();
                        let body: serde_json::Value =
                            response.json().await.unwrap_or(serde_json::Value::Null);
                        (Some(status), body["offset"].as_i64())
                    }
                    Err(_) => (None, None),
                };
                let completed = Instant::now();
                if !status.is_some_and(|s| s.is_success()) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                outcomes.push(Outcome {
                    key,
                    value,
                    status,
                    offset,
                    invoked,
                    completed,
                });
            }
            outcomes
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("writer finished"));
    }
    all
}

/// Every write got an answer, and each is a success or says that the write failed or may not
/// have happened (503, 504): under faults, no other answer is right.
pub fn assert_answers_are_successes_or_unavailable(outcomes: &[Outcome]) {
    for outcome in outcomes {
        let status = outcome.status.expect("the server kept answering");
        assert!(
            status.is_success()
                || status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::GATEWAY_TIMEOUT,
            "{}: {status}",
            outcome.key
        );
    }
}

/// Every acknowledged write is readable on `server` with its value and offset.
pub async fn assert_acknowledged_present(server: &Server, topic: &str, outcomes: &[Outcome]) {
    let acknowledged: Vec<&Outcome> = outcomes.iter().filter(|o| o.acknowledged()).collect();
    assert!(!acknowledged.is_empty(), "some writes succeeded");
    let items = server.dump(topic, "", 1000).await;
    let stored: std::collections::HashMap<&str, (&str, i64)> = items
        .iter()
        .map(|i| {
            (
                i["key"].as_str().expect("key"),
                (
                    i["value"].as_str().expect("text value"),
                    i["offset"].as_i64().expect("offset"),
                ),
            )
        })
        .collect();
    for write in acknowledged {
        let (value, offset) = stored
            .get(write.key.as_str())
            .unwrap_or_else(|| panic!("acknowledged write {} is lost", write.key));
        assert_eq!(*value, write.value, "{}", write.key);
        assert_eq!(Some(*offset), write.offset, "{}", write.key);
    }
}
