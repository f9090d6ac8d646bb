//! Black-box tests: real `kvstore` processes over HTTP against a real Kafka-compatible broker.

mod common;

mod batch;
mod clients;
mod faults;
mod fuzz;
mod history;
mod hostile;
mod keys;
mod model;
mod operations;
mod range;
mod replication;
mod sdk;
mod security;
mod tls;
mod topics;
