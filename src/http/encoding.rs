//! How values travel inside JSON, the same way in both directions: range results and watch
//! events carry `value` and `encoding` ([`RangeItem`]), and a batch put given that same pair
//! stores the same bytes. Keys that are not UTF-8 travel as base64 ([`key_text`]).
//!
//! - `json`: the value is JSON (its content type is `application/json` or `+json`) and is
//!   embedded as a JSON value.
//! - `text`: the value is UTF-8 text, embedded as a JSON string.
//! - `base64`: anything else, embedded as a standard base64 string.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::is_json;
use crate::store::Value;

/// How a value is embedded in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueEncoding {
    /// A JSON value, stored as its JSON text.
    Json,
    /// A JSON string, stored as its UTF-8 text.
    Text,
    /// A base64 string, stored as the decoded bytes.
    Base64,
}

impl ValueEncoding {
    /// The content type stored with a value written in this encoding when the request names
    /// none.
    pub fn default_content_type(self) -> &'static str {
        match self {
            ValueEncoding::Json => "application/json",
            ValueEncoding::Text => "text/plain",
            ValueEncoding::Base64 => crate::store::DEFAULT_CONTENT_TYPE,
        }
    }
}

/// Embeds stored bytes in JSON, choosing the most readable encoding that is exact.
pub fn embed(bytes: &[u8], content_type: &str) -> (serde_json::Value, ValueEncoding) {
    if is_json(content_type)
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        return (value, ValueEncoding::Json);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => (
            serde_json::Value::String(text.to_owned()),
            ValueEncoding::Text,
        ),
        Err(_) => (
            serde_json::Value::String(BASE64.encode(bytes)),
            ValueEncoding::Base64,
        ),
    }
}

/// The bytes a JSON-embedded value stands for. Without an `encoding`, a string is text and
/// anything else is JSON. Returns the bytes and the encoding used.
pub fn decode_value(
    value: &serde_json::Value,
    encoding: Option<ValueEncoding>,
) -> Result<(Vec<u8>, ValueEncoding), String> {
    let encoding = encoding.unwrap_or(match value {
        serde_json::Value::String(_) => ValueEncoding::Text,
        _ => ValueEncoding::Json,
    });
    let bytes = match (encoding, value) {
        (ValueEncoding::Json, value) => serde_json::to_vec(value).map_err(|e| e.to_string())?,
        (ValueEncoding::Text, serde_json::Value::String(text)) => text.as_bytes().to_vec(),
        (ValueEncoding::Base64, serde_json::Value::String(text)) => BASE64
            .decode(text)
            .map_err(|e| format!("value is not valid base64: {e}"))?,
        (_, _) => {
            return Err(format!(
                "a value with encoding {encoding:?} must be a JSON string"
            ));
        }
    };
    Ok((bytes, encoding))
}

/// One key and its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct RangeItem {
    /// The key (base64 if it is not UTF-8; see `key_encoding`).
    #[schema(example = "user/1")]
    pub key: String,
    /// Present, as `base64`, only for a key that is not UTF-8 (written by another producer).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub key_encoding: Option<ValueEncoding>,
    /// The value: a JSON value (`encoding: json`), a string of its text (`text`), or a
    /// base64 string of its bytes (`base64`).
    #[schema(example = json!({"name": "Ada"}))]
    pub value: serde_json::Value,
    /// How `value` embeds the stored bytes.
    pub encoding: ValueEncoding,
    /// The content type the value was written with.
    #[schema(example = "application/json")]
    pub content_type: String,
    /// The value's version: the offset of the record that wrote it.
    #[schema(example = 42)]
    pub offset: i64,
}

impl RangeItem {
    /// A key and its value as range results (and watch events) show them.
    pub fn new(key: Vec<u8>, value: &Value) -> RangeItem {
        let (embedded, encoding) = embed(&value.bytes, &value.content_type);
        let (key, key_encoding) = key_text(key);
        RangeItem {
            key,
            key_encoding,
            value: embedded,
            encoding,
            content_type: value.content_type.to_string(),
            offset: value.offset,
        }
    }
}

/// A key as text: itself if it is UTF-8, else base64 with `key_encoding` saying so.
pub fn key_text(key: Vec<u8>) -> (String, Option<ValueEncoding>) {
    match String::from_utf8(key) {
        Ok(key) => (key, None),
        Err(e) => (BASE64.encode(e.as_bytes()), Some(ValueEncoding::Base64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embeds_json_text_and_binary() {
        assert_eq!(
            embed(br#"{"a":1}"#, "application/json"),
            (json!({"a": 1}), ValueEncoding::Json)
        );
        assert_eq!(
            embed(br#"{"a":1}"#, "text/plain"),
            (json!("{\"a\":1}"), ValueEncoding::Text)
        );
        assert_eq!(
            embed(b"not json", "application/json"),
            (json!("not json"), ValueEncoding::Text)
        );
        assert_eq!(
            embed(&[0xff, 0x00], "application/octet-stream"),
            (json!("/wA="), ValueEncoding::Base64)
        );
    }

    #[test]
    fn decodes_what_embed_produced() {
        for (bytes, content_type) in [
            (&br#"{"a":[1,2]}"#[..], "application/json"),
            (&b"hello"[..], "text/plain"),
            (&[0xff, 0x00, 0x80][..], "application/octet-stream"),
        ] {
            let (value, encoding) = embed(bytes, content_type);
            let (back, _) = decode_value(&value, Some(encoding)).expect("round trip");
            assert_eq!(back, bytes);
        }
    }

    #[test]
    fn decode_defaults_and_errors() {
        assert_eq!(
            decode_value(&json!("hi"), None).expect("text"),
            (b"hi".to_vec(), ValueEncoding::Text)
        );
        assert_eq!(
            decode_value(&json!({"x": true}), None).expect("json"),
            (br#"{"x":true}"#.to_vec(), ValueEncoding::Json)
        );
        assert_eq!(
            decode_value(&json!("hi"), Some(ValueEncoding::Json)).expect("json string"),
            (br#""hi""#.to_vec(), ValueEncoding::Json)
        );
        assert!(decode_value(&json!("***"), Some(ValueEncoding::Base64)).is_err());
        assert!(decode_value(&json!(5), Some(ValueEncoding::Text)).is_err());
    }
}
