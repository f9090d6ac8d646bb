//! The command line of `kvstore get|put|delete|range|batch|topics|watch`.

use std::path::PathBuf;
use std::time::Duration;

use super::security::SecurityArgs;

/// Where the server is when neither `--url` nor `KVSTORE_URL` says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Said under every client command's `--help`.
const EXIT_STATUS_HELP: &str = "Exit status: 0 done, 1 no such key or topic, 2 bad usage or \
                                input, 3 server unreachable or failing (retrying may help), 4 \
                                request rejected as invalid, 5 token refused (401, 403) or \
                                server certificate not trusted, 6 a condition (--if-match, \
                                --if-absent, an atomic batch's) did not hold.";

/// The client commands, each a subcommand of `kvstore`.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Print a key's value to stdout, as stored (--json: value, content type and offset).
    #[command(after_help = EXIT_STATUS_HELP)]
    Get(GetArgs),
    /// Write a value from an argument, a file or stdin; prints the write's offset.
    #[command(after_help = EXIT_STATUS_HELP)]
    Put(PutArgs),
    /// Delete a key (deleting an absent key is not an error); prints the write's offset.
    #[command(after_help = EXIT_STATUS_HELP)]
    Delete(DeleteArgs),
    /// List keys in order as `key<TAB>value` lines, following pages to the end.
    #[command(after_help = EXIT_STATUS_HELP)]
    Range(RangeArgs),
    /// Apply puts and deletes given as JSON (from an argument, a file or stdin); prints the
    /// last offset.
    #[command(after_help = EXIT_STATUS_HELP)]
    Batch(BatchArgs),
    /// List the topics the server serves, with keys, bytes, offsets and lag.
    #[command(after_help = EXIT_STATUS_HELP)]
    Topics(TopicsArgs),
    /// Follow a topic's changes as JSON lines, one event a line, resuming by itself after a
    /// dropped connection.
    #[command(after_help = EXIT_STATUS_HELP)]
    Watch(WatchArgs),
}

/// Options of every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// Base URL of the kvstore server.
    #[arg(long, env = "KVSTORE_URL", value_name = "URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// How long to wait for each answer, e.g. `10s`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "60s")]
    pub timeout: Duration,
    /// Print JSON instead of plain output.
    #[arg(long)]
    pub json: bool,
    /// The CA to trust and the bearer token to send.
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// How fresh a read must be: `min_offset`, `consistency=strong` and `wait` of the HTTP API.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Freshness {
    /// Answer only once the server has applied the write at this offset (what a write
    /// printed), waiting for it if need be.
    #[arg(long, value_name = "OFFSET")]
    pub min_offset: Option<u64>,
    /// Answer only once the server has applied every write acknowledged before the read.
    #[arg(long)]
    pub strong: bool,
    /// How long the server may wait for that, e.g. `2s` [default: the server's, 5s].
    #[arg(long, value_name = "DURATION")]
    pub wait: Option<String>,
}

/// The conditions of `put` and `delete`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Conditions {
    /// Write only if the key's version is this (the offset a read or write printed; `*`:
    /// only if the key exists). Sent as `If-Match`.
    #[arg(long, value_name = "VERSION")]
    pub if_match: Option<String>,
    /// Write only if the key does not exist. Sent as `If-None-Match: *`.
    #[arg(long, conflicts_with = "if_match")]
    pub if_absent: bool,
}

/// `kvstore get TOPIC KEY`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The topic (namespace).
    pub topic: String,
    /// The key.
    pub key: String,
    /// How fresh the value must be.
    #[command(flatten)]
    pub freshness: Freshness,
    /// The server, the timeout and the output format.
    #[command(flatten)]
    pub connection: Connection,
}

/// `kvstore put TOPIC KEY [VALUE]`.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// The topic (namespace); created on its first write if the server allows it.
    pub topic: String,
    /// The key.
    pub key: String,
    /// The value; `-` reads it from stdin.
    #[arg(required_unless_present = "file", allow_hyphen_values = true)]
    pub value: Option<String>,
    /// Read the value from this file (`-`: stdin).
    #[arg(long, short, value_name = "FILE", conflicts_with = "value")]
    pub file: Option<PathBuf>,
    /// The value's content type [default: the server's, application/octet-stream].
    #[arg(long, short = 't', value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Write only if a condition holds.
    #[command(flatten)]
    pub conditions: Conditions,
    /// The server, the timeout and the output format.
    #[command(flatten)]
    pub connection: Connection,
}

/// `kvstore delete TOPIC KEY`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The topic (namespace).
    pub topic: String,
    /// The key.
    pub key: String,
    /// Delete only if a condition holds.
    #[command(flatten)]
    pub conditions: Conditions,
    /// The server, the timeout and the output format.
    #[command(flatten)]
    pub connection: Connection,
}

/// Which keys a range or a watch covers.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// Only keys that begin with this.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Only keys at or after this (inclusive).
    #[arg(long)]
    pub start: Option<String>,
    /// Only keys before this (exclusive).
    #[arg(long)]
    pub end: Option<String>,
}

/// `kvstore range TOPIC`.
#[derive(Debug, clap::Args)]
pub struct RangeArgs {
    /// The topic (namespace).
    pub topic: String,
    /// Which keys.
    #[command(flatten)]
    pub keys: KeysArgs,
    /// Stop after this many keys in all [default: every key in the range].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Keys asked for per request [default: the server's, 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub page_size: Option<u64>,
    /// Continue after a previous listing (its `next_cursor`, printed with --json and --limit).
    #[arg(long)]
    pub cursor: Option<String>,
    /// How fresh the listing must be.
    #[command(flatten)]
    pub freshness: Freshness,
    /// The server, the timeout and the output format.
    #[command(flatten)]
    pub connection: Connection,
}

/// `kvstore batch TOPIC [OPS]`.
#[derive(Debug, clap::Args)]
pub struct BatchArgs {
    /// The topic (namespace).
    pub topic: String,
    /// The operations as JSON: `{"ops": [...]}`, an array of operations, or one operation
    /// per line; `-` reads them from stdin. An operation is `{"op": "put", "key": ...,
    /// "value": ...}` or `{"op": "delete", "key": ...}`, as in the HTTP API.
    #[arg(required_unless_present = "file", allow_hyphen_values = true)]
    pub ops: Option<String>,
    /// Read the operations from this file (`-`: stdin).
    #[arg(long, short, value_name = "FILE", conflicts_with = "ops")]
    pub file: Option<PathBuf>,
    /// All or nothing: every operation takes effect or none does; operations may then carry
    /// `if_version` or `if_absent`, and `{"checks": [...]}` input states conditions on other
    /// keys.
    #[arg(long)]
    pub atomic: bool,
    /// The server, the timeout and the output format.
    #[command(flatten)]
    pub connection: Connection,
}

/// `kvstore topics`.
#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
    /// The server, the timeout and the output format.
    #[command(flatten)]
    pub connection: Connection,
}

/// `kvstore watch TOPIC`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The topic (namespace).
    pub topic: String,
    /// Which keys.
    #[command(flatten)]
    pub keys: KeysArgs,
    /// Continue strictly after this offset (the `id` of the last event seen) [default: the
    /// changes from now on].
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        conflicts_with = "snapshot"
    )]
    pub from: Option<i64>,
    /// First print the current keys as `put` events, then `synced`, then the changes.
    #[arg(long)]
    pub snapshot: bool,
    /// Base URL of the kvstore server.
    #[arg(long, env = "KVSTORE_URL", value_name = "URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// How long the server may send nothing before the connection is taken for dead and
    /// made again (the server sends something every 15 s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,
    /// The CA to trust and the bearer token to send.
    #[command(flatten)]
    pub security: SecurityArgs,
}
