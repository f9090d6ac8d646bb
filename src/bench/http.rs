//! The HTTP targets: how each scenario's request is made against kvstore's API or etcd's v3
//! JSON gateway, the concurrent clients that send them, and prefilling the key space.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::json;

use super::args::{ETCD_MAX_TXN_OPS, Limit, Plan, Scenario, Target, key_name, value_bytes};
use super::report::{Progress, Recorder, Report, stop_ticker};
use super::{BenchError, Budget, SplitMix64};

/// Operations per batch when prefilling kvstore (etcd takes at most [`ETCD_MAX_TXN_OPS`]).
const KVSTORE_PREFILL_BATCH: u64 = 1000;

/// Most clients prefilling at once; more only queue up behind the broker.
const PREFILL_CLIENTS: usize = 8;

/// How long one request may take before it counts as a `timeout` error. Longer than
/// kvstore's default write timeout, so the service's own 504 is seen first.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a `--while-replaying` topic may take to replay before the run fails.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(600);

/// How often a `--while-replaying` run asks whether the topic is ready.
const REPLAY_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// One request of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Write key number `.0`.
    Put(u64),
    /// Read key number `.0`.
    Get(u64),
    /// Read key number `.0`, reflecting every write acknowledged before.
    StrongGet(u64),
    /// Compare-and-set key number `.0`: read it, then write it if unchanged.
    Cas(u64),
    /// Read a page of keys starting at key number `.0`.
    Range(u64),
    /// Write `count` keys from key number `first` on, wrapping around the key space.
    Batch {
        /// The first key's number.
        first: u64,
        /// How many keys.
        count: u64,
    },
    /// The health endpoint.
    Healthz,
}

impl Op {
    /// The key of a put or get (the first key of a batch or page).
    pub fn key(self) -> u64 {
        match self {
            Op::Put(key) | Op::Get(key) | Op::StrongGet(key) | Op::Cas(key) | Op::Range(key) => key,
            Op::Batch { first, .. } => first,
            Op::Healthz => 0,
        }
    }

    /// Operations the request carries.
    fn operations(self) -> u64 {
        match self {
            Op::Batch { count, .. } => count,
            _ => 1,
        }
    }
}

/// Picks each client's next request: writes walk the key space in order through a shared
/// cursor (so `--requests` × `--batch-size` = `--keys` writes every key once), reads pick keys
/// at random.
#[derive(Debug)]
pub struct Workload {
    scenario: Scenario,
    keys: u64,
    batch_size: u64,
    read_ratio: f64,
    cursor: AtomicU64,
}

impl Workload {
    /// The workload of `plan`.
    pub fn new(plan: &Plan) -> Workload {
        Workload {
            scenario: plan.scenario,
            keys: plan.keys,
            batch_size: plan.batch_size as u64,
            read_ratio: plan.read_ratio,
            cursor: AtomicU64::new(0),
        }
    }

    /// The next request, using `rng` for random choices.
    pub fn next(&self, rng: &mut SplitMix64) -> Op {
        match self.scenario {
            Scenario::Put | Scenario::Watch => Op::Put(self.next_written(1)),
            Scenario::Get => Op::Get(rng.below(self.keys)),
            Scenario::StrongGet => Op::StrongGet(rng.below(self.keys)),
            Scenario::Cas => Op::Cas(rng.below(self.keys)),
            Scenario::Mixed if rng.unit() < self.read_ratio => Op::Get(rng.below(self.keys)),
            Scenario::Mixed => Op::Put(self.next_written(1)),
            Scenario::Range => Op::Range(rng.below(self.keys)),
            Scenario::Batch => Op::Batch {
                first: self.next_written(self.batch_size),
                count: self.batch_size,
            },
            Scenario::Healthz | Scenario::Produce | Scenario::Roundtrip | Scenario::Consume => {
                Op::Healthz
            }
        }
    }

    fn next_written(&self, count: u64) -> u64 {
        self.cursor.fetch_add(count, Ordering::Relaxed) % self.keys
    }
}

/// How a request went: the operations it carried, or the kind of error.
type Outcome = Result<u64, String>;

/// An HTTP API to send requests to, with a connection pool sized to the clients.
#[derive(Debug)]
pub struct HttpTarget {
    client: reqwest::Client,
    target: Target,
    url: String,
    topic: String,
    keys: u64,
    batch_size: usize,
    /// The value every write stores.
    value: Bytes,
    /// The same value in base64, for etcd.
    value_base64: String,
}

impl HttpTarget {
    /// A target for `plan`'s URL and API.
    pub fn new(plan: &Plan) -> Result<HttpTarget, BenchError> {
        let builder = reqwest::Client::builder()
            .pool_max_idle_per_host(plan.concurrency.max(PREFILL_CLIENTS))
            .tcp_nodelay(true)
            .timeout(REQUEST_TIMEOUT);
        let client = plan
            .security
            .apply(builder)
            .map_err(BenchError::InvalidArgs)?
            .build()
            .map_err(|e| BenchError::Failed(format!("building the HTTP client: {e}")))?;
        let value = Bytes::from(value_bytes(plan.value_size));
        Ok(HttpTarget {
            client,
            target: plan.target,
            url: plan.url.clone(),
            topic: plan.topic.clone(),
            keys: plan.keys,
            batch_size: plan.batch_size,
            value_base64: BASE64.encode(&value),
            value,
        })
    }

    fn keys_from(&self, first: u64, count: u64) -> impl Iterator<Item = String> + use<> {
        let keys = self.keys;
        (0..count).map(move |i| key_name((first + i) % keys))
    }

    fn request(&self, op: Op) -> reqwest::RequestBuilder {
        let url = &self.url;
        let topic = &self.topic;
        let client = &self.client;
        match (self.target, op) {
            (Target::Kvstore, Op::Put(key)) => client
                .put(format!("{url}/v1/{topic}/keys/{}", key_name(key)))
                .header("content-type", "application/octet-stream")
                .body(self.value.clone()),
            (Target::Kvstore, Op::Get(key) | Op::Cas(key)) => {
                client.get(format!("{url}/v1/{topic}/keys/{}", key_name(key)))
            }
            (Target::Kvstore, Op::StrongGet(key)) => client.get(format!(
                "{url}/v1/{topic}/keys/{}?consistency=strong",
                key_name(key)
            )),
            (Target::Kvstore, Op::Range(start)) => client.get(format!(
                "{url}/v1/{topic}/range?start={}&limit={}",
                key_name(start),
                self.batch_size
            )),
            (Target::Kvstore, Op::Batch { first, count }) => client
                .post(format!("{url}/v1/{topic}/batch"))
                .header("content-type", "application/json")
                .body(kvstore_batch_body(
                    self.keys_from(first, count),
                    &self.value,
                )),
            (Target::Kvstore, Op::Healthz) => client.get(format!("{url}/healthz")),
            (Target::Etcd, Op::Put(key)) => client
                .post(format!("{url}/v3/kv/put"))
                .body(etcd_put_body(&key_name(key), &self.value_base64)),
            // etcd's reads are linearizable by default.
            (Target::Etcd, Op::Get(key) | Op::StrongGet(key) | Op::Cas(key)) => client
                .post(format!("{url}/v3/kv/range"))
                .body(etcd_range_body(&key_name(key), None)),
            (Target::Etcd, Op::Range(start)) => client
                .post(format!("{url}/v3/kv/range"))
                .body(etcd_range_body(&key_name(start), Some(self.batch_size))),
            (Target::Etcd, Op::Batch { first, count }) => {
                client.post(format!("{url}/v3/kv/txn")).body(etcd_txn_body(
                    self.keys_from(first, count),
                    &self.value_base64,
                ))
            }
            (Target::Etcd, Op::Healthz) => client.get(format!("{url}/health")),
        }
    }

    /// PUTs key number `key` to kvstore; returns the write's offset.
    pub async fn put_offset(&self, key: u64) -> Result<i64, String> {
        let response = self
            .request(Op::Put(key))
            .send()
            .await
            .map_err(error_kind)?;
        let status = response.status();
        let body = response.bytes().await.map_err(error_kind)?;
        if !status.is_success() {
            return Err(status.as_u16().to_string());
        }
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|answer| answer["offset"].as_i64())
            .ok_or_else(|| "no offset".to_owned())
    }

    /// Sends `op` and reads the whole answer (so the connection can be reused).
    pub async fn execute(&self, op: Op) -> Outcome {
        if let Op::Cas(key) = op {
            return self.compare_and_set(key).await;
        }
        let response = self.request(op).send().await.map_err(error_kind)?;
        let status = response.status();
        let body = response.bytes().await.map_err(error_kind)?;
        if !status.is_success() {
            return Err(status.as_u16().to_string());
        }
        // etcd answers a read of a missing key with 200 and no `kvs`; kvstore with 404.
        if self.target == Target::Etcd
            && matches!(op, Op::Get(_) | Op::StrongGet(_))
            && !contains(&body, b"\"kvs\"")
        {
            return Err("not found".into());
        }
        Ok(op.operations())
    }
}

impl HttpTarget {
    /// Reads `key` and writes it again if no one else did meanwhile: one operation, two
    /// requests.
    async fn compare_and_set(&self, key: u64) -> Outcome {
        let read = self
            .request(Op::Get(key))
            .send()
            .await
            .map_err(error_kind)?;
        let status = read.status();
        let (url, topic, name) = (&self.url, &self.topic, key_name(key));
        let write = match self.target {
            Target::Kvstore => {
                let condition = match read.headers().get("etag") {
                    Some(etag) if status.is_success() => ("if-match", etag.clone()),
                    _ if status == reqwest::StatusCode::NOT_FOUND => (
                        "if-none-match",
                        reqwest::header::HeaderValue::from_static("*"),
                    ),
                    _ => return Err(status.as_u16().to_string()),
                };
                read.bytes().await.map_err(error_kind)?;
                self.client
                    .put(format!("{url}/v1/{topic}/keys/{name}"))
                    .header("content-type", "application/octet-stream")
                    .header(condition.0, condition.1)
                    .body(self.value.clone())
            }
            Target::Etcd => {
                let body: serde_json::Value = read.json().await.map_err(error_kind)?;
                let key_b64 = BASE64.encode(&name);
                // A key's mod_revision, or a version of 0 for a key that does not exist.
                let compare = match body["kvs"][0]["mod_revision"].as_str() {
                    Some(revision) => json!({"key": key_b64, "result": "EQUAL",
                                             "target": "MOD", "mod_revision": revision}),
                    None => json!({"key": key_b64, "result": "EQUAL",
                                   "target": "VERSION", "version": "0"}),
                };
                let txn = json!({
                    "compare": [compare],
                    "success": [{"request_put": {"key": key_b64, "value": self.value_base64}}],
                });
                self.client
                    .post(format!("{url}/v3/kv/txn"))
                    .body(txn.to_string())
            }
        };
        let response = write.send().await.map_err(error_kind)?;
        let status = response.status();
        let body = response.bytes().await.map_err(error_kind)?;
        match self.target {
            _ if status == reqwest::StatusCode::PRECONDITION_FAILED => Err("conflict".into()),
            _ if !status.is_success() => Err(status.as_u16().to_string()),
            Target::Etcd if !contains(&body, b"\"succeeded\":true") => Err("conflict".into()),
            _ => Ok(1),
        }
    }
}

/// Runs `plan`'s HTTP scenario: prefill if asked, warm up, then the clients until the budget
/// is spent.
pub async fn run(plan: &Plan) -> Result<Report, BenchError> {
    let target = Arc::new(HttpTarget::new(plan)?);
    if plan.prefill {
        prefill(&target, plan).await?;
    }
    let workload = Arc::new(Workload::new(plan));
    let seed = seed();
    // The first request goes alone and untimed, so that one-off work is not measured: the
    // first write to a kvstore topic creates it, the first read attaches it. With
    // `--requests N` it is the first of the N, so N batches still write N × batch-size keys.
    let limit = if plan.limit == Limit::Requests(1) {
        plan.limit
    } else {
        let _ = target
            .execute(workload.next(&mut SplitMix64::new(seed)))
            .await;
        plan.limit.after_one()
    };
    let progress = Arc::new(Progress::default());
    let ticker = progress.spawn_ticker(plan.scenario.name().to_owned(), "requests");
    let budget = Arc::new(Budget::start(limit));
    let replay = plan.while_replaying.clone().map(|topic| {
        let (target, budget) = (target.clone(), budget.clone());
        tokio::spawn(async move { last_replay(&target, &topic, &budget).await })
    });
    let started = Instant::now();
    let clients: Vec<_> = (0..plan.concurrency as u64)
        .map(|client| {
            let mut rng = SplitMix64::new(seed ^ client.wrapping_mul(0x9e37_79b9));
            let (target, workload, budget, progress) = (
                target.clone(),
                workload.clone(),
                budget.clone(),
                progress.clone(),
            );
            tokio::spawn(async move {
                let mut seen = Recorder::new();
                while budget.take() {
                    let op = workload.next(&mut rng);
                    let sent = Instant::now();
                    let outcome = target.execute(op).await;
                    seen.record(&progress, outcome.map(|ops| (sent.elapsed(), ops)));
                }
                seen
            })
        })
        .collect();
    let mut seen = Recorder::new();
    for client in clients {
        let client = client
            .await
            .map_err(|e| BenchError::Failed(format!("a client task failed: {e}")))?;
        seen.merge(&client);
    }
    let elapsed = started.elapsed();
    stop_ticker(ticker);
    if let Some(replay) = replay {
        replay
            .await
            .map_err(|e| BenchError::Failed(format!("the replay watcher failed: {e}")))??;
    }
    Ok(Report::new(plan, &seen, elapsed))
}

/// Attaches `topic` (a read of it does) and stops `budget` once kvstore lists it as ready with
/// nothing left to apply, or after [`REPLAY_TIMEOUT`].
async fn last_replay(target: &HttpTarget, topic: &str, budget: &Budget) -> Result<(), BenchError> {
    let attach = {
        let request = target
            .client
            .get(format!("{}/v1/{topic}/keys/{}", target.url, key_name(0)));
        // Its answer (503 while replaying, or 404) does not matter: the listing decides.
        tokio::spawn(async move { request.send().await.map(|_| ()) })
    };
    let deadline = Instant::now() + REPLAY_TIMEOUT;
    let outcome = loop {
        if replayed(target, topic).await {
            break Ok(());
        }
        if Instant::now() >= deadline {
            break Err(BenchError::Failed(format!(
                "topic {topic:?} was not replayed in {} s",
                REPLAY_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(REPLAY_POLL_INTERVAL).await;
    };
    budget.stop();
    attach.abort();
    outcome
}

/// Whether kvstore's topic listing shows `topic` ready with nothing left to apply.
async fn replayed(target: &HttpTarget, topic: &str) -> bool {
    let listing = match target
        .client
        .get(format!("{}/v1/topics", target.url))
        .send()
        .await
    {
        Ok(response) => response.json::<serde_json::Value>().await.ok(),
        Err(_) => None,
    };
    listing
        .as_ref()
        .and_then(|listing| listing["topics"].as_array())
        .and_then(|topics| topics.iter().find(|t| t["name"] == topic))
        .is_some_and(|t| t["state"] == "ready" && t["lag"] == 0)
}

/// Writes every key of the key space once, in batches, with a few clients. Fails on the
/// first batch that fails, since reads of a key space with holes would measure errors.
async fn prefill(target: &Arc<HttpTarget>, plan: &Plan) -> Result<(), BenchError> {
    let per_batch = match plan.target {
        Target::Kvstore => KVSTORE_PREFILL_BATCH,
        Target::Etcd => ETCD_MAX_TXN_OPS as u64,
    }
    .min(plan.keys);
    let batches = plan.keys.div_ceil(per_batch);
    let next = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Progress::default());
    let ticker = progress.spawn_ticker("prefill".into(), "batches");
    let clients: Vec<_> = (0..PREFILL_CLIENTS.min(batches as usize))
        .map(|_| {
            let (target, next, progress) = (target.clone(), next.clone(), progress.clone());
            let keys = plan.keys;
            tokio::spawn(async move {
                loop {
                    let batch = next.fetch_add(1, Ordering::Relaxed);
                    if batch >= batches {
                        return Ok(());
                    }
                    let first = batch * per_batch;
                    let count = per_batch.min(keys - first);
                    target
                        .execute(Op::Batch { first, count })
                        .await
                        .map_err(|kind| format!("prefill batch at key {first} failed: {kind}"))?;
                    progress.success();
                }
            })
        })
        .collect();
    let mut outcome = Ok(());
    for client in clients {
        let result = client
            .await
            .map_err(|e| format!("a prefill task failed: {e}"))
            .and_then(|r: Result<(), String>| r);
        if let Err(message) = result {
            outcome = Err(BenchError::Failed(message));
        }
    }
    stop_ticker(ticker);
    outcome
}

/// A kvstore batch request body: a put of the value, as text, for each key.
pub fn kvstore_batch_body(keys: impl Iterator<Item = String>, value: &[u8]) -> Vec<u8> {
    let value = String::from_utf8_lossy(value);
    let ops: Vec<_> = keys
        .map(|key| json!({"op": "put", "key": key, "value": value}))
        .collect();
    json!({ "ops": ops }).to_string().into_bytes()
}

/// An etcd `PUT` request body (`/v3/kv/put`): key and value in base64.
pub fn etcd_put_body(key: &str, value_base64: &str) -> Vec<u8> {
    json!({"key": BASE64.encode(key), "value": value_base64})
        .to_string()
        .into_bytes()
}

/// An etcd range request body (`/v3/kv/range`): one key, or with `limit` a page of keys from
/// `key` on (`range_end` `"\0"` means every key from `key` on).
pub fn etcd_range_body(key: &str, limit: Option<usize>) -> Vec<u8> {
    let key = BASE64.encode(key);
    let body = match limit {
        None => json!({ "key": key }),
        Some(limit) => json!({"key": key, "range_end": BASE64.encode([0]), "limit": limit}),
    };
    body.to_string().into_bytes()
}

/// An etcd transaction body (`/v3/kv/txn`) with no conditions that puts the value under each
/// key, etcd's way of writing several keys in one request.
pub fn etcd_txn_body(keys: impl Iterator<Item = String>, value_base64: &str) -> Vec<u8> {
    let puts: Vec<_> = keys
        .map(|key| json!({"request_put": {"key": BASE64.encode(key), "value": value_base64}}))
        .collect();
    json!({ "success": puts }).to_string().into_bytes()
}

fn error_kind(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".into()
    } else if error.is_connect() {
        "connect".into()
    } else if error.is_body() || error.is_decode() {
        "body".into()
    } else {
        "transport".into()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn parse(body: &[u8]) -> Value {
        serde_json::from_slice(body).expect("JSON body")
    }

    fn plan(scenario: Scenario, keys: u64, batch_size: usize) -> Plan {
        Plan {
            watch: crate::bench::args::WatchPlan {
                url: "http://127.0.0.1:8080".into(),
                watchers: 1,
                idle: Duration::ZERO,
                own_key: false,
            },
            scenario,
            target: Target::Kvstore,
            url: "http://127.0.0.1:1".into(),
            brokers: String::new(),
            topic: "t".into(),
            concurrency: 1,
            limit: Limit::Requests(1),
            keys,
            value_size: 3,
            batch_size,
            read_ratio: 0.5,
            librdkafka: Default::default(),
            prefill: false,
            while_replaying: None,
            json: false,
            security: Default::default(),
        }
    }

    #[test]
    fn etcd_put_encodes_key_and_value_in_base64() {
        let body = parse(&etcd_put_body("key-000000000001", &BASE64.encode("abc")));
        assert_eq!(
            body,
            json!({"key": "a2V5LTAwMDAwMDAwMDAwMQ==", "value": "YWJj"})
        );
    }

    #[test]
    fn etcd_range_reads_one_key_or_a_page_from_it() {
        assert_eq!(parse(&etcd_range_body("k", None)), json!({"key": "aw=="}));
        assert_eq!(
            parse(&etcd_range_body("k", Some(10))),
            json!({"key": "aw==", "range_end": "AA==", "limit": 10})
        );
    }

    #[test]
    fn etcd_txn_puts_every_key() {
        let keys = ["a".to_owned(), "b".to_owned()];
        let body = parse(&etcd_txn_body(keys.into_iter(), "dg=="));
        assert_eq!(
            body,
            json!({"success": [
                {"request_put": {"key": "YQ==", "value": "dg=="}},
                {"request_put": {"key": "Yg==", "value": "dg=="}},
            ]})
        );
    }

    #[test]
    fn kvstore_batch_puts_the_value_as_text() {
        let keys = ["a".to_owned()];
        let body = parse(&kvstore_batch_body(keys.into_iter(), b"xyz"));
        assert_eq!(
            body,
            json!({"ops": [{"op": "put", "key": "a", "value": "xyz"}]})
        );
    }

    #[test]
    fn batches_walk_the_key_space_once_and_wrap() {
        let target = HttpTarget::new(&plan(Scenario::Batch, 5, 2)).expect("target");
        let workload = Workload::new(&plan(Scenario::Batch, 5, 2));
        let mut rng = SplitMix64::new(1);
        let firsts: Vec<_> = (0..3)
            .map(|_| match workload.next(&mut rng) {
                Op::Batch { first, count } => {
                    assert_eq!(count, 2);
                    first
                }
                other => panic!("not a batch: {other:?}"),
            })
            .collect();
        assert_eq!(firsts, [0, 2, 4]);
        let keys: Vec<_> = target.keys_from(4, 2).collect();
        assert_eq!(keys, ["key-000000000004", "key-000000000000"]);
    }

    #[test]
    fn mixed_reads_and_writes_by_ratio() {
        let workload = Workload::new(&plan(Scenario::Mixed, 100, 1));
        let mut rng = SplitMix64::new(3);
        let reads = (0..10_000)
            .filter(|_| matches!(workload.next(&mut rng), Op::Get(_)))
            .count();
        assert!((4_500..5_500).contains(&reads), "{reads}");
    }
}
