//! Reading requests strictly: topic and key from the raw path, bounded bodies, content types,
//! waits.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Uri, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::config::{ConsistencyConfig, LimitsConfig};
use crate::error::ApiError;
use crate::topic_name;

/// The topic of a `/v1/{topic}/...` path, as documented (the handlers parse the raw path).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TopicPath {
    /// Topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
    #[param(pattern = r"^[a-zA-Z0-9._-]{1,249}$", min_length = 1, max_length = 249)]
    pub topic: String,
}

/// The topic and key of a `/v1/{topic}/keys/{key}` path, as documented.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// Topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
    #[param(pattern = r"^[a-zA-Z0-9._-]{1,249}$", min_length = 1, max_length = 249)]
    pub topic: String,
    /// The key: UTF-8, percent-encoded, at most `limits.max_key_bytes` (1024) bytes; may
    /// contain `/`.
    #[param(min_length = 1)]
    pub key: String,
}

/// Longest content type kept with a value.
pub const MAX_CONTENT_TYPE_LEN: usize = 256;

/// Decodes `%XX` escapes, rejecting a `%` not followed by two hex digits (which lenient
/// decoders pass through as-is, silently changing what the client meant).
pub fn percent_decode_strict(raw: &str) -> Result<Vec<u8>, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .filter(|_| bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit());
            match hex {
                Some(byte) => out.push(byte),
                None => return Err(format!("invalid percent-encoding at byte {i}")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The topic named by a raw path segment, decoded and checked against Kafka's rules.
pub fn topic_from_segment(raw: &str) -> Result<String, ApiError> {
    let decoded = percent_decode_strict(raw).map_err(ApiError::InvalidTopic)?;
    let name = String::from_utf8(decoded)
        .map_err(|_| ApiError::InvalidTopic("topic name is not valid UTF-8".into()))?;
    topic_name::validate(&name).map_err(ApiError::InvalidTopic)?;
    Ok(name)
}

/// The topic of a `/v1/{topic}/...` path.
pub fn topic_from_uri(uri: &Uri) -> Result<String, ApiError> {
    let rest = uri.path().strip_prefix("/v1/").unwrap_or_default();
    topic_from_segment(rest.split('/').next().unwrap_or_default())
}

/// The topic and key of a `/v1/{topic}/keys/{key}` path. The key is everything after
/// `keys/`, percent-decoded; it may contain `/`.
pub fn topic_and_key(uri: &Uri, limits: &LimitsConfig) -> Result<(String, String), ApiError> {
    let topic = topic_from_uri(uri)?;
    let raw_key = uri
        .path()
        .strip_prefix("/v1/")
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(_, rest)| rest.strip_prefix("keys/"))
        .unwrap_or_default();
    let key = decode_key(raw_key, limits)?;
    Ok((topic, key))
}

fn decode_key(raw: &str, limits: &LimitsConfig) -> Result<String, ApiError> {
    let decoded = percent_decode_strict(raw).map_err(ApiError::InvalidKey)?;
    let key = String::from_utf8(decoded)
        .map_err(|_| ApiError::InvalidKey("key is not valid UTF-8".into()))?;
    check_key(&key, limits)?;
    Ok(key)
}

/// Checks a key's length: not empty, at most `limits.max_key_bytes`.
pub fn check_key(key: &str, limits: &LimitsConfig) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::InvalidKey("key must not be empty".into()));
    }
    if key.len() > limits.max_key_bytes {
        return Err(ApiError::KeyTooLarge {
            len: key.len(),
            limit: limits.max_key_bytes,
        });
    }
    Ok(())
}

/// Reads a body of at most `limit` bytes within `timeout`, refusing a larger declared `Content-Length` before
/// reading anything and stopping a longer (or chunked) body as soon as it passes the limit.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
    too_large: impl Fn() -> ApiError,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout))?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => Err(ApiError::IncompleteBody(error.to_string())),
    }
}

/// The request's content type, if it sent one; rejects one that cannot be stored and sent
/// back as a header.
pub fn content_type(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    let Ok(text) = value.to_str().map(str::trim) else {
        return Err(ApiError::InvalidHeader(
            "Content-Type must be visible ASCII".into(),
        ));
    };
    if text.is_empty() {
        return Ok(None);
    }
    check_content_type(text).map_err(|e| ApiError::InvalidHeader(format!("Content-Type {e}")))?;
    Ok(Some(text.to_owned()))
}

/// Checks that a content type can be stored and sent back as a header: a media type of 1 to
/// [`MAX_CONTENT_TYPE_LEN`] visible ASCII characters. Says what is wrong otherwise.
pub fn check_content_type(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > MAX_CONTENT_TYPE_LEN {
        return Err(format!("must be 1 to {MAX_CONTENT_TYPE_LEN} characters"));
    }
    if !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("must be visible ASCII".into());
    }
    // It is sent back as the value's Content-Type, so it must be a media type.
    let valid = text
        .parse::<mime::Mime>()
        .is_ok_and(|m| !m.type_().as_str().is_empty() && !m.subtype().as_str().is_empty());
    if !valid {
        return Err("must be a media type such as text/plain".into());
    }
    Ok(())
}

/// Whether a content type is JSON: `application/json` or any `+json` type, parameters aside.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The `wait`s an endpoint accepts, as the pattern its document states: digits, then a unit.
#[derive(Debug)]
pub struct WaitSyntax {
    /// The most digits it takes (`None`: any number).
    pub max_digits: Option<usize>,
    /// The units it takes, of `ns`, `us`, `ms`, `s`, `m` and `h`.
    pub units: &'static [&'static str],
}

impl WaitSyntax {
    /// A request's `wait` in this syntax, by the replica's `consistency.default_wait` and
    /// `consistency.max_wait`, which reads and watches share.
    pub fn parse(
        &self,
        text: Option<&str>,
        settings: &ConsistencyConfig,
    ) -> Result<Duration, ApiError> {
        parse_wait(text, self, settings.default_wait, settings.max_wait)
    }

    /// The pattern of the document's `wait` parameter that accepts what this does.
    #[cfg(test)]
    pub fn pattern(&self) -> String {
        let digits = self
            .max_digits
            .map_or_else(|| "+".to_owned(), |most| format!("{{1,{most}}}"));
        format!("^[0-9]{digits}({})$", self.units.join("|"))
    }
}

/// A request's `wait` in `syntax`: `default` if it names none, and at most `max` (a longer
/// one waits `max`); not in `syntax`, a 400 that names its units.
fn parse_wait(
    text: Option<&str>,
    syntax: &WaitSyntax,
    default: Duration,
    max: Duration,
) -> Result<Duration, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let invalid = || {
        let units = match syntax.units {
            [init @ .., last] if !init.is_empty() => format!("{} or {last}", init.join(", ")),
            units => units.join(""),
        };
        ApiError::InvalidQuery(format!(
            "wait must be a number and a unit ({units}), such as 500ms or 2s, not {text:?}"
        ))
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let too_long = syntax.max_digits.is_some_and(|most| digits > most);
    if number.is_empty() || too_long || !syntax.units.contains(&unit) {
        return Err(invalid());
    }
    // Only digits: the parse fails only past u64::MAX, which is past any maximum too.
    let n: u64 = number.parse().unwrap_or(u64::MAX);
    let wait = match unit {
        "ns" => Duration::from_nanos(n),
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(invalid()),
    };
    Ok(wait.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_percent_decoding() {
        assert_eq!(percent_decode_strict("a%2Fb%20c").expect("valid"), b"a/b c");
        assert_eq!(
            percent_decode_strict("%C3%A9").expect("valid"),
            "é".as_bytes()
        );
        for bad in ["%", "%2", "%zz", "a%g1", "%+1"] {
            assert!(percent_decode_strict(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_come_from_the_raw_path() {
        let limits = LimitsConfig::default();
        let uri: Uri = "/v1/users/keys/a/b%20c?x=1".parse().expect("uri");
        assert_eq!(
            topic_and_key(&uri, &limits).expect("valid"),
            ("users".into(), "a/b c".into())
        );
        let uri: Uri = "/v1/users/keys/".parse().expect("uri");
        assert!(matches!(
            topic_and_key(&uri, &limits),
            Err(ApiError::InvalidKey(_))
        ));
        let uri: Uri = "/v1/users/keys/%FF".parse().expect("uri");
        assert!(matches!(
            topic_and_key(&uri, &limits),
            Err(ApiError::InvalidKey(_))
        ));
        let uri: Uri = "/v1/bad%20topic/keys/a".parse().expect("uri");
        assert!(matches!(
            topic_and_key(&uri, &limits),
            Err(ApiError::InvalidTopic(_))
        ));
    }

    #[test]
    fn dot_topics_are_invalid_even_when_escaped() {
        for raw in [".", "..", "%2E", "%2e%2E"] {
            assert!(topic_from_segment(raw).is_err(), "{raw}");
        }
        assert_eq!(topic_from_segment("a%2Eb").expect("valid"), "a.b");
    }

    #[test]
    fn key_length_limits() {
        let limits = LimitsConfig {
            max_key_bytes: 4,
            ..LimitsConfig::default()
        };
        assert!(check_key("abcd", &limits).is_ok());
        assert!(matches!(
            check_key("abcde", &limits),
            Err(ApiError::KeyTooLarge { len: 5, limit: 4 })
        ));
    }

    #[test]
    fn content_types_must_be_media_types() {
        assert!(check_content_type("text/plain; charset=utf-8").is_ok());
        assert!(check_content_type("application/vnd.kafka+json").is_ok());
        for bad in [
            "",
            "null",
            "text",
            "text/",
            "/plain",
            "tëxt/plain",
            &"a/".repeat(200),
        ] {
            assert!(check_content_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonl"));
    }

    #[test]
    fn wait_syntaxes_are_the_documented_patterns() {
        use crate::http::{consistency, watch};
        let doc = serde_json::to_value(crate::http::openapi()).expect("the document as JSON");
        for (path, syntax) in [
            ("/v1/{topic}/keys/{key}", &consistency::WAIT_SYNTAX),
            ("/v1/{topic}/range", &consistency::WAIT_SYNTAX),
            ("/v1/{topic}/watch", &watch::WAIT_SYNTAX),
        ] {
            let parameters = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .expect("parameters");
            let wait = parameters
                .iter()
                .find(|parameter| parameter["name"] == "wait")
                .expect("a wait parameter");
            assert_eq!(wait["schema"]["pattern"], syntax.pattern(), "{path}");
        }
    }

    #[test]
    fn waits_are_digits_and_a_unit_of_the_syntax() {
        let syntax = WaitSyntax {
            max_digits: Some(3),
            units: &["ms", "s", "m"],
        };
        let (default, max) = (Duration::from_secs(5), Duration::from_secs(600));
        let wait = |text| parse_wait(Some(text), &syntax, default, max);
        assert_eq!(
            parse_wait(None, &syntax, default, max).expect("default"),
            default
        );
        assert_eq!(wait("250ms").expect("ms"), Duration::from_millis(250));
        assert_eq!(wait("0s").expect("zero"), Duration::ZERO);
        assert_eq!(wait("3m").expect("m"), Duration::from_secs(180));
        assert_eq!(wait("999m").expect("capped"), max);
        for bad in ["", "s", "5", "-1s", "1.5s", "2 s", "2sec", "5h", "1000s"] {
            let error = wait(bad).expect_err(bad);
            assert!(error.to_string().contains("(ms, s or m)"), "{bad}: {error}");
        }
    }
}
