//! Apache Kafka clusters for the tests, started, killed and restarted through the project's
//! launcher, `scripts/kafka.sh`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::broker::KafkaOptions;
use super::repo_path;

/// A Kafka cluster in a folder of its own, or the one `make test` started (no folder then);
/// SIGKILLed on drop, each node's log tail printed first if the test is failing.
pub(super) struct KafkaCluster {
    /// The cluster's folder, when this process started it.
    pub(super) dir: Option<tempfile::TempDir>,
    /// Its brokers' addresses, comma-separated.
    pub(super) bootstrap: String,
    /// The ports it listens on, two a node (clients, controller).
    pub(super) ports: Vec<u16>,
    /// How it is set up.
    pub(super) options: KafkaOptions,
    /// Whether it was started (the ports are reserved before).
    pub(super) started: bool,
}

pub(super) fn kafka_script() -> PathBuf {
    repo_path("scripts/kafka.sh")
}

/// Runs `scripts/kafka.sh` with `args`; its standard output, or a panic with what it said.
pub(super) fn kafka_sh(args: &[&str]) -> String {
    let output = Command::new(kafka_script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running scripts/kafka.sh: {e}"));
    assert!(
        output.status.success(),
        "scripts/kafka.sh {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

impl KafkaCluster {
    pub(super) fn restart(&mut self) {
        if self.started {
            let dir = self
                .dir
                .as_ref()
                .expect("the shared broker is never restarted")
                .path()
                .to_string_lossy()
                .into_owned();
            kafka_sh(&["restart", &dir]);
            return;
        }
        let dir = tempfile::Builder::new()
            .prefix("kvstore-kafka-")
            .tempdir()
            .expect("temp dir");
        let ports = self
            .ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let owner = std::process::id().to_string();
        let nodes = self.options.nodes.to_string();
        let controllers = self.options.controllers.to_string();
        let mut args = vec![
            "start".to_owned(),
            dir.path().to_string_lossy().into_owned(),
            "--nodes".into(),
            nodes,
            "--controllers".into(),
            controllers,
            "--ports".into(),
            ports,
            "--owner".into(),
            owner,
        ];
        if !self.options.scram_users.is_empty() {
            let client = self.ports[0];
            // Clients authenticate with SCRAM on the client listener; brokers too, as `kv`.
            let (user, password) = self.options.scram_users[0]
                .split_once(':')
                .expect("name:password");
            for setting in [
                format!(
                    "listeners=SASL_PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{}",
                    self.ports[1]
                ),
                format!("advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{client}"),
                "inter.broker.listener.name=SASL_PLAINTEXT".into(),
                "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512".into(),
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512".into(),
            ] {
                args.push("--set".into());
                args.push(setting);
            }
            // Each enabled mechanism needs a login on the listener (the broker's own, for
            // SHA-512 between brokers).
            for mechanism in ["scram-sha-256", "scram-sha-512"] {
                let setting = format!(
                    "listener.name.sasl_plaintext.{mechanism}.sasl.jaas.config=\
                     org.apache.kafka.common.security.scram.ScramLoginModule required \
                     username=\"{user}\" password=\"{password}\";"
                );
                args.push("--set".into());
                args.push(setting);
            }
            for user in &self.options.scram_users {
                args.push("--scram".into());
                args.push(user.clone());
            }
        }
        for setting in &self.options.settings {
            args.push("--set".into());
            args.push(setting.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kafka_sh(&args);
        self.dir = Some(dir);
        self.started = true;
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            if std::thread::panicking() {
                for node in 1..=self.options.nodes + self.options.controllers {
                    let log = dir.path().join(format!("node-{node}/broker.log"));
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(30).collect();
                    eprintln!("--- {} (last 30 lines) ---", log.display());
                    for line in tail.into_iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
            let _ = Command::new(kafka_script())
                .arg("stop")
                .arg(dir.path())
                .env("KAFKA_STOP_SIGNAL", "KILL")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
