//! The `kvstore get|put|delete|range|batch|topics|watch` commands: a client of a kvstore server
//! over HTTP, like `etcdctl` or `consul kv`.
//!
//! Output is made for pipes: `get` writes the raw value, `range` one `key<TAB>value` line per
//! key, the writes their offset; `--json` prints JSON instead. Errors go to stderr and set the
//! exit status ([`error::ClientError::exit_code`]).
//!
//! - [`args`]: the command line of each command.
//! - [`commands`]: what each command does.
//! - [`http`]: requests to the server and the errors its answers become.
//! - [`input`]: values and batches from arguments, files and stdin.
//! - [`output`]: writing to stdout, and values as text fields.
//! - [`security`]: the CA to trust for https:// and the bearer token, also used by `bench`.
//! - [`watch`]: `kvstore watch`, a change stream read as JSON lines, resumed after drops.
//! - [`error`]: what can go wrong, and the exit status for each.

pub mod args;
pub mod commands;
pub mod error;
pub mod http;
pub mod input;
pub mod output;
pub mod security;
pub mod watch;

use std::process::ExitCode;

pub use args::ClientCommand;
pub use error::ClientError;

/// Runs a client command; errors are printed on stderr and turned into the exit status.
pub fn run(command: ClientCommand) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Usage(format!("starting the async runtime: {e}")))
        .and_then(|runtime| runtime.block_on(commands::execute(command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`kvstore range t | head`): nothing more to say.
        Err(ClientError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
