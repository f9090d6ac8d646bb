//! HTTPS on the listener: the certificate chain and private key read from PEM files, the
//! rustls configuration that serves them, and reloading them on SIGHUP or when the files
//! change, without a restart and without dropping connections.
//!
//! A reload that fails (a missing file, a half-written one, a key that does not fit the
//! certificate) is logged and changes nothing: the certificate in use stays in use.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the files' modification times are checked. Certificate renewers (cert-manager,
/// certbot) replace the files without telling kvstore, and Kubernetes updates a mounted
/// Secret a minute or so after it changes, so a few seconds' delay costs nothing while
/// polling stays negligible.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// The protocols offered in ALPN, preferred first.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read TLS {what} file {}: {source}", path.display())]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("TLS {what} file {}: {problem}", path.display())]
    Parse {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The key is of a kind rustls cannot sign with, or does not belong to the certificate.
    #[error("TLS key file {} does not fit certificate file {}: {source}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// rustls refused the server configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificate and key files, and the certified key last read from them. Handed to
/// rustls as its certificate resolver, so a reload takes effect on the next handshake.
#[derive(Debug)]
pub struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    /// The key handshakes use. A std lock: held only to clone or swap the `Arc`, never
    /// across an `.await`.
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamp when first read, where watching for changes starts.
    loaded: Stamp,
}

/// When each file was last modified, and its length; `None` for a file that cannot be
/// looked at. A change in either means the files were replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp([Option<(SystemTime, u64)>; 2]);

impl Certificates {
    /// Reads `cert_file` (the certificate, then any intermediates) and `key_file` (its
    /// private key), both PEM.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Certificates>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Taken before reading, so a change made while reading is seen by the watcher.
        let loaded = Stamp::of(cert_file, key_file);
        let current = read_certified_key(cert_file, key_file, &provider)?;
        Ok(Arc::new(Certificates {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(current)),
            loaded,
        }))
    }

    /// An acceptor doing TLS 1.2 and 1.3 handshakes with the current certificate, offering
    /// HTTP/2 and HTTP/1.1.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Reads the files again; on success later handshakes use the new certificate, on
    /// failure the current one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = read_certified_key(&self.cert_file, &self.key_file, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(())
    }

    /// Reloads on SIGHUP and when the files change, until `cancel` fires. The signal handler
    /// is installed before this returns, so a SIGHUP sent once the service listens is never
    /// lost (nor does it kill the process, SIGHUP's default).
    pub fn spawn_reloader(
        self: &Arc<Self>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> io::Result<()> {
        self.spawn_reloader_polling(tracker, cancel, POLL_INTERVAL)
    }

    fn spawn_reloader_polling(
        self: &Arc<Self>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
        poll_interval: Duration,
    ) -> io::Result<()> {
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let certificates = self.clone();
        tracker.spawn(async move {
            let mut seen = certificates.loaded;
            let mut poll = tokio::time::interval(poll_interval);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let hangup = hangup.recv();
                #[cfg(not(unix))]
                let hangup = std::future::pending::<Option<()>>();
                let trigger = tokio::select! {
                    () = cancel.cancelled() => return,
                    signal = hangup => match signal {
                        Some(()) => "SIGHUP",
                        // No more signals: the runtime is going away.
                        None => return,
                    },
                    _ = poll.tick() => {
                        let now = certificates.stamp();
                        if now == seen {
                            continue;
                        }
                        "the files changed"
                    }
                };
                // Taken before reading, so a change made while reading is seen next time.
                seen = certificates.stamp();
                certificates.reload_logged(trigger);
            }
        });
        Ok(())
    }

    fn reload_logged(&self, trigger: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert_file = %self.cert_file.display(),
                key_file = %self.key_file.display(),
                trigger,
                "reloaded the TLS certificate"
            ),
            Err(error) => tracing::error!(
                %error,
                trigger,
                "cannot reload the TLS certificate; keeping the one in use"
            ),
        }
    }

    fn stamp(&self) -> Stamp {
        Stamp::of(&self.cert_file, &self.key_file)
    }
}

impl Stamp {
    fn of(cert_file: &Path, key_file: &Path) -> Stamp {
        let of = |path: &Path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        };
        Stamp([of(cert_file), of(key_file)])
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn read_certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let parse = |what, path: &Path, problem: String| TlsError::Parse {
        what,
        path: path.to_path_buf(),
        problem,
    };
    let chain = CertificateDer::pem_slice_iter(&read("certificate", cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse("certificate", cert_file, e.to_string()))?;
    if chain.is_empty() {
        return Err(parse(
            "certificate",
            cert_file,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("key", key_file)?).map_err(|e| {
        let problem = match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)".to_owned()
            }
            other => other.to_string(),
        };
        parse("key", key_file, problem)
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Mismatch {
        cert: cert_file.to_path_buf(),
        key: key_file.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        cert: String,
        key: String,
    }

    fn self_signed(name: &str) -> Pair {
        let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()])
            .expect("certificate generated");
        Pair {
            cert: certified.cert.pem(),
            key: certified.signing_key.serialize_pem(),
        }
    }

    fn write(dir: &Path, pair: &Pair) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, &pair.cert).expect("cert written");
        std::fs::write(&key, &pair.key).expect("key written");
        (cert, key)
    }

    fn served(certificates: &Certificates) -> Vec<u8> {
        let current = certificates
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        current.cert[0].to_vec()
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = write(dir.path(), &self_signed("a.test"));
        let missing = dir.path().join("missing.pem");

        let error = Certificates::load(&missing, &key).expect_err("no cert file");
        assert!(matches!(error, TlsError::Read { .. }), "{error}");
        assert!(error.to_string().contains("missing.pem"), "{error}");

        // A key where the certificate should be, and the other way round.
        let error = Certificates::load(&key, &key).expect_err("no certificate");
        assert!(error.to_string().contains("tls.key"), "{error}");
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
        let error = Certificates::load(&cert, &cert).expect_err("no key");
        assert!(error.to_string().contains("no PEM private key"), "{error}");

        // A key that belongs to another certificate.
        let other = self_signed("b.test");
        std::fs::write(&key, &other.key).expect("key written");
        let error = Certificates::load(&cert, &key).expect_err("mismatch");
        assert!(matches!(error, TlsError::Mismatch { .. }), "{error}");
    }

    #[test]
    fn a_failed_reload_keeps_the_certificate_in_use() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = write(dir.path(), &self_signed("a.test"));
        let certificates = Certificates::load(&cert, &key).expect("loads");
        certificates.acceptor().expect("acceptor");
        let first = served(&certificates);

        std::fs::write(&cert, "not PEM").expect("cert written");
        assert!(certificates.reload().is_err());
        assert_eq!(served(&certificates), first);

        write(dir.path(), &self_signed("b.test"));
        certificates.reload().expect("reloads");
        assert_ne!(served(&certificates), first);
    }

    #[tokio::test]
    async fn changed_files_are_reloaded_without_a_signal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = write(dir.path(), &self_signed("a.test"));
        let certificates = Certificates::load(&cert, &key).expect("loads");
        let first = served(&certificates);
        let (tracker, cancel) = (TaskTracker::new(), CancellationToken::new());
        certificates
            .spawn_reloader_polling(&tracker, cancel.clone(), Duration::from_millis(20))
            .expect("spawned");

        write(dir.path(), &self_signed("another.test"));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while served(&certificates) == first {
            assert!(std::time::Instant::now() < deadline, "not reloaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[test]
    fn a_replaced_file_changes_the_stamp() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = write(dir.path(), &self_signed("a.test"));
        let certificates = Certificates::load(&cert, &key).expect("loads");
        let before = certificates.stamp();
        assert_eq!(certificates.stamp(), before);
        let pair = self_signed("longer-name.test");
        std::fs::write(&cert, &pair.cert).expect("cert written");
        assert_ne!(certificates.stamp(), before);
    }
}
