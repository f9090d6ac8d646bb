//! `kvstore bench`: a load generator in the binary, as `redis-benchmark` is in Redis's.
//!
//! It drives kvstore (or etcd's JSON gateway, for comparison) over HTTP with a number of
//! concurrent clients, or measures the floors beneath kvstore by talking to the Kafka broker
//! directly, and reports throughput, latency percentiles and errors.
//!
//! - [`args`]: the command line, the scenarios, and the checks that make a [`args::Plan`].
//! - [`http`]: the HTTP targets (kvstore and etcd), the clients, prefilling the key space.
//! - [`kafka`]: the Kafka floors: a bare producer, a produce-and-consume round trip, and a
//!   bare consumer reading a whole topic.
//! - [`report`]: per-client recorders, live progress on stderr, the final table or JSON.
//! - [`watch`]: PUTs while watch streams follow the topic: delivery latency and events/s.

pub mod args;
pub mod http;
pub mod kafka;
pub mod report;
pub mod watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

pub use args::BenchArgs;
use args::{Limit, Scenario};

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The arguments do not make a run.
    #[error("{0}")]
    InvalidArgs(String),
    /// A Kafka client could not be created or configured.
    #[error("Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The run could not be done: preparing it failed, or nothing succeeded.
    #[error("{0}")]
    Failed(String),
    /// The async runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Runs `args` and prints its report on stdout: a table, or one JSON object with `--json`.
/// Fails when the arguments are invalid, the run cannot start, or no request succeeded.
pub fn run(args: &BenchArgs) -> Result<(), BenchError> {
    let plan = args.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        if plan.scenario.is_kafka() {
            kafka::run(&plan).await
        } else if plan.scenario == Scenario::Watch {
            watch::run(&plan).await
        } else {
            http::run(&plan).await
        }
    })?;
    if plan.json {
        let json = serde_json::to_string(&report)
            .map_err(|e| BenchError::Failed(format!("writing the report: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", report.to_table());
    }
    if report.requests == 0 && plan.scenario != Scenario::Consume {
        return Err(BenchError::Failed("no request succeeded".into()));
    }
    Ok(())
}

/// Hands out a run's requests to its clients: until the deadline, a fixed number in all, or
/// until stopped.
#[derive(Debug)]
pub struct Budget {
    limit: Limit,
    deadline: Option<Instant>,
    issued: AtomicU64,
    stopped: AtomicBool,
}

impl Budget {
    /// Starts the clock for `limit`.
    pub fn start(limit: Limit) -> Budget {
        let deadline = match limit {
            Limit::Duration(duration) => Some(Instant::now() + duration),
            Limit::Requests(_) | Limit::EndOfTopic | Limit::WhileReplaying => None,
        };
        Budget {
            limit,
            deadline,
            issued: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// Hands out no more requests.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Whether a client may send one more request.
    pub fn take(&self) -> bool {
        if self.stopped.load(Ordering::Relaxed) {
            return false;
        }
        match (self.limit, self.deadline) {
            (_, Some(deadline)) => Instant::now() < deadline,
            (Limit::Requests(total), None) => self.issued.fetch_add(1, Ordering::Relaxed) < total,
            (_, None) => true,
        }
    }
}

/// A small, fast pseudo-random generator (SplitMix64), one per client; picking keys needs
/// neither quality nor a shared lock.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_request_budget_hands_out_exactly_that_many() {
        let budget = Budget::start(Limit::Requests(3));
        let taken = (0..10).filter(|_| budget.take()).count();
        assert_eq!(taken, 3);
    }

    #[test]
    fn a_stopped_budget_hands_out_nothing() {
        let budget = Budget::start(Limit::WhileReplaying);
        assert!(budget.take() && budget.take());
        budget.stop();
        assert!(!budget.take());
    }

    #[test]
    fn a_duration_budget_ends_at_its_deadline() {
        let budget = Budget::start(Limit::Duration(Duration::from_millis(20)));
        assert!(budget.take());
        std::thread::sleep(Duration::from_millis(30));
        assert!(!budget.take());
    }

    #[test]
    fn random_numbers_stay_in_range() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..1000 {
            assert!(rng.below(10) < 10);
            let unit = rng.unit();
            assert!((0.0..1.0).contains(&unit));
        }
    }
}
