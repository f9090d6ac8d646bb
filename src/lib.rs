//! kvstore: a key-value store with an HTTP API whose source of truth is Kafka.
//!
//! Each topic is a single-partition, compacted Kafka topic. Every replica replays it into an
//! in-memory ordered map and serves reads from memory; a write is produced to Kafka and
//! answered once this replica has applied it.
//!
//! # Layout
//!
//! Data flows one way: HTTP handler -> [`writer`] (produce) -> [`kafka::replay`] -> [`store`]
//! -> waiting writer wakes -> handler answers. Reads go handler -> [`store`]. The store has a
//! second writer: [`writer`] applies its own acknowledged plain writes at once when nothing
//! unapplied precedes them, and the replay skips what is applied. Everything below [`http`]
//! knows the log only as the [`log::Log`] trait; [`kafka`] implements it and is the only
//! service module that uses rdkafka. `docs/ARCHITECTURE.md` follows a request through them.
//!
//! - [`config`]: the configuration and how its layers (defaults, file, env, flags) combine.
//! - [`app`]: the shared state and the order of startup and shutdown.
//! - [`http`]: the route list, one module per resource, the OpenAPI document, the connection loop
//!   and HTTPS.
//! - [`error`]: every client-visible error and its status code.
//! - [`auth`]: bearer tokens, their scopes, and the check each protected request passes.
//! - [`secret`]: secrets named by reference (a file or an environment variable).
//! - [`topics`]: the registry of served topics, attaching each on first use.
//! - [`topic`]: one attached topic: its store, its replay's progress, and the [`topic::ReplaySink`]
//!   through which the replay feeds it.
//! - [`writer`]: the write path, produce then wait for the local apply; conditional writes
//!   and atomic batches in a transaction, judged before it commits.
//! - [`condition`]: the conditions a write states on keys (`If-Match` and the like).
//! - [`watch`]: change streams: a watcher follows a topic's change log from a position, and
//!   the watchers of a replica share its limits and its shutdown.
//! - [`record`]: the records written (`Record`) and applied (`RecordRef`), their headers and
//!   batch marks; no rdkafka in them.
//! - [`store`]: the in-memory ordered map per topic and its log of recent changes; no I/O.
//! - [`log`]: the log as the rest of the service sees it: produce records, transactions, the
//!   last stable offset, topics to look up, create and replay, broker health.
//! - [`kafka`]: all rdkafka code of the service: clients, topic admin, producer, replay loop;
//!   implements [`log::Log`].
//! - [`metrics`]: the catalogue of metrics (names, kinds, units, help) and a function recording
//!   each, for every layer.
//! - [`memory`]: the allocator (mimalloc, for the C code too) and handing free memory back.
//! - [`topic_name`]: Kafka's rules for topic names, and patterns over them.
//! - [`client`]: `kvstore get|put|delete|range|batch|watch|topics`, a client of a server over
//!   HTTP; not used by the service.
//! - [`bench`](mod@bench): `kvstore bench`, the load generator and the Kafka floors; not used by the
//!   service.

pub mod app;
pub mod auth;
pub mod bench;
pub mod client;
pub mod condition;
pub mod config;
pub mod error;
pub mod http;
pub mod kafka;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod record;
pub mod secret;
pub mod store;
pub mod topic;
pub mod topic_name;
pub mod topics;
pub mod watch;
pub mod writer;
