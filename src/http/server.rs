//! The connection loop: accepts TCP connections and serves HTTP/1.1 and HTTP/2 on them, over
//! TLS when configured, with a deadline for the TLS handshake and for reading request headers
//! (so slow clients cannot hold connections open) and a graceful stop that lets requests in
//! flight finish.

use std::io;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How the server treats connections.
#[derive(Clone)]
pub struct ServerSettings {
    /// How long a client may take to send a request's headers before the connection is
    /// closed; also how long it may take to complete the TLS handshake.
    pub header_read_timeout: Duration,
    /// TLS handshakes, when the listener speaks HTTPS.
    pub tls: Option<TlsAcceptor>,
}

/// Serves `router` on `listener` until `stop` fires, then stops accepting and waits for the
/// connections to finish their requests in flight. Bound that wait from outside.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServerSettings,
    stop: CancellationToken,
) -> io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: pass, rather than spin or stop.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let Some(tls) = settings.tls.clone() else {
            tokio::spawn(serve_connection(builder, watcher, stream, service));
            continue;
        };
        let handshake_timeout = settings.header_read_timeout;
        tokio::spawn(async move {
            // In the connection's own task, so a slow handshake holds up no one else; and
            // bounded, so a client that connects and says nothing is dropped.
            match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(builder, watcher, stream, service).await,
                Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Serves HTTP on one connection until it closes, or until a graceful stop lets it finish.
async fn serve_connection<S>(
    builder: Builder<TokioExecutor>,
    watcher: Watcher,
    stream: S,
    service: TowerToHyperService<Router>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(error) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}
