//! Secrets by reference: configuration names where a secret is (a file or an environment
//! variable), never the secret itself, so that configuration files, `--help`, error messages
//! and logs cannot leak it.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where a secret is read from: `{ file = "/run/secrets/token" }` or `{ env = "MY_TOKEN" }`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretRef {
    /// A file holding the secret; one trailing newline (as `echo` and editors leave) is
    /// dropped.
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
}

/// Why a secret could not be read. Names the reference, never the content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The variable is not set, or not UTF-8.
    #[error("environment variable {0} is not set")]
    Env(String),
    /// The secret is empty.
    #[error("the secret in {0} is empty")]
    Empty(String),
}

impl SecretRef {
    /// Reads the secret now.
    pub fn resolve(&self) -> Result<String, SecretError> {
        let secret = match self {
            SecretRef::File(path) => {
                let mut content =
                    std::fs::read_to_string(path).map_err(|source| SecretError::File {
                        path: path.clone(),
                        source,
                    })?;
                if content.ends_with('\n') {
                    content.pop();
                    if content.ends_with('\r') {
                        content.pop();
                    }
                }
                content
            }
            SecretRef::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::Env(name.clone()))?
            }
        };
        if secret.is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(secret)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::File(path) => write!(f, "file {}", path.display()),
            SecretRef::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

// Only the reference is ever shown, which is all this type holds; written out so that a
// future field holding a value cannot slip into `{:?}` unnoticed.
impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_secret_loses_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("kvstore-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("token");
        std::fs::write(&path, "s3cret token\n").expect("write");
        let secret = SecretRef::File(path.clone()).resolve().expect("reads");
        assert_eq!(secret, "s3cret token");
        std::fs::write(&path, "\n").expect("write");
        assert!(matches!(
            SecretRef::File(path).resolve(),
            Err(SecretError::Empty(_))
        ));
        let missing = SecretRef::File(dir.join("missing")).resolve();
        assert!(matches!(missing, Err(SecretError::File { .. })));
    }

    #[test]
    fn an_unset_variable_is_named_in_the_error() {
        let err = SecretRef::Env("KVSTORE_TEST_SURELY_UNSET_VARIABLE".into())
            .resolve()
            .expect_err("unset");
        assert!(
            err.to_string()
                .contains("KVSTORE_TEST_SURELY_UNSET_VARIABLE")
        );
    }

    #[test]
    fn parses_both_forms_from_toml() {
        #[derive(Deserialize)]
        struct Holder {
            a: SecretRef,
            b: SecretRef,
        }
        use figment::providers::{Format, Toml};
        let toml = Toml::string("a = { file = \"/run/x\" }\nb = { env = \"X\" }\n");
        let holder: Holder = figment::Figment::from(toml).extract().expect("parses");
        assert_eq!(holder.a, SecretRef::File("/run/x".into()));
        assert_eq!(holder.b, SecretRef::Env("X".into()));
    }
}
