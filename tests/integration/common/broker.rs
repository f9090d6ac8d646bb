//! The brokers the tests run against: Apache Kafka by default, through `scripts/kafka.sh`, or
//! Tansu with `KVSTORE_TEST_BROKER=tansu`.
//!
//! Most tests share one broker per test binary ([`Broker::shared`]) and keep apart by topic
//! name; a JVM broker takes seconds to start. Tests that stop, kill or reconfigure a broker
//! start their own ([`Broker::dedicated`], [`Broker::cluster`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::free_port;
use super::kafka::{KafkaCluster, kafka_sh};
use super::tansu::{Tansu, tansu_binary};

/// Which broker the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Apache Kafka (the default), from `scripts/kafka.sh`.
    Kafka,
    /// Tansu, from `KVSTORE_TEST_TANSU`: `KVSTORE_TEST_BROKER=tansu`.
    Tansu,
}

impl Flavor {
    /// The flavour chosen by `KVSTORE_TEST_BROKER` (`kafka`, the default, or `tansu`).
    pub fn chosen() -> Flavor {
        match std::env::var("KVSTORE_TEST_BROKER").as_deref() {
            Ok("tansu") => Flavor::Tansu,
            Ok("kafka") | Ok("") | Err(_) => Flavor::Kafka,
            Ok(other) => panic!("KVSTORE_TEST_BROKER must be kafka or tansu, not {other:?}"),
        }
    }
}

/// A broker (or a cluster of them) for the tests; a dedicated one is stopped on drop.
pub struct Broker {
    kind: Kind,
    producer: OnceLock<FutureProducer>,
}

enum Kind {
    /// A Kafka cluster started by `scripts/kafka.sh` in `dir`, or one started by `make test`
    /// (`dir` is then `None`).
    Kafka(KafkaCluster),
    Tansu(Tansu),
}

/// How a dedicated Kafka cluster is set up.
#[derive(Debug, Clone, Default)]
pub struct KafkaOptions {
    /// Broker nodes (0 means 1), each a controller too unless `controllers` is set.
    pub nodes: usize,
    /// Controller-only nodes besides the brokers, numbered after them (0: none).
    pub controllers: usize,
    /// Broker settings (`key=value`) added to every node's configuration.
    pub settings: Vec<String>,
    /// SCRAM users (`name:password`) made when the storage is formatted.
    pub scram_users: Vec<String>,
}

impl Broker {
    /// The broker this test binary shares: the one `make test` started
    /// (`KVSTORE_TEST_KAFKA_BOOTSTRAP`), else one started on first use and stopped once this
    /// process has exited. Tests on it must use topic names of their own.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(|| match Flavor::chosen() {
            Flavor::Kafka => match std::env::var("KVSTORE_TEST_KAFKA_BOOTSTRAP") {
                Ok(bootstrap) if !bootstrap.is_empty() => {
                    Broker::from_kind(Kind::Kafka(KafkaCluster {
                        dir: None,
                        bootstrap,
                        ports: Vec::new(),
                        options: KafkaOptions::default(),
                        started: true,
                    }))
                }
                _ => Broker::dedicated(),
            },
            Flavor::Tansu => {
                let mut broker = Broker::not_started();
                if let Kind::Tansu(tansu) = &mut broker.kind {
                    // Never dropped, so never stopped by the harness.
                    tansu.stop_with_this_process = true;
                }
                broker.restart();
                broker
            }
        })
    }

    /// The shared broker, for tests that need Apache Kafka itself (`needs`: what of it, for
    /// the message when the run is on another broker).
    pub fn shared_kafka(needs: &str) -> &'static Broker {
        let broker = Broker::shared();
        assert_eq!(broker.flavor(), Flavor::Kafka, "these tests need {needs}");
        broker
    }

    /// A broker of this test's own, started.
    pub fn dedicated() -> Broker {
        let mut broker = Broker::not_started();
        broker.restart();
        broker
    }

    /// A broker of this test's own with its ports reserved, not started: `restart` starts it.
    pub fn not_started() -> Broker {
        match Flavor::chosen() {
            Flavor::Kafka => Broker::kafka_not_started(KafkaOptions::default()),
            Flavor::Tansu => Broker::tansu_not_started(
                tansu_binary(),
                "memory://tansu/".into(),
                std::env::temp_dir(),
            ),
        }
    }

    /// A Kafka cluster of this test's own, whatever the chosen flavour, started.
    pub fn kafka(options: KafkaOptions) -> Broker {
        let mut broker = Broker::kafka_not_started(options);
        broker.restart();
        broker
    }

    /// A three-node Kafka cluster (replication factor 3, `min.insync.replicas=2`), started.
    pub fn cluster() -> Broker {
        Broker::kafka(KafkaOptions {
            nodes: 3,
            ..KafkaOptions::default()
        })
    }

    /// A Kafka cluster as [`Broker::kafka`] makes, with its ports reserved, not started.
    pub fn kafka_not_started(options: KafkaOptions) -> Broker {
        let nodes = options.nodes.max(1);
        let ports: Vec<u16> = (0..2 * (nodes + options.controllers))
            .map(|_| free_port())
            .collect();
        let bootstrap = ports
            .iter()
            .step_by(2)
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        Broker::from_kind(Kind::Kafka(KafkaCluster {
            dir: None,
            bootstrap,
            ports,
            options: KafkaOptions { nodes, ..options },
            started: false,
        }))
    }

    /// A broker whose data survives `stop` and `restart`: Kafka's always does; with Tansu,
    /// one with SQLite storage in `workdir`, from `KVSTORE_TEST_TANSU_SQLITE`.
    pub fn persistent_not_started(workdir: &Path) -> Broker {
        match Flavor::chosen() {
            Flavor::Kafka => Broker::kafka_not_started(KafkaOptions::default()),
            Flavor::Tansu => {
                let binary = match std::env::var_os("KVSTORE_TEST_TANSU_SQLITE") {
                    Some(path) => PathBuf::from(path),
                    None => panic!(
                        "KVSTORE_TEST_TANSU_SQLITE is not set: scripts/tansu.sh sqlite builds it"
                    ),
                };
                Broker::tansu_not_started(binary, "sqlite://tansu.db".into(), workdir.into())
            }
        }
    }

    fn tansu_not_started(binary: PathBuf, storage: String, workdir: PathBuf) -> Broker {
        Broker::from_kind(Kind::Tansu(Tansu {
            child: None,
            port: free_port(),
            storage,
            workdir,
            binary,
            advertised: None,
            args: Vec::new(),
            stop_with_this_process: false,
        }))
    }

    fn from_kind(kind: Kind) -> Broker {
        Broker {
            kind,
            producer: OnceLock::new(),
        }
    }

    /// Which broker this is.
    pub fn flavor(&self) -> Flavor {
        match self.kind {
            Kind::Kafka(_) => Flavor::Kafka,
            Kind::Tansu(_) => Flavor::Tansu,
        }
    }

    /// From the next `restart` on, advertises `address` (`host:port`) to clients instead of
    /// the broker's own, as a broker behind a proxy must: clients then make every connection
    /// after the first through the proxy too. Single-node brokers only.
    pub fn advertise(&mut self, address: &str) {
        match &mut self.kind {
            Kind::Kafka(cluster) => {
                let listener = if cluster.options.scram_users.is_empty() {
                    "PLAINTEXT"
                } else {
                    "SASL_PLAINTEXT"
                };
                cluster
                    .options
                    .settings
                    .push(format!("advertised.listeners={listener}://{address}"));
            }
            Kind::Tansu(tansu) => tansu.advertised = Some(address.to_owned()),
        }
    }

    /// Bootstrap servers for clients (`host:port,...`).
    pub fn address(&self) -> String {
        match &self.kind {
            Kind::Kafka(cluster) => cluster.bootstrap.clone(),
            Kind::Tansu(tansu) => format!("127.0.0.1:{}", tansu.port),
        }
    }

    /// Stops the broker (every node of a cluster; SIGKILL, as a crash would).
    pub fn stop(&mut self) {
        match &mut self.kind {
            Kind::Kafka(cluster) => {
                if let Some(dir) = cluster.dir.as_ref().filter(|_| cluster.started) {
                    let dir = dir.path().to_string_lossy().into_owned();
                    for node in 1..=cluster.options.nodes + cluster.options.controllers {
                        kafka_sh(&["kill", &dir, &node.to_string()]);
                    }
                }
            }
            Kind::Tansu(tansu) => tansu.stop(),
        }
    }

    /// Starts the broker: the first time, a new one; after `stop`, the same one again on the
    /// same ports (Kafka and SQLite Tansu with their data).
    pub fn restart(&mut self) {
        match &mut self.kind {
            Kind::Kafka(cluster) => cluster.restart(),
            Kind::Tansu(tansu) => tansu.restart(),
        }
    }

    /// SIGKILLs node `node` (1-based) of a Kafka cluster.
    pub fn kill_node(&self, node: usize) {
        let dir = self.cluster_dir();
        kafka_sh(&["kill", &dir, &node.to_string()]);
    }

    /// Starts node `node` of a Kafka cluster again, with its data, and waits until it serves.
    pub fn restart_node(&self, node: usize) {
        let dir = self.cluster_dir();
        kafka_sh(&["restart", &dir, &node.to_string()]);
    }

    fn cluster_dir(&self) -> String {
        match &self.kind {
            Kind::Kafka(KafkaCluster { dir: Some(dir), .. }) => {
                dir.path().to_string_lossy().into_owned()
            }
            _ => panic!("only a dedicated Kafka cluster has nodes to kill"),
        }
    }

    /// Creates a SCRAM user on a Tansu broker with `tansu user create`; `mechanism` is
    /// `scram256` or `scram512`. The broker must not require authentication yet: Tansu refuses
    /// this request from a client that has not authenticated.
    pub fn create_tansu_user(&self, mechanism: &str, name: &str, password: &str) {
        let Kind::Tansu(tansu) = &self.kind else {
            panic!("Kafka's SCRAM users are made with KafkaOptions::scram_users");
        };
        let output = Command::new(&tansu.binary)
            .args(["user", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", tansu.port))
            .args(["--mechanism", mechanism, name, password])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", tansu.binary.display()));
        assert!(
            output.status.success(),
            "tansu user create {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// From the next `restart` on, also passes `args` to `tansu broker`.
    pub fn add_tansu_args(&mut self, args: &[&str]) {
        let Kind::Tansu(tansu) = &mut self.kind else {
            panic!("not a Tansu broker");
        };
        tansu.args.extend(args.iter().map(|&arg| arg.to_owned()));
    }

    /// An admin client for this broker.
    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.client_config().create().expect("admin client")
    }

    /// A plain producer, as any other Kafka application would use; one per broker.
    pub fn producer(&self) -> &FutureProducer {
        self.producer.get_or_init(|| {
            self.client_config()
                .set("enable.idempotence", "true")
                .set("linger.ms", "0")
                .create()
                .expect("producer")
        })
    }

    /// Client settings for this broker.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.address())
            .set("allow.auto.create.topics", "false");
        config
    }

    /// Creates a compacted topic with `partitions` partitions.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]).await;
    }

    /// Creates a compacted topic with `partitions` partitions and these topic settings.
    pub async fn create_topic_with(&self, name: &str, partitions: i32, settings: &[(&str, &str)]) {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact");
        if self.flavor() == Flavor::Tansu {
            // Tansu 0.6 refuses -1 (the broker's default) as a replication factor.
            topic.replication = TopicReplication::Fixed(1);
        }
        for (key, value) in settings {
            topic = topic.set(key, value);
        }
        let results = self
            .admin()
            .create_topics([&topic], &AdminOptions::new())
            .await
            .expect("create topics");
        for result in results {
            result.expect("topic created");
        }
    }

    /// The node id of the leader of partition 0 of `topic` (-1 while it has none), as the
    /// cluster's metadata says.
    pub fn leader(&self, topic: &str) -> i32 {
        let metadata = self
            .admin()
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .and_then(|t| t.partitions().first().map(|p| p.leader()))
            .unwrap_or(-1)
    }

    /// Whether the broker's metadata lists `name`.
    pub fn has_topic(&self, name: &str) -> bool {
        let metadata = self
            .admin()
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata");
        metadata.topics().iter().any(|t| t.name() == name)
    }

    /// Produces a record with a plain Kafka producer; `None` writes a tombstone.
    pub async fn produce(&self, topic: &str, key: &[u8], value: Option<&[u8]>) -> i64 {
        self.produce_with_headers(topic, key, value, &[]).await
    }

    /// Produces a record with these headers (name, value) with a plain Kafka producer.
    pub async fn produce_with_headers(
        &self,
        topic: &str,
        key: &[u8],
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> i64 {
        let producer = self.producer();
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        if !headers.is_empty() {
            let owned = headers
                .iter()
                .fold(OwnedHeaders::new(), |all, (name, value)| {
                    all.insert(Header {
                        key: name,
                        value: Some(*value),
                    })
                });
            record = record.headers(owned);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produced")
            .offset
    }

    /// Every record of partition 0 of `topic` from its start to its end, as a bare consumer
    /// sees it: (offset, key, value, content-type header).
    pub fn read_all(&self, topic: &str) -> Vec<LogRecord> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", "kvstore-tests")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()
            .expect("consumer");
        let (_, end) = consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(10))
            .expect("watermarks");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Beginning)
            .expect("partition");
        consumer.assign(&assignment).expect("assigned");
        let mut records = Vec::new();
        let mut last_error = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "{topic} not read to its end; the last error: {last_error:?}"
            );
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let content_type = message.headers().and_then(|headers| {
                        headers
                            .iter()
                            .find(|h| h.key == "content-type")
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    });
                    records.push(LogRecord {
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        value: message.payload().map(<[u8]>::to_vec),
                        content_type,
                    });
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                    let position = consumer
                        .position()
                        .ok()
                        .and_then(|list| list.find_partition(topic, 0)?.offset().to_raw());
                    if position.is_some_and(|p| p >= end) {
                        return records;
                    }
                }
                // Errors the client recovers from by itself, such as a connection to a broker
                // a test has killed; the deadline bounds them.
                Some(Err(error)) => last_error = Some(error),
                None => {}
            }
        }
    }
}

/// A record as a bare consumer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Its content-type header.
    pub content_type: Option<String>,
}
