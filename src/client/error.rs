//! What can go wrong in a client command, and the exit status for each.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | not found: no such key or topic (HTTP 404) |
//! | 2 | usage: bad arguments or input (clap's usage errors are 2 as well) |
//! | 3 | unavailable: the server could not be reached, failed (5xx), timed out or is overloaded; retrying may help |
//! | 4 | rejected: the server refused the request as invalid (any other 4xx); retrying will not help |
//! | 5 | not authorized or not trusted: the server refused the token (401, 403), or its TLS certificate could not be verified; retrying will not help |

use std::io;

/// No such key or topic.
pub const EXIT_NOT_FOUND: u8 = 1;
/// Bad arguments or input.
pub const EXIT_USAGE: u8 = 2;
/// The server could not be reached or could not serve the request.
pub const EXIT_UNAVAILABLE: u8 = 3;
/// The server refused the request as invalid.
pub const EXIT_REJECTED: u8 = 4;
/// The server refused the token, or its certificate is not trusted.
pub const EXIT_NOT_AUTHORIZED: u8 = 5;
/// A conditional write's condition did not hold (412): nothing was written.
pub const EXIT_CONDITION_FAILED: u8 = 6;

/// A client command that failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The arguments or the input make no request.
    #[error("{0}")]
    Usage(String),
    /// An input file or stdin could not be read.
    #[error("reading {what}: {source}")]
    Input {
        /// The file, or `stdin`.
        what: String,
        /// Why.
        source: io::Error,
    },
    /// The server answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error's `code`, or `http_<status>` if the body had none.
        code: String,
        /// The error's `message`, or the body.
        message: String,
    },
    /// No answer: the connection failed or timed out.
    #[error("no answer from {url}: {reason}")]
    Unreachable {
        /// The request's URL.
        url: String,
        /// Why, with the causes.
        reason: String,
    },
    /// The TLS handshake failed: most often a server certificate that no trusted CA signed.
    #[error("TLS with {url} failed: {reason}")]
    Tls {
        /// The request's URL.
        url: String,
        /// rustls's reason, with a hint.
        reason: String,
    },
    /// An answer that is not what the API promises.
    #[error("unexpected answer from {url}: {reason}")]
    Unexpected {
        /// The request's URL.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Stdout could not be written.
    #[error("writing the output: {0}")]
    Output(#[from] io::Error),
}

impl ClientError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) | ClientError::Input { .. } => EXIT_USAGE,
            ClientError::Api { status: 404, .. } => EXIT_NOT_FOUND,
            ClientError::Api {
                status: 401 | 403, ..
            }
            | ClientError::Tls { .. } => EXIT_NOT_AUTHORIZED,
            // Time-outs and overload pass by themselves.
            ClientError::Api {
                status: 408 | 429, ..
            } => EXIT_UNAVAILABLE,
            ClientError::Api { status: 412, .. } => EXIT_CONDITION_FAILED,
            ClientError::Api { status, .. } if (400..500).contains(status) => EXIT_REJECTED,
            ClientError::Api { .. }
            | ClientError::Unreachable { .. }
            | ClientError::Unexpected { .. }
            | ClientError::Output(_) => EXIT_UNAVAILABLE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> ClientError {
        ClientError::Api {
            status,
            code: "c".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn exit_codes_by_status() {
        assert_eq!(api(404).exit_code(), EXIT_NOT_FOUND);
        assert_eq!(api(400).exit_code(), EXIT_REJECTED);
        assert_eq!(api(401).exit_code(), EXIT_NOT_AUTHORIZED);
        assert_eq!(api(403).exit_code(), EXIT_NOT_AUTHORIZED);
        assert_eq!(api(413).exit_code(), EXIT_REJECTED);
        assert_eq!(api(412).exit_code(), EXIT_CONDITION_FAILED);
        assert_eq!(api(429).exit_code(), EXIT_UNAVAILABLE);
        assert_eq!(api(503).exit_code(), EXIT_UNAVAILABLE);
        assert_eq!(api(504).exit_code(), EXIT_UNAVAILABLE);
        assert_eq!(ClientError::Usage("u".into()).exit_code(), EXIT_USAGE);
    }
}
