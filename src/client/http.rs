//! Requests to a kvstore server, and what its answers become: the body of a success, or a
//! [`ClientError`] for anything else.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::args::{Conditions, Freshness};
use super::error::ClientError;
use super::security::SecurityArgs;
use crate::http::keys::OFFSET_HEADER;

/// Escaped in path segments: everything but unreserved characters, so that a `/` in a key
/// stays part of the key.
const SEGMENT_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Longest error body quoted in a message when it is not the API's JSON error.
const QUOTED_BODY_CHARS: usize = 200;

/// A value read with `GET`.
#[derive(Debug)]
pub struct StoredValue {
    /// The value's bytes.
    pub bytes: Vec<u8>,
    /// The content type it was written with.
    pub content_type: String,
    /// Its version: the offset that wrote it.
    pub offset: Option<i64>,
}

/// Which keys a range request asks for.
#[derive(Debug, Default)]
pub struct RangeQuery<'a> {
    /// Keys that begin with this.
    pub prefix: Option<&'a str>,
    /// Keys at or after this.
    pub start: Option<&'a str>,
    /// Keys before this.
    pub end: Option<&'a str>,
    /// Most items in the page.
    pub limit: Option<u64>,
    /// Continue after this cursor.
    pub cursor: Option<&'a str>,
}

/// A kvstore server at a base URL.
#[derive(Debug)]
pub struct KvClient {
    http: reqwest::Client,
    base: String,
}

impl KvClient {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`), waiting at most
    /// `timeout` for each answer, trusting the CA and sending the token of `security`.
    pub fn new(
        base: &str,
        timeout: Duration,
        security: &SecurityArgs,
    ) -> Result<KvClient, ClientError> {
        let parsed = reqwest::Url::parse(base)
            .map_err(|e| ClientError::Usage(format!("invalid --url {base:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Usage(format!(
                "invalid --url {base:?}: not an http:// or https:// URL"
            )));
        }
        let http = security
            .apply(reqwest::Client::builder().timeout(timeout))
            .map_err(ClientError::Usage)?
            .build()
            .map_err(|e| ClientError::Usage(format!("building the HTTP client: {e}")))?;
        Ok(KvClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// `GET /v1/{topic}/keys/{key}`, as fresh as `freshness` asks.
    pub async fn get_key(
        &self,
        topic: &str,
        key: &str,
        freshness: &Freshness,
    ) -> Result<StoredValue, ClientError> {
        let url = self.key_url(topic, key)?;
        let request = self.http.get(&url).query(&freshness_query(freshness));
        let response = self.send(request, &url).await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let offset = header(OFFSET_HEADER).and_then(|v| v.parse().ok());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unreachable(&url, &e))?
            .to_vec();
        Ok(StoredValue {
            bytes,
            content_type,
            offset,
        })
    }

    /// `PUT /v1/{topic}/keys/{key}`, if `conditions` hold; answers the server's JSON as it
    /// came.
    pub async fn put_key(
        &self,
        topic: &str,
        key: &str,
        value: Vec<u8>,
        content_type: Option<&str>,
        conditions: &Conditions,
    ) -> Result<Box<RawValue>, ClientError> {
        let url = self.key_url(topic, key)?;
        let mut request = with_conditions(self.http.put(&url).body(value), conditions)?;
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.json(request, &url).await
    }

    /// `DELETE /v1/{topic}/keys/{key}`, if `conditions` hold; answers the server's JSON as it
    /// came.
    pub async fn delete_key(
        &self,
        topic: &str,
        key: &str,
        conditions: &Conditions,
    ) -> Result<Box<RawValue>, ClientError> {
        let url = self.key_url(topic, key)?;
        let request = with_conditions(self.http.delete(&url), conditions)?;
        self.json(request, &url).await
    }

    /// `GET /v1/{topic}/range`: one page.
    pub async fn range_page<T: DeserializeOwned>(
        &self,
        topic: &str,
        query: &RangeQuery<'_>,
        freshness: &Freshness,
    ) -> Result<T, ClientError> {
        let url = format!("{}/v1/{}/range", self.base, segment("topic", topic)?);
        let limit = query.limit.map(|l| l.to_string());
        let params: Vec<(&str, &str)> = [
            ("prefix", query.prefix),
            ("start", query.start),
            ("end", query.end),
            ("limit", limit.as_deref()),
            ("cursor", query.cursor),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
        let request = self
            .http
            .get(&url)
            .query(&params)
            .query(&freshness_query(freshness));
        self.json(request, &url).await
    }

    /// `POST /v1/{topic}/batch` with `body`; answers the server's JSON as it came.
    pub async fn batch(
        &self,
        topic: &str,
        body: &serde_json::Value,
    ) -> Result<Box<RawValue>, ClientError> {
        let url = format!("{}/v1/{}/batch", self.base, segment("topic", topic)?);
        self.json(self.http.request(Method::POST, &url).json(body), &url)
            .await
    }

    /// `GET /v1/topics`; answers the server's JSON as it came.
    pub async fn topics(&self) -> Result<Box<RawValue>, ClientError> {
        let url = format!("{}/v1/topics", self.base);
        self.json(self.http.get(&url), &url).await
    }

    fn key_url(&self, topic: &str, key: &str) -> Result<String, ClientError> {
        Ok(format!(
            "{}/v1/{}/keys/{}",
            self.base,
            segment("topic", topic)?,
            segment("key", key)?
        ))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let response = self.send(request, url).await?;
        let bytes = response.bytes().await.map_err(|e| unreachable(url, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
            url: url.to_owned(),
            reason: format!("not the JSON expected: {e}"),
        })
    }

    /// Sends `request`; a success comes back as is, anything else as an error.
    async fn send(&self, request: RequestBuilder, url: &str) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(|e| unreachable(url, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(api_error(status.as_u16(), &body))
    }
}

/// The query parameters of `freshness`.
fn freshness_query(freshness: &Freshness) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(offset) = freshness.min_offset {
        query.push(("min_offset", offset.to_string()));
    }
    if freshness.strong {
        query.push(("consistency", "strong".to_owned()));
    }
    if let Some(wait) = &freshness.wait {
        query.push(("wait", wait.clone()));
    }
    query
}

/// `request` with the headers of `conditions`: a version becomes a quoted ETag.
fn with_conditions(
    request: RequestBuilder,
    conditions: &Conditions,
) -> Result<RequestBuilder, ClientError> {
    let mut request = request;
    if let Some(version) = &conditions.if_match {
        let tag = match version.trim() {
            "*" => "*".to_owned(),
            version => {
                let version: u64 = version.trim_matches('"').parse().map_err(|_| {
                    ClientError::Usage(format!(
                        "--if-match takes a version (an offset, as a read or write printed) or *, \
                         not {version:?}"
                    ))
                })?;
                format!("\"{version}\"")
            }
        };
        request = request.header("if-match", tag);
    }
    if conditions.if_absent {
        request = request.header("if-none-match", "*");
    }
    Ok(request)
}

/// A topic or key as one path segment. HTTP clients drop `.` and `..` segments (even
/// escaped), so those cannot be sent in a path at all.
pub(super) fn segment(what: &str, text: &str) -> Result<String, ClientError> {
    if text == "." || text == ".." {
        return Err(ClientError::Usage(format!(
            "the {what} {text:?} cannot be sent in a URL path (HTTP clients drop dot segments); \
             use `kvstore batch` to write such a key and `kvstore range --start` to read it"
        )));
    }
    Ok(utf8_percent_encode(text, SEGMENT_ESCAPES).to_string())
}

/// The error an answer with `status` and `body` stands for: the API's
/// `{"error": {"code", "message"}}`, or the body itself if it is not that.
pub(super) fn api_error(status: u16, body: &[u8]) -> ClientError {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        code: String,
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(Body { error }) => ClientError::Api {
            status,
            code: error.code,
            message: error.message,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let mut message: String = text.trim().chars().take(QUOTED_BODY_CHARS).collect();
            if message.is_empty() {
                message = "no error body".into();
            }
            ClientError::Api {
                status,
                code: format!("http_{status}"),
                message,
            }
        }
    }
}

/// A transport error, told by its innermost cause (reqwest's own message repeats the URL and
/// names only the outermost layer).
pub(super) fn unreachable(url: &str, error: &reqwest::Error) -> ClientError {
    let mut innermost: &dyn std::error::Error = error;
    while let Some(cause) = innermost.source() {
        if let Some(tls) = tls_error(cause) {
            return tls_failure(url, tls);
        }
        innermost = cause;
    }
    let reason = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        format!("cannot connect: {innermost}")
    } else {
        innermost.to_string()
    };
    ClientError::Unreachable {
        url: url.to_owned(),
        reason,
    }
}

/// The rustls error `error` is or wraps: rustls's errors reach reqwest inside `io::Error`s
/// (one in another), whose `source()` skips what they wrap.
fn tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut error = error;
    loop {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        error = error.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// A failed handshake, with a hint when the certificate is the problem.
fn tls_failure(url: &str, error: &rustls::Error) -> ClientError {
    let hint = match error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            "; to trust a private CA, pass its certificate with --ca-file (or KVSTORE_CA_FILE)"
        }
        _ => "",
    };
    ClientError::Tls {
        url: url.to_owned(),
        reason: format!("{error}{hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_slashes_inside_the_key() {
        assert_eq!(segment("key", "user/1").expect("ok"), "user%2F1");
        assert_eq!(segment("key", "a b?#%").expect("ok"), "a%20b%3F%23%25");
        assert_eq!(segment("key", "é").expect("ok"), "%C3%A9");
        assert_eq!(segment("key", "...").expect("ok"), "...");
        assert!(segment("key", "..").is_err());
        assert!(segment("topic", ".").is_err());
    }

    #[test]
    fn error_bodies_become_api_errors() {
        let body = br#"{"error":{"code":"key_not_found","message":"no key"}}"#;
        match api_error(404, body) {
            ClientError::Api {
                status,
                code,
                message,
            } => assert_eq!(
                (status, code.as_str(), message.as_str()),
                (404, "key_not_found", "no key")
            ),
            other => panic!("{other:?}"),
        }
        match api_error(502, b"<html>bad gateway</html>") {
            ClientError::Api { code, message, .. } => {
                assert_eq!(code, "http_502");
                assert_eq!(message, "<html>bad gateway</html>");
            }
            other => panic!("{other:?}"),
        }
    }
}
