//! The `kvstore` command: parses the command line, loads the configuration, sets up logging
//! and metrics, and runs the service; or hands a client, `openapi` or `bench` command to the
//! library. No logic of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kvstore::config::{Config, LogFormat, Overrides};
use tracing_subscriber::EnvFilter;

/// A key-value store with an HTTP API whose source of truth is Kafka.
#[derive(Debug, Parser)]
#[command(name = "kvstore", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    #[command(flatten)]
    Client(kvstore::client::ClientCommand),
    /// Print the OpenAPI document (as served at /openapi.json) to stdout.
    Openapi,
    /// Measure kvstore (or etcd) over HTTP, or the Kafka floors beneath it.
    Bench(kvstore::bench::BenchArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML). Default: kvstore.toml in the working directory, if present.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [config: listen; env: KVSTORE_LISTEN].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Kafka bootstrap servers, comma-separated [config: brokers; env: KVSTORE_BROKERS].
    #[arg(long, value_name = "HOST:PORT,...")]
    brokers: Option<String>,
    /// Log format [config: log_format; env: KVSTORE_LOG_FORMAT].
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter such as `info` or `kvstore=debug` [config: log_level; env: KVSTORE_LOG_LEVEL].
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    // Test builds read fault-injection points from FAILPOINTS.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // What went wrong and why, on one line: no backtrace, whatever RUST_BACKTRACE
            // says (that is for panics).
            eprintln!("kvstore: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args).map(|()| ExitCode::SUCCESS),
        Command::Client(command) => Ok(kvstore::client::run(command)),
        Command::Openapi => {
            let json = serde_json::to_string_pretty(&kvstore::http::openapi())?;
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            kvstore::bench::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        brokers: args.brokers,
        log_format: args.log_format,
        log_level: args.log_level,
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    init_tracing(&config);
    let metrics = kvstore::metrics::install().context("installing the metrics recorder")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        kvstore::app::run(config, listener, Some(metrics), shutdown_signal()).await?;
        anyhow::Ok(())
    });
    // A Kafka call still blocking a thread (the broker may be away) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

fn init_tracing(config: &Config) {
    // RUST_LOG, when set, overrides the configured filter.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    // A closed stdout (say, piped into a pager that quit) must not make logging panic: that
    // would kill whichever task or thread logged, shutdown included.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours for a person at a terminal, none in a file or a log collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .log_internal_errors(false);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
