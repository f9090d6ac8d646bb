//! The watch scenario: clients PUT to one replica while streams on another (or the same)
//! follow the topic through `/v1/{topic}/watch`. It measures what the PUTs measure, and
//! beside it the delivery latency (a PUT's acknowledgement to its event at the first
//! watcher), the events all watchers received per second, and the watched replica's apply lag
//! (a PUT's acknowledgement to the start of a watch with `min_offset` at its offset there,
//! beside the same request for an offset long applied: the request's own cost).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::args::{Plan, key_name};
use super::http::{HttpTarget, Workload};
use super::report::{
    Progress, Recorder, Report, WatchFigures, latency_of, micros_histogram, stop_ticker,
};
use super::{BenchError, Budget, SplitMix64};

/// How long, after the last PUT, the first watcher may take to deliver it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Every how many PUTs the apply lag is sampled.
const LAG_SAMPLE_EVERY: u64 = 50;

/// One half of a delivery: whichever of the acknowledgement and the event came first.
enum Stamp {
    Acknowledged(Instant),
    Delivered(Instant),
}

/// What the clients and the watchers share.
struct Shared {
    // Std mutexes, held only to look up or record one entry, never across `.await`.
    stamps: Mutex<HashMap<i64, Stamp>>,
    delivery: Mutex<Histogram<u64>>,
    apply_lag: Mutex<Histogram<u64>>,
    request_floor: Mutex<Histogram<u64>>,
    events: AtomicU64,
    /// The highest offset the first watcher received.
    last_delivered: AtomicU64,
}

impl Shared {
    fn record(histogram: &Mutex<Histogram<u64>>, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(micros);
    }

    /// Notes one half of `offset`'s delivery; with both, records the time between them (0
    /// when the event came before the acknowledgement).
    fn stamp(&self, offset: i64, stamp: Stamp) {
        let other = {
            let mut stamps = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
            match stamps.remove(&offset) {
                Some(other) => other,
                None => {
                    stamps.insert(offset, stamp);
                    return;
                }
            }
        };
        let elapsed = match (other, stamp) {
            (Stamp::Acknowledged(acked), Stamp::Delivered(at))
            | (Stamp::Delivered(at), Stamp::Acknowledged(acked)) => {
                at.saturating_duration_since(acked)
            }
            _ => return,
        };
        Shared::record(&self.delivery, elapsed);
    }
}

/// Runs the watch scenario of `plan`.
pub async fn run(plan: &Plan) -> Result<Report, BenchError> {
    let target = Arc::new(HttpTarget::new(plan)?);
    let workload = Arc::new(Workload::new(plan));
    // The first PUT goes alone and untimed: it creates the topic.
    target
        .put_offset(workload.next(&mut SplitMix64::new(1)).key())
        .await
        .map_err(|e| BenchError::Failed(format!("the first PUT failed: {e}")))?;
    let shared = Arc::new(Shared {
        stamps: Mutex::new(HashMap::new()),
        delivery: Mutex::new(micros_histogram()),
        apply_lag: Mutex::new(micros_histogram()),
        request_floor: Mutex::new(micros_histogram()),
        events: AtomicU64::new(0),
        last_delivered: AtomicU64::new(0),
    });
    // No total timeout: the streams last the run.
    let streams = plan
        .security
        .apply(reqwest::Client::builder().tcp_nodelay(true))
        .map_err(BenchError::InvalidArgs)?
        .build()
        .map_err(|e| BenchError::Failed(format!("building the HTTP client: {e}")))?;
    let watch_url = format!("{}/v1/{}/watch", plan.watch.url, plan.topic);
    let mut readers = Vec::new();
    for watcher in 0..plan.watch.watchers {
        let mut request = streams.get(&watch_url);
        if plan.watch.own_key {
            request = request.query(&[("prefix", key_name(watcher as u64 % plan.keys))]);
        }
        let response = request
            .send()
            .await
            .map_err(|e| BenchError::Failed(format!("opening watcher {watcher}: {e}")))?;
        if !response.status().is_success() {
            return Err(BenchError::Failed(format!(
                "opening watcher {watcher}: HTTP {}",
                response.status()
            )));
        }
        readers.push(tokio::spawn(read_events(
            response,
            watcher == 0,
            shared.clone(),
        )));
    }
    eprintln!(
        "watch: {} watchers open; PUTs start in {:?}",
        plan.watch.watchers, plan.watch.idle
    );
    tokio::time::sleep(plan.watch.idle).await;

    let progress = Arc::new(Progress::default());
    let ticker = progress.spawn_ticker("watch".to_owned(), "requests");
    let budget = Arc::new(Budget::start(plan.limit.after_one()));
    let events_before = shared.events.load(Ordering::Relaxed);
    let started = Instant::now();
    let puts = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..plan.concurrency as u64)
        .map(|client| {
            let mut rng = SplitMix64::new(client.wrapping_mul(0x9e37_79b9) + 7);
            let (target, workload, budget, progress, shared, puts) = (
                target.clone(),
                workload.clone(),
                budget.clone(),
                progress.clone(),
                shared.clone(),
                puts.clone(),
            );
            let (streams, watch_url) = (streams.clone(), watch_url.clone());
            tokio::spawn(async move {
                let mut seen = Recorder::new();
                let mut last = 0;
                while budget.take() {
                    let key = workload.next(&mut rng).key();
                    let sent = Instant::now();
                    let outcome = target.put_offset(key).await;
                    let acked = Instant::now();
                    if let Ok(offset) = outcome {
                        last = last.max(offset);
                        shared.stamp(offset, Stamp::Acknowledged(acked));
                        if puts.fetch_add(1, Ordering::Relaxed) % LAG_SAMPLE_EVERY == 0 {
                            let (streams, shared) = (streams.clone(), shared.clone());
                            let url = format!("{watch_url}?min_offset={offset}&wait=10s");
                            let floor_url = format!("{watch_url}?min_offset=0");
                            tokio::spawn(async move {
                                if let Ok(response) = streams.get(url).send().await
                                    && response.status().is_success()
                                {
                                    Shared::record(&shared.apply_lag, acked.elapsed());
                                }
                                // The same request for an offset long applied: what the
                                // request alone costs.
                                let sent = Instant::now();
                                if let Ok(response) = streams.get(floor_url).send().await
                                    && response.status().is_success()
                                {
                                    Shared::record(&shared.request_floor, sent.elapsed());
                                }
                            });
                        }
                    }
                    seen.record(&progress, outcome.map(|_| (sent.elapsed(), 1)));
                }
                (seen, last)
            })
        })
        .collect();
    let mut seen = Recorder::new();
    let mut last = 0;
    for client in clients {
        let (client, their_last) = client
            .await
            .map_err(|e| BenchError::Failed(format!("a client task failed: {e}")))?;
        seen.merge(&client);
        last = last.max(their_last);
    }
    let elapsed = started.elapsed();
    stop_ticker(ticker);
    // The events of the last PUTs are on their way: wait for the first watcher to have them.
    let drained = Instant::now() + DRAIN_TIMEOUT;
    while (shared.last_delivered.load(Ordering::Relaxed) as i64) < last && Instant::now() < drained
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let events = shared.events.load(Ordering::Relaxed) - events_before;
    for reader in readers {
        reader.abort();
    }
    let mut report = Report::new(plan, &seen, elapsed);
    let lock =
        |h: &Mutex<Histogram<u64>>| latency_of(&h.lock().unwrap_or_else(PoisonError::into_inner));
    report.watch = Some(WatchFigures {
        watchers: plan.watch.watchers,
        events,
        events_per_second: events as f64 / elapsed.as_secs_f64().max(1e-9),
        delivery_ms: lock(&shared.delivery),
        apply_lag_ms: lock(&shared.apply_lag),
        request_floor_ms: lock(&shared.request_floor),
    });
    Ok(report)
}

/// Reads one watcher's stream: counts its change events; the first watcher also stamps each
/// event's arrival by its `id`.
async fn read_events(mut response: reqwest::Response, first: bool, shared: Arc<Shared>) {
    let mut buffer: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let arrived = Instant::now();
        buffer.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = buffer[start..].windows(2).position(|w| w == b"\n\n") {
            let frame = &buffer[start..start + end];
            start += end + 2;
            if !frame.starts_with(b"event: put") && !frame.starts_with(b"event: delete") {
                continue;
            }
            shared.events.fetch_add(1, Ordering::Relaxed);
            if !first {
                continue;
            }
            let id = std::str::from_utf8(frame)
                .ok()
                .and_then(|text| text.lines().find_map(|line| line.strip_prefix("id: ")))
                .and_then(|id| id.parse::<i64>().ok());
            if let Some(offset) = id {
                shared.stamp(offset, Stamp::Delivered(arrived));
                shared
                    .last_delivered
                    .fetch_max(offset as u64, Ordering::Relaxed);
            }
        }
        buffer.drain(..start);
    }
}
