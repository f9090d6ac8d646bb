//! Black-box tests: real `kvstore` processes over HTTP against a real Kafka-compatible broker.

mod common;

mod batch;
mod browser;
mod clients;
mod cluster;
mod compaction;
mod consistency;
mod faults;
mod fuzz;
mod history;
mod hostile;
mod in_process;
mod kafka_security;
mod keys;
mod linearizability;
mod model;
mod network;
mod operations;
mod range;
mod reference;
mod replication;
mod sdk;
mod security;
mod tls;
mod topics;
mod watch;
