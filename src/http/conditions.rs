//! `If-Match` and `If-None-Match` on writes (RFC 9110, section 13.1): the conditions they
//! state on the key, for the writer to judge in log order; and `If-None-Match` on a read,
//! which answers 304 when it lists the value's version.
//!
//! ETags are versions (offsets), quoted: `"42"`. Comparison is strong, so a weak tag
//! (`W/"42"`) never matches, nor does a tag that is no version of this service's.

use axum::http::{HeaderMap, HeaderName, header};

use crate::condition::{Condition, Precondition};
use crate::error::{ApiError, FailedCondition};
use crate::writer::WriteError;

/// The preconditions that `headers` state on `key`: none, one, or two (both headers).
pub fn from_headers(headers: &HeaderMap, key: &[u8]) -> Result<Vec<Precondition>, ApiError> {
    let mut preconditions = Vec::new();
    if let Some(tags) = entity_tags(headers, &header::IF_MATCH)? {
        let condition = match tags {
            Tags::Any => Condition::Exists,
            Tags::Versions(versions) => Condition::VersionIn(versions),
        };
        preconditions.push(Precondition {
            key: key.to_vec(),
            condition,
        });
    }
    if let Some(tags) = entity_tags(headers, &header::IF_NONE_MATCH)? {
        let condition = match tags {
            Tags::Any => Condition::Absent,
            Tags::Versions(versions) => Condition::VersionNotIn(versions),
        };
        preconditions.push(Precondition {
            key: key.to_vec(),
            condition,
        });
    }
    Ok(preconditions)
}

/// Whether a read of a value at `version` answers 304 Not Modified: its `If-None-Match` is
/// `*` or lists the version. A header that is no list of entity tags is ignored (the read
/// answers the value), where a write would refuse it.
pub fn not_modified(headers: &HeaderMap, version: i64) -> bool {
    match entity_tags(headers, &header::IF_NONE_MATCH) {
        Ok(Some(Tags::Any)) => true,
        Ok(Some(Tags::Versions(versions))) => versions.contains(&version),
        Ok(None) | Err(_) => false,
    }
}

/// The answer to a write whose conditions did not hold: each unmet one named by its key
/// (`key_of` gives the key, and where in a batch it was, of a precondition by its index).
pub fn failed(
    error: WriteError,
    key_of: impl Fn(usize) -> (String, Option<usize>, Option<usize>),
) -> ApiError {
    match error {
        WriteError::PreconditionFailed { unmet } => ApiError::PreconditionFailed(
            unmet
                .into_iter()
                .map(|unmet| {
                    let (key, op, check) = key_of(unmet.index);
                    FailedCondition {
                        key,
                        op,
                        check,
                        current_version: unmet.version,
                    }
                })
                .collect(),
        ),
        other => ApiError::Write(other),
    }
}

/// What an `If-Match` or `If-None-Match` header lists.
#[derive(Debug, PartialEq, Eq)]
enum Tags {
    /// `*`.
    Any,
    /// The versions of the strong tags listed that are versions at all.
    Versions(Vec<i64>),
}

/// Reads every instance of header `name`; `None` if it is absent.
fn entity_tags(headers: &HeaderMap, name: &HeaderName) -> Result<Option<Tags>, ApiError> {
    let mut versions = Vec::new();
    let mut present = false;
    for value in headers.get_all(name) {
        present = true;
        let text = value
            .to_str()
            .map_err(|_| ApiError::InvalidHeader(format!("{name} is not ASCII")))?;
        if text.trim() == "*" {
            return Ok(Some(Tags::Any));
        }
        let malformed = || {
            ApiError::InvalidHeader(format!(
                "{name}: {text:?} is not a list of entity tags; send the ETag as it was \
                 answered, such as \"42\", or *"
            ))
        };
        // `#entity-tag`: tags separated by commas, each `"opaque"` or `W/"opaque"`, where the
        // opaque part may hold commas but no quote.
        let mut rest = text;
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if rest.is_empty() {
                break;
            }
            let (weak, quoted) = match rest.strip_prefix("W/") {
                Some(after) => (true, after),
                None => (false, rest),
            };
            let opened = quoted.strip_prefix('"').ok_or_else(malformed)?;
            let (opaque, after) = opened.split_once('"').ok_or_else(malformed)?;
            rest = after.trim_start_matches([' ', '\t']);
            if !rest.is_empty() && !rest.starts_with(',') {
                return Err(malformed());
            }
            if !weak && let Ok(version) = opaque.parse::<i64>() {
                versions.push(version);
            }
        }
    }
    Ok(present.then_some(Tags::Versions(versions)))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn conditions(pairs: &[(HeaderName, &str)]) -> Result<Vec<Condition>, ApiError> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(name, HeaderValue::from_str(value).expect("header"));
        }
        from_headers(&headers, b"k").map(|ps| ps.into_iter().map(|p| p.condition).collect())
    }

    #[test]
    fn headers_become_conditions() {
        assert_eq!(conditions(&[]).expect("none"), []);
        assert_eq!(
            conditions(&[(header::IF_MATCH, "*")]).expect("any"),
            [Condition::Exists]
        );
        assert_eq!(
            conditions(&[(header::IF_NONE_MATCH, "*")]).expect("absent"),
            [Condition::Absent]
        );
        assert_eq!(
            conditions(&[
                (header::IF_MATCH, r#""5", W/"6""#),
                (header::IF_MATCH, r#""7", "x,y", ,"8""#)
            ])
            .expect("list"),
            [Condition::VersionIn(vec![5, 7, 8])]
        );
        assert_eq!(
            conditions(&[
                (header::IF_MATCH, r#""1""#),
                (header::IF_NONE_MATCH, r#""2""#)
            ])
            .expect("both"),
            [
                Condition::VersionIn(vec![1]),
                Condition::VersionNotIn(vec![2])
            ]
        );
        // Only weak or foreign tags: a list nothing can match.
        assert_eq!(
            conditions(&[(header::IF_MATCH, r#"W/"5""#)]).expect("weak"),
            [Condition::VersionIn(vec![])]
        );
    }

    #[test]
    fn malformed_tags_are_a_bad_request() {
        for bad in ["5", r#""5"#, r#"W/5"#, r#""a"b""#, r#""1" "2""#] {
            let error = conditions(&[(header::IF_MATCH, bad)]).expect_err(bad);
            assert!(
                matches!(error, ApiError::InvalidHeader(_)),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn a_read_is_not_modified_when_if_none_match_lists_its_version() {
        let not_modified_at_7 = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    header::IF_NONE_MATCH,
                    HeaderValue::from_str(value).expect("header"),
                );
            }
            not_modified(&headers, 7)
        };
        assert!(not_modified_at_7(&[r#""7""#]));
        assert!(not_modified_at_7(&["*"]));
        assert!(not_modified_at_7(&[r#""x,y", "7""#]));
        assert!(not_modified_at_7(&[r#""1""#, r#""7""#]));
        // A comma inside a tag does not split it: this is one tag, not a list holding `*`.
        assert!(!not_modified_at_7(&[r#""x, *, y""#]));
        assert!(!not_modified_at_7(&[r#""7,8""#]));
        assert!(!not_modified_at_7(&[r#""8""#]));
        assert!(!not_modified_at_7(&[r#"W/"7""#]));
        assert!(!not_modified_at_7(&[]));
        // Not a list of entity tags: ignored.
        assert!(!not_modified_at_7(&["7"]));
    }
}
