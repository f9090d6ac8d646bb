//! Tansu, the second Kafka-compatible broker of the tests (`KVSTORE_TEST_BROKER=tansu`): a
//! process of its own per broker, from `KVSTORE_TEST_TANSU` (or `KVSTORE_TEST_TANSU_SQLITE`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for_port;

/// One Tansu broker process, killed on drop.
pub(super) struct Tansu {
    /// The process, while it runs.
    pub(super) child: Option<Child>,
    /// Its client port, kept across restarts.
    pub(super) port: u16,
    /// Its `--storage-engine` URL.
    pub(super) storage: String,
    /// Where it runs (SQLite storage keeps its file there).
    pub(super) workdir: PathBuf,
    /// The `tansu` binary.
    pub(super) binary: PathBuf,
    /// What the broker advertises to clients (`host:port`) when not its own address.
    pub(super) advertised: Option<String>,
    /// Extra `tansu broker` arguments, such as `--authentication`.
    pub(super) args: Vec<String>,
    /// Whether a watcher stops the broker once this process has gone (for the shared one).
    pub(super) stop_with_this_process: bool,
}

/// The in-memory Tansu binary, from `KVSTORE_TEST_TANSU`.
pub(super) fn tansu_binary() -> PathBuf {
    match std::env::var_os("KVSTORE_TEST_TANSU") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "KVSTORE_TEST_TANSU is not set: KVSTORE_TEST_BROKER=tansu needs the Tansu broker \
             (`make test-tansu` installs it and sets the variable)"
        ),
    }
}

impl Tansu {
    pub(super) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(super) fn restart(&mut self) {
        self.stop();
        let address = format!("127.0.0.1:{}", self.port);
        let advertised = format!("tcp://{}", self.advertised.as_deref().unwrap_or(&address));
        let mut command = Command::new(&self.binary);
        if self.stop_with_this_process {
            // A shell runs the broker and kills it once the test binary has exited.
            command = Command::new("bash");
            command
                .arg("-c")
                .arg(
                    r#""$@" & broker=$!
                    while kill -0 "$OWNER" 2>/dev/null && kill -0 "$broker" 2>/dev/null; do
                      sleep 1
                    done
                    kill "$broker" 2>/dev/null"#,
                )
                .arg("tansu")
                .arg(&self.binary)
                .env("OWNER", std::process::id().to_string());
        }
        let child = command
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://{address}"))
            .arg("--advertised-listener-url")
            .arg(advertised)
            .arg("--storage-engine")
            .arg(&self.storage)
            .args(&self.args)
            .current_dir(&self.workdir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20));
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}
