//! What a client needs to talk to a server that uses HTTPS or bearer tokens: a CA to trust
//! besides the built-in roots, and the token sent with every request. Shared by the client
//! commands and `kvstore bench`.

use std::path::{Path, PathBuf};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The environment variable a bearer token is read from when no token file is given. There
/// is no flag for the token itself: a command line is visible to every user of the machine.
pub const TOKEN_ENV: &str = "KVSTORE_TOKEN";

/// `--ca-file` and `--token-file`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct SecurityArgs {
    /// PEM file of CA certificates to trust for https:// URLs, besides the built-in (Mozilla)
    /// roots; e.g. the CA of a self-signed server certificate.
    #[arg(long, env = "KVSTORE_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// File holding a bearer token, sent as `Authorization: Bearer <token>` with every
    /// request (surrounding whitespace is ignored). Without it, the token in the environment
    /// variable KVSTORE_TOKEN is sent, if set.
    #[arg(long, env = "KVSTORE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl SecurityArgs {
    /// `builder`, trusting `--ca-file` and sending the token of `--token-file` or
    /// `KVSTORE_TOKEN`. The error says which file or variable is at fault.
    pub fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, String> {
        for certificate in self.ca_certificates()? {
            builder = builder.add_root_certificate(certificate);
        }
        let from_env = match std::env::var(TOKEN_ENV) {
            Ok(token) => Some(token),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("{TOKEN_ENV} is not valid UTF-8"));
            }
        };
        if let Some(authorization) = self.authorization(from_env)? {
            builder =
                builder.default_headers(HeaderMap::from_iter([(AUTHORIZATION, authorization)]));
        }
        Ok(builder)
    }

    /// The certificates of `--ca-file`, none without it.
    fn ca_certificates(&self) -> Result<Vec<reqwest::Certificate>, String> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let pem = read(path, "CA file")?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .map(|der| {
                let der = der.map_err(|e| format!("CA file {}: {e}", path.display()))?;
                reqwest::Certificate::from_der(&der)
                    .map_err(|e| format!("CA file {}: {e}", path.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if certificates.is_empty() {
            return Err(format!(
                "CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ));
        }
        Ok(certificates)
    }

    /// The `Authorization` header: the token of `--token-file`, else `from_env` (the value of
    /// `KVSTORE_TOKEN`; empty counts as unset). Marked sensitive so it is never logged.
    fn authorization(&self, from_env: Option<String>) -> Result<Option<HeaderValue>, String> {
        let (token, source) = match &self.token_file {
            Some(path) => {
                let bytes = read(path, "token file")?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("token file {} is not UTF-8 text", path.display()))?;
                let token = text.trim().to_owned();
                if token.is_empty() {
                    return Err(format!("token file {} is empty", path.display()));
                }
                (token, format!("token file {}", path.display()))
            }
            None => match from_env {
                Some(token) if !token.trim().is_empty() => {
                    (token.trim().to_owned(), TOKEN_ENV.to_owned())
                }
                _ => return Ok(None),
            },
        };
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| format!("the token in {source} holds characters a header cannot carry"))?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token_file(content: &str) -> (tempfile::TempDir, SecurityArgs) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        std::fs::write(&path, content).expect("token written");
        let args = SecurityArgs {
            token_file: Some(path),
            ..SecurityArgs::default()
        };
        (dir, args)
    }

    #[test]
    fn the_token_file_comes_before_the_environment() {
        let (_dir, args) = with_token_file("from-file\n");
        let header = args
            .authorization(Some("from-env".into()))
            .expect("valid")
            .expect("a header");
        assert_eq!(header, "Bearer from-file");
        assert!(header.is_sensitive());

        let none = SecurityArgs::default();
        let header = none
            .authorization(Some(" from-env ".into()))
            .expect("valid");
        assert_eq!(header.expect("a header"), "Bearer from-env");
        assert_eq!(
            none.authorization(Some(String::new())).expect("valid"),
            None
        );
        assert_eq!(none.authorization(None).expect("valid"), None);
    }

    #[test]
    fn unusable_tokens_are_refused_with_their_source() {
        let (_dir, args) = with_token_file(" \n");
        let error = args.authorization(None).expect_err("empty");
        assert!(error.contains("is empty"), "{error}");

        let (_dir, args) = with_token_file("two\nlines");
        let error = args.authorization(None).expect_err("newline");
        assert!(error.contains("token file"), "{error}");

        let error = SecurityArgs::default()
            .authorization(Some("a\u{7f}b".into()))
            .expect_err("control character");
        assert!(error.contains(TOKEN_ENV), "{error}");

        let missing = SecurityArgs {
            token_file: Some("/nonexistent/token".into()),
            ..SecurityArgs::default()
        };
        let error = missing.authorization(None).expect_err("missing");
        assert!(error.contains("/nonexistent/token"), "{error}");
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ca.pem");
        let args = SecurityArgs {
            ca_file: Some(path.clone()),
            ..SecurityArgs::default()
        };
        let error = args.ca_certificates().expect_err("missing");
        assert!(error.contains("ca.pem"), "{error}");

        std::fs::write(&path, "not a certificate").expect("written");
        let error = args.ca_certificates().expect_err("no PEM");
        assert!(error.contains("no PEM certificate"), "{error}");

        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).expect("CA");
        std::fs::write(&path, ca.cert.pem().repeat(2)).expect("written");
        assert_eq!(args.ca_certificates().expect("two").len(), 2);
        assert!(
            SecurityArgs::default()
                .ca_certificates()
                .expect("none")
                .is_empty()
        );
    }
}
