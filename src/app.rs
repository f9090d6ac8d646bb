//! The running service: its shared state, and the order of startup and shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Auth, AuthSetupError};
use crate::config::Config;
use crate::http;
use crate::kafka::{self, Kafka};
use crate::log::Log;
use crate::topics::Topics;
use crate::watch::Watchers;
use crate::writer::Writer;

/// How long shutdown waits for the producer to send what it has queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the metrics recorder drops stale histogram samples.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What every handler can reach. Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    /// The configuration the service started with.
    pub config: Arc<Config>,
    /// The log the service writes to, and what is known of its brokers.
    pub log: Arc<dyn Log>,
    /// The attached topics.
    pub topics: Topics,
    /// The write path.
    pub writer: Writer,
    /// The Prometheus recorder, when metrics are enabled.
    pub metrics: Option<PrometheusHandle>,
    /// The token check.
    pub auth: Arc<Auth>,
    /// The open change streams: their limit, and their end at shutdown.
    pub watchers: Watchers,
}

/// Why the service could not start or stopped with an error. The cause is the error's
/// `source`, printed after it, not repeated in its message.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The Kafka clients could not be created (invalid librdkafka configuration).
    #[error("cannot create Kafka clients")]
    Kafka(#[from] kafka::ClientsNotCreated),
    /// The HTTP server failed.
    #[error("HTTP server error")]
    Io(#[from] std::io::Error),
    /// The auth tokens could not be loaded.
    #[error("cannot load auth tokens")]
    Auth(#[from] AuthSetupError),
    /// The TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] http::tls::TlsError),
}

/// Serves the API on `listener` until `shutdown` completes, then stops in order: stop
/// accepting and finish in-flight requests (bounded by `shutdown_timeout`), stop the replay
/// loops, and flush the producer.
pub async fn run(
    mut config: Config,
    listener: TcpListener,
    metrics: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    // The port actually bound, which `listen` may leave to the system (port 0).
    let port = listener.local_addr()?.port();
    let transactional_id = config.consistency.transactional_id_or_default(port);
    config.consistency.transactional_id = Some(transactional_id);
    let config = Arc::new(config);
    let auth = Arc::new(Auth::from_config(&config)?);
    // Before anything else, so that a certificate that cannot be used stops the service
    // before it starts any work.
    let certificates = match config.http.tls.files() {
        Some((cert_file, key_file)) => Some(http::tls::Certificates::load(cert_file, key_file)?),
        None => None,
    };
    let kafka = Kafka::new(config.clone())?;
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let log: Arc<dyn Log> = Arc::new(kafka.clone());
    let topics = Topics::new(log.clone(), config.clone(), tracker.clone(), cancel.clone());
    let writer = Writer::new(
        log.clone(),
        config.limits.max_pending_writes,
        config.write_timeout,
    );
    // Fires when shutdown begins: the listener stops and every watch stream ends, so that
    // the requests in flight can finish.
    let stop_http = CancellationToken::new();
    let state = AppState {
        config: config.clone(),
        log,
        topics: topics.clone(),
        writer,
        metrics: metrics.clone(),
        auth: auth.clone(),
        watchers: Watchers::new(&config.watch, stop_http.clone()),
    };

    tracker.spawn({
        let kafka = kafka.clone();
        let cancel = cancel.clone();
        async move { kafka.probe_broker(cancel).await }
    });
    // Now rather than at the first conditional write: this aborts the transactions a previous
    // run of this replica left open, which hold up every replica's reads until they end.
    tracker.spawn({
        let kafka = kafka.clone();
        let cancel = cancel.clone();
        async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = kafka.prepare_transactions() => {}
            }
        }
    });
    if let Some(handle) = metrics {
        let cancel = cancel.clone();
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(METRICS_UPKEEP_INTERVAL) => handle.run_upkeep(),
                }
            }
        });
    }
    topics.preload();

    let tls = match &certificates {
        Some(certificates) => {
            certificates.spawn_reloader(&tracker, cancel.clone())?;
            Some(certificates.acceptor()?)
        }
        None => None,
    };
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%address, scheme, brokers = %config.brokers, "listening");
    if auth.is_enabled() {
        tracing::info!(tokens = config.auth.tokens.len(), "bearer tokens required");
        tracker.spawn(reload_tokens_on_hangup(auth, cancel.clone()));
    } else if !address.ip().is_loopback() {
        tracing::warn!(
            %address,
            "authentication is OFF on a non-loopback address: anyone who can reach it can read \
             and overwrite every topic; configure auth.tokens, or listen on 127.0.0.1"
        );
    }
    tokio::spawn({
        let stop_http = stop_http.clone();
        async move {
            shutdown.await;
            stop_http.cancel();
            tracing::info!("shutting down: no new connections, finishing requests in flight");
        }
    });
    let settings = http::server::ServerSettings {
        header_read_timeout: config.http.header_read_timeout,
        tls,
    };
    let server = http::server::serve(listener, http::router(state), settings, stop_http.clone());
    let grace = async {
        stop_http.cancelled().await;
        tokio::time::sleep(config.shutdown_timeout).await;
    };
    tokio::select! {
        served = server => served?,
        () = grace => tracing::warn!("requests still in flight after the shutdown timeout; stopping anyway"),
    }

    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(config.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within the shutdown timeout");
    }
    let flushing = kafka.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush(FLUSH_TIMEOUT)).await;
    tracing::info!("stopped");
    Ok(())
}

/// Reads the tokens' secrets again on SIGHUP, so that a token can be rotated without a
/// restart. A failed reload keeps the tokens in use.
async fn reload_tokens_on_hangup(auth: Arc<Auth>, cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; tokens reload only on restart");
            return;
        };
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                received = hangups.recv() => if received.is_none() { return },
            }
            match auth.reload() {
                Ok(tokens) => tracing::info!(tokens, "auth tokens reloaded"),
                Err(error) => {
                    tracing::error!(%error, "auth tokens not reloaded; the previous ones stay in use");
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (auth, cancel);
    }
}
