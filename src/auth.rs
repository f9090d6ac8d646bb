//! Who may do what: bearer tokens, their scopes, and the check every protected request passes.
//!
//! Tokens are configured by reference ([`crate::secret::SecretRef`]) and only their SHA-256
//! digests are kept. A presented token is hashed and compared with every configured digest in
//! constant time, so neither the comparison's duration nor an early exit tells an attacker how
//! much of a guess was right. Nothing here knows about HTTP beyond the header's text.

use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, Config, Scope, TokenConfig};
use crate::secret::SecretError;

/// Shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// What each scope allows; the scopes themselves are read with the configuration.
impl Scope {
    fn allows(&self, needed: &Permission<'_>) -> bool {
        match (self, needed) {
            (Scope::Read(pattern), Permission::Read(topic))
            | (Scope::Write(pattern), Permission::Write(topic)) => pattern.matches(topic),
            (Scope::Admin, Permission::Admin) | (Scope::Metrics, Permission::Metrics) => true,
            // Any valid token may read the API's description.
            (_, Permission::Docs | Permission::Authenticated) => true,
            _ => false,
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission<'a> {
    /// Reading the topic.
    Read(&'a str),
    /// Writing the topic.
    Write(&'a str),
    /// Listing topics.
    Admin,
    /// Scraping metrics.
    Metrics,
    /// Reading the API's description.
    Docs,
    /// Any valid token (to be told what is wrong with a request).
    Authenticated,
}

impl std::fmt::Display for Permission<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Permission::Read(topic) => write!(f, "read scope on topic {topic:?}"),
            Permission::Write(topic) => write!(f, "write scope on topic {topic:?}"),
            Permission::Admin => f.write_str("admin scope"),
            Permission::Metrics => f.write_str("metrics scope"),
            Permission::Docs | Permission::Authenticated => f.write_str("any valid token"),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("this endpoint needs a bearer token (Authorization: Bearer <token>)")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("the Authorization header must be \"Bearer <token>\"")]
    Malformed,
    /// A token that is not configured.
    #[error("the bearer token is not valid")]
    Invalid,
    /// A valid token without the scope the request needs.
    #[error("token {token:?} lacks the {needed}")]
    Forbidden {
        /// The token's configured name.
        token: String,
        /// What the request needed, in words.
        needed: String,
    },
}

impl AuthError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::Invalid => "invalid",
            AuthError::Forbidden { .. } => "forbidden",
        }
    }
}

/// Why the tokens could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A token's secret could not be read.
    #[error("auth token {name:?}: {source}")]
    Secret {
        /// The token's name.
        name: String,
        /// Why.
        source: SecretError,
    },
    /// A token's secret is too short.
    #[error("auth token {name:?} is shorter than {MIN_TOKEN_LEN} characters")]
    TooShort {
        /// The token's name.
        name: String,
    },
    /// Two tokens have the same secret, so a request could not tell them apart.
    #[error("auth tokens {0:?} and {1:?} have the same secret")]
    Duplicate(String, String),
    /// A scope does not parse (normally caught by the configuration check).
    #[error("auth token {name:?}: {problem}")]
    Scope {
        /// The token's name.
        name: String,
        /// What is wrong.
        problem: String,
    },
}

/// A configured token: its name, the digest of its secret and its scopes.
struct Token {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
}

/// The check every protected request passes. Cheap to share.
pub struct Auth {
    enabled: bool,
    open_metrics: bool,
    open_docs: bool,
    /// Kept to read the secrets again on reload.
    config: Vec<TokenConfig>,
    /// Replaced whole on reload. A std lock: held only to clone the `Arc`, never across
    /// `.await`.
    tokens: RwLock<Arc<Vec<Token>>>,
}

impl Auth {
    /// Reads every token's secret. With auth off, no secret is read.
    pub fn from_config(config: &Config) -> Result<Auth, AuthSetupError> {
        let AuthConfig {
            open_metrics,
            open_docs,
            tokens,
            ..
        } = &config.auth;
        let enabled = config.auth_enabled();
        let loaded = if enabled { load(tokens)? } else { Vec::new() };
        Ok(Auth {
            enabled,
            open_metrics: *open_metrics,
            open_docs: *open_docs,
            config: tokens.clone(),
            tokens: RwLock::new(Arc::new(loaded)),
        })
    }

    /// No token needed anywhere.
    pub fn disabled() -> Auth {
        Auth {
            enabled: false,
            open_metrics: true,
            open_docs: true,
            config: Vec::new(),
            tokens: RwLock::new(Arc::new(Vec::new())),
        }
    }

    /// Whether requests need tokens.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Reads the secrets again (say, after a rotation). On error the tokens in use stay.
    /// Returns how many tokens are configured.
    pub fn reload(&self) -> Result<usize, AuthSetupError> {
        if !self.enabled {
            return Ok(0);
        }
        let loaded = load(&self.config)?;
        let count = loaded.len();
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(count)
    }

    /// Checks a request's `Authorization` header (`None` when absent) against what it needs.
    /// Returns the name of the token used, if any.
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        needed: Permission<'_>,
    ) -> Result<Option<String>, AuthError> {
        let open = match needed {
            Permission::Metrics => self.open_metrics,
            Permission::Docs => self.open_docs,
            _ => false,
        };
        if !self.enabled || open {
            return Ok(None);
        }
        let presented = bearer_token(authorization.ok_or(AuthError::Missing)?)?;
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let tokens = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Compare with every token, without stopping at a match.
        let mut found = None;
        for token in tokens.iter() {
            if bool::from(token.digest.ct_eq(&digest)) {
                found = Some(token);
            }
        }
        let token = found.ok_or(AuthError::Invalid)?;
        if token.scopes.iter().any(|scope| scope.allows(&needed)) {
            Ok(Some(token.name.clone()))
        } else {
            Err(AuthError::Forbidden {
                token: token.name.clone(),
                needed: needed.to_string(),
            })
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer_token(header: &[u8]) -> Result<&[u8], AuthError> {
    let scheme = b"bearer ";
    if header.len() <= scheme.len() || !header[..scheme.len()].eq_ignore_ascii_case(scheme) {
        return Err(AuthError::Malformed);
    }
    let token = header[scheme.len()..].trim_ascii();
    if token.is_empty() || token.iter().any(|b| b.is_ascii_whitespace()) {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

fn load(configs: &[TokenConfig]) -> Result<Vec<Token>, AuthSetupError> {
    let mut tokens: Vec<Token> = Vec::with_capacity(configs.len());
    for config in configs {
        let name = config.name.clone();
        let secret = config
            .secret
            .resolve()
            .map_err(|source| AuthSetupError::Secret {
                name: name.clone(),
                source,
            })?;
        if secret.len() < MIN_TOKEN_LEN {
            return Err(AuthSetupError::TooShort { name });
        }
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if let Some(twin) = tokens.iter().find(|t| t.digest == digest) {
            return Err(AuthSetupError::Duplicate(twin.name.clone(), name));
        }
        let scopes = config
            .scopes
            .iter()
            .map(|scope| Scope::parse(scope))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problem| AuthSetupError::Scope {
                name: name.clone(),
                problem,
            })?;
        tokens.push(Token {
            name,
            digest,
            scopes,
        });
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretRef;

    /// A token whose secret is in a file of its own: tests run in parallel threads, and
    /// setting environment variables while others read them is not safe.
    fn token(name: &str, secret: &str, scopes: &[&str]) -> TokenConfig {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kvstore-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(format!("{name}-{n}"));
        std::fs::write(&path, secret).expect("secret written");
        TokenConfig {
            name: name.into(),
            secret: SecretRef::File(path),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn auth_with(tokens: Vec<TokenConfig>) -> Auth {
        let mut config = Config::default();
        config.auth.enabled = Some(true);
        config.auth.tokens = tokens;
        Auth::from_config(&config).expect("loads")
    }

    const READER: &str = "reader-secret-0123456789";
    const WRITER: &str = "writer-secret-0123456789";

    fn auth() -> Auth {
        auth_with(vec![
            token("reader", READER, &["read:users*"]),
            token("writer", WRITER, &["read:*", "write:orders", "admin"]),
        ])
    }

    fn header(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[test]
    fn scopes_decide_by_topic_pattern() {
        let auth = auth();
        let reader = header(READER);
        let writer = header(WRITER);
        let check = |h: &[u8], p| auth.check(Some(h), p);
        assert_eq!(
            check(&reader, Permission::Read("users-eu")),
            Ok(Some("reader".into()))
        );
        assert!(matches!(
            check(&reader, Permission::Read("orders")),
            Err(AuthError::Forbidden { .. })
        ));
        assert!(matches!(
            check(&reader, Permission::Write("users")),
            Err(AuthError::Forbidden { .. })
        ));
        assert!(check(&writer, Permission::Write("orders")).is_ok());
        assert!(check(&writer, Permission::Write("orders2")).is_err());
        assert!(check(&writer, Permission::Admin).is_ok());
        assert!(check(&reader, Permission::Admin).is_err());
        assert!(check(&writer, Permission::Metrics).is_err());
        assert!(check(&reader, Permission::Docs).is_ok());
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_told_apart() {
        let auth = auth();
        let read = Permission::Read("users");
        assert_eq!(auth.check(None, read), Err(AuthError::Missing));
        for bad in ["Basic abc", "Bearer", "Bearer ", "Bearer a b", READER] {
            assert_eq!(
                auth.check(Some(bad.as_bytes()), read),
                Err(AuthError::Malformed),
                "{bad:?}"
            );
        }
        let wrong = header("not-a-configured-token-at-all");
        assert_eq!(auth.check(Some(&wrong), read), Err(AuthError::Invalid));
        let lower = format!("bearer {READER}");
        assert!(auth.check(Some(lower.as_bytes()), read).is_ok());
    }

    #[test]
    fn open_endpoints_and_disabled_auth_need_nothing() {
        let auth = auth();
        assert_eq!(auth.check(None, Permission::Docs), Ok(None));
        assert_eq!(
            auth.check(None, Permission::Metrics),
            Err(AuthError::Missing)
        );
        let off = Auth::disabled();
        assert_eq!(off.check(None, Permission::Write("x")), Ok(None));
    }

    #[test]
    fn short_and_duplicate_secrets_are_refused() {
        let mut config = Config::default();
        config.auth.enabled = Some(true);
        config.auth.tokens = vec![token("s", "short", &[])];
        assert!(matches!(
            Auth::from_config(&config),
            Err(AuthSetupError::TooShort { .. })
        ));
        config.auth.tokens = vec![token("a", READER, &[]), token("b", READER, &[])];
        assert!(matches!(
            Auth::from_config(&config),
            Err(AuthSetupError::Duplicate(..))
        ));
    }

    #[test]
    fn scopes_parse_or_say_why_not() {
        assert!(matches!(Scope::parse("read:users*"), Ok(Scope::Read(_))));
        assert!(matches!(Scope::parse("write:*"), Ok(Scope::Write(_))));
        assert!(matches!(Scope::parse("admin"), Ok(Scope::Admin)));
        assert!(matches!(Scope::parse("metrics"), Ok(Scope::Metrics)));
        for bad in ["read", "read:", "write:a b", "root", "admin:x", ""] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
    }
}
