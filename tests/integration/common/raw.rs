//! Requests sent as raw bytes over a socket.

use std::net::TcpStream;
use std::time::Duration;

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code, or 0 if the server closed the connection without answering.
    pub status: u16,
    /// Everything after the headers.
    pub body: String,
}

/// Sends `request` as raw bytes (for requests an HTTP client would refuse or normalise) and
/// reads the response until the server closes the connection or `timeout` passes.
pub fn raw_request(base: &str, request: &[u8], timeout: Duration) -> RawResponse {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    // The server may answer (e.g. 413) and close before reading everything we send.
    let _ = stream.write_all(request);
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let text = String::from_utf8_lossy(&received).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    RawResponse { status, body }
}
