//! The Kafka floors: what the broker alone costs, measured with bare rdkafka clients, beside
//! which kvstore's figures are read.
//!
//! - `produce`: a `FutureProducer` with exactly the service's producer settings
//!   ([`crate::kafka::producer::settings`]), one record at a time: the floor of a PUT's wait
//!   for the broker's acknowledgement.
//! - `roundtrip`: produce one record and consume it back with a consumer configured as the
//!   service's replay loop is: the floor of a PUT, which waits until it has applied its write.
//! - `consume`: read a whole topic from its beginning to its end: the floor of a replay.
//!
//! The clients block, so each scenario runs on a thread of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::args::{Plan, Scenario, key_name, value_bytes};
use super::report::{Progress, Recorder, Report, stop_ticker};
use super::{BenchError, Budget};
use crate::config::Config;
use crate::record::CONTENT_TYPE_HEADER;

/// How long metadata look-ups and topic creation may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one round trip may take before it counts as a `timeout` error; kvstore's default
/// write timeout.
const ROUNDTRIP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a consumer may go without a record or the end of the topic before giving up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one poll waits.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Runs `plan`'s Kafka scenario.
pub async fn run(plan: &Plan) -> Result<Report, BenchError> {
    let progress = Arc::new(Progress::default());
    let ticker = progress.spawn_ticker(plan.scenario.name().to_owned(), "records");
    let blocking_plan = plan.clone();
    let blocking_progress = progress.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let (plan, progress) = (&blocking_plan, &*blocking_progress);
        match plan.scenario {
            Scenario::Produce => produce(plan, progress),
            Scenario::Roundtrip => roundtrip(plan, progress),
            Scenario::Consume => consume(plan, progress),
            other => Err(BenchError::InvalidArgs(format!(
                "{} is not a Kafka scenario",
                other.name()
            ))),
        }
    })
    .await;
    stop_ticker(ticker);
    let (seen, elapsed) = outcome
        .map_err(|e| BenchError::Failed(format!("the Kafka client thread failed: {e}")))??;
    Ok(Report::new(plan, &seen, elapsed))
}

/// The service's default settings, with `plan`'s brokers.
fn service_config(plan: &Plan) -> Config {
    Config {
        brokers: plan.brokers.clone(),
        ..Config::default()
    }
}

/// A client configuration for `plan`'s brokers with `settings`, built by the service's own
/// [`crate::kafka::client_config`] (so with its common settings), under a client id of its
/// own and with `plan`'s extra librdkafka properties last.
fn client_config<'a>(
    plan: &Plan,
    config: &Config,
    settings: impl IntoIterator<Item = (&'a str, String)>,
) -> Result<ClientConfig, BenchError> {
    let mut client = crate::kafka::client_config(config, settings)?;
    client.set("client.id", "kvstore-bench");
    for (key, value) in &plan.librdkafka {
        client.set(key, value);
    }
    Ok(client)
}

/// A consumer of `plan`'s topic, partition 0, from its beginning.
fn consumer(plan: &Plan, config: &Config) -> Result<BaseConsumer, BenchError> {
    let consumer: BaseConsumer =
        client_config(plan, config, crate::kafka::replay::settings(config))?.create()?;
    let mut assignment = TopicPartitionList::new();
    // Offset 0, as the service assigns it: Offset::Beginning would first look the log start
    // up, after a 500 ms wait while the partition's leader is unknown. `auto.offset.reset`
    // moves to the log start if it is past 0.
    assignment.add_partition_offset(&plan.topic, 0, Offset::Offset(0))?;
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// The partition count of `topic`, or `None` if it does not exist.
fn partitions<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
) -> Result<Option<usize>, BenchError> {
    let metadata = client.fetch_metadata(Some(topic), ADMIN_TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len()))
}

/// Fails unless `topic` exists with a single partition, as kvstore requires.
fn check_single_partition<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
) -> Result<(), BenchError> {
    match partitions(client, topic)? {
        Some(1) => Ok(()),
        Some(n) => Err(BenchError::Failed(format!(
            "topic {topic:?} has {n} partitions; kvstore and its floors use single-partition topics"
        ))),
        None => Err(BenchError::Failed(format!(
            "topic {topic:?} does not exist"
        ))),
    }
}

/// Creates `plan`'s topic as the service does ([`crate::kafka::admin::new_topic`]) unless it
/// exists.
fn ensure_topic(plan: &Plan, config: &Config) -> Result<(), BenchError> {
    let admin: AdminClient<DefaultClientContext> = client_config(plan, config, [])?.create()?;
    if partitions(admin.inner(), &plan.topic)?.is_none() {
        let settings = crate::kafka::admin::topic_settings(config);
        let topic = crate::kafka::admin::new_topic(&plan.topic, config, &settings);
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = futures::executor::block_on(admin.create_topics([&topic], &options))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BenchError::Failed(format!(
                        "creating topic {name:?}: {code}"
                    )));
                }
            }
        }
    }
    check_single_partition(admin.inner(), &plan.topic)
}

/// A producer with the service's settings, its connection and producer id set up by one
/// record sent and acknowledged before the clock starts.
fn warm_producer(plan: &Plan, config: &Config, value: &[u8]) -> Result<FutureProducer, BenchError> {
    let producer: FutureProducer =
        client_config(plan, config, crate::kafka::producer::settings(config))?.create()?;
    send_and_wait(&producer, plan, &key_name(0), value)
        .map_err(|kind| BenchError::Failed(format!("the first record was not written: {kind}")))?;
    Ok(producer)
}

/// A record as kvstore writes it for a PUT: key, value and content-type header, partition 0.
fn record<'a>(plan: &'a Plan, key: &'a str, value: &'a [u8]) -> FutureRecord<'a, str, [u8]> {
    FutureRecord::to(&plan.topic)
        .partition(0)
        .key(key)
        .payload(value)
        .headers(OwnedHeaders::new().insert(Header {
            key: CONTENT_TYPE_HEADER,
            value: Some("application/octet-stream"),
        }))
}

/// Sends one record and waits for the broker's acknowledgement.
fn send_and_wait(
    producer: &FutureProducer,
    plan: &Plan,
    key: &str,
    value: &[u8],
) -> Result<(), String> {
    let delivery = producer
        .send_result(record(plan, key, value))
        .map_err(|(error, _)| error_kind(&error))?;
    match futures::executor::block_on(delivery) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(error_kind(&error)),
        Err(_canceled) => Err("canceled".into()),
    }
}

/// `produce`: one record at a time, each timed from send to acknowledgement.
fn produce(plan: &Plan, progress: &Progress) -> Result<(Recorder, Duration), BenchError> {
    let config = service_config(plan);
    let value = value_bytes(plan.value_size);
    ensure_topic(plan, &config)?;
    let producer = warm_producer(plan, &config, &value)?;
    Ok(one_at_a_time(plan, progress, |key| {
        let sent = Instant::now();
        send_and_wait(&producer, plan, key, &value)?;
        Ok(sent.elapsed())
    }))
}

/// `roundtrip`: produce one record and wait until the consumer receives it, timed from send to
/// receipt; then the next.
fn roundtrip(plan: &Plan, progress: &Progress) -> Result<(Recorder, Duration), BenchError> {
    let config = service_config(plan);
    let value = value_bytes(plan.value_size);
    ensure_topic(plan, &config)?;
    let producer = warm_producer(plan, &config, &value)?;
    let consumer = consumer(plan, &config)?;
    // Read what the topic holds first, so that what arrives next is what this run sends.
    read_to_end(&consumer, &mut Recorder::new(), None)?;
    Ok(one_at_a_time(plan, progress, |key| {
        let sent = Instant::now();
        let delivery = producer
            .send_result(record(plan, key, &value))
            .map_err(|(error, _)| error_kind(&error))?;
        let latency = receive(&consumer, key.as_bytes(), sent).ok_or("timeout");
        // The acknowledgement has come by now, or comes soon; one record in flight at a time.
        let _ = futures::executor::block_on(delivery);
        Ok(latency?)
    }))
}

/// Runs `one` for each request of `plan`'s budget, one after another, with the key to write
/// (keys cycle through the key space, so a late record of an earlier round trip is not taken
/// for a later one's), and records the latency it returns.
fn one_at_a_time(
    plan: &Plan,
    progress: &Progress,
    mut one: impl FnMut(&str) -> Result<Duration, String>,
) -> (Recorder, Duration) {
    let mut seen = Recorder::new();
    let budget = Budget::start(plan.limit);
    let started = Instant::now();
    let mut sequence = 0;
    while budget.take() {
        sequence += 1;
        let outcome = one(&key_name(sequence % plan.keys)).map(|latency| (latency, 1));
        seen.record(progress, outcome);
    }
    (seen, started.elapsed())
}

/// Polls until a record with `key` arrives, and returns the time since `sent`; `None` if it
/// does not arrive within [`ROUNDTRIP_TIMEOUT`].
fn receive(consumer: &BaseConsumer, key: &[u8], sent: Instant) -> Option<Duration> {
    let deadline = sent + ROUNDTRIP_TIMEOUT;
    loop {
        let remaining = deadline.checked_duration_since(Instant::now())?;
        match consumer.poll(remaining.min(POLL_TIMEOUT)) {
            Some(Ok(message)) if message.key() == Some(key) => return Some(sent.elapsed()),
            // Other records, the end of the partition, and errors the client retries itself.
            Some(_) | None => {}
        }
    }
}

/// `consume`: reads the whole topic from its beginning with a fresh consumer, timed from
/// creating the consumer until the end of the partition.
fn consume(plan: &Plan, progress: &Progress) -> Result<(Recorder, Duration), BenchError> {
    let config = service_config(plan);
    let started = Instant::now();
    let consumer = consumer(plan, &config)?;
    check_single_partition(consumer.client(), &plan.topic)?;
    let mut seen = Recorder::new();
    read_to_end(&consumer, &mut seen, Some(progress))?;
    Ok((seen, started.elapsed()))
}

/// Polls until the end of the partition (librdkafka's partition EOF: Tansu's ListOffsets
/// "latest" cannot be trusted), counting records into `seen`.
fn read_to_end(
    consumer: &BaseConsumer,
    seen: &mut Recorder,
    progress: Option<&Progress>,
) -> Result<(), BenchError> {
    let mut last_news = Instant::now();
    loop {
        match consumer.poll(POLL_TIMEOUT) {
            Some(Ok(_)) => {
                seen.count(1);
                if let Some(progress) = progress {
                    progress.success();
                }
                last_news = Instant::now();
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(()),
            Some(Err(error)) => {
                seen.error(error_kind(&error));
                if let Some(progress) = progress {
                    progress.error();
                }
            }
            None => {}
        }
        if last_news.elapsed() > IDLE_TIMEOUT {
            return Err(BenchError::Failed(format!(
                "no record and no end of the topic in {} s",
                IDLE_TIMEOUT.as_secs()
            )));
        }
    }
}

/// The kind of a Kafka error, for the report: librdkafka's error code name.
fn error_kind(error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "kafka".into(),
    }
}
