//! A Server-Sent Events reader for `/v1/{topic}/watch`, parsing frames as a browser's
//! `EventSource` does: `event`, `id`, `data` lines, a blank line ending each event, comment
//! lines (`:`) skipped.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::server::Server;

/// One event of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `put`, `delete`, `synced`, `progress` or `error`.
    pub event: String,
    /// Its `id`, if it had one.
    pub id: Option<i64>,
    /// Its data, parsed as JSON.
    pub data: Value,
}

impl Event {
    /// The key of a `put` or `delete`.
    pub fn key(&self) -> &str {
        self.data["key"].as_str().unwrap_or_default()
    }

    /// The offset of a change or position.
    pub fn offset(&self) -> i64 {
        self.data["offset"].as_i64().unwrap_or(-1)
    }
}

/// An open event stream.
pub struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    /// Where the next event begins in `buffer`.
    start: usize,
    /// Comment lines seen so far.
    pub comments: usize,
    ended: bool,
}

/// An HTTP client without a total timeout, for streams that outlive one.
pub fn streaming_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

impl EventStream {
    /// Opens `/v1/{topic}/watch?{query}` on `server`, sending `last_event_id` if given;
    /// fails the test unless it answers 200 with an event stream.
    pub async fn open(
        server: &Server,
        topic: &str,
        query: &str,
        last_event_id: Option<i64>,
    ) -> EventStream {
        match EventStream::try_open(server, topic, query, last_event_id).await {
            Ok(stream) => stream,
            Err((status, body)) => panic!("watch {topic}?{query}: {status} {body}"),
        }
    }

    /// Like [`EventStream::open`], but an answer other than 200 comes back as its status
    /// and body.
    pub async fn try_open(
        server: &Server,
        topic: &str,
        query: &str,
        last_event_id: Option<i64>,
    ) -> Result<EventStream, (StatusCode, Value)> {
        let mut request = streaming_client().get(server.url(&format!("/v1/{topic}/watch?{query}")));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("watch sent");
        if response.status() != StatusCode::OK {
            return Err(super::json_of(response).await);
        }
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{:?}",
            response.headers()
        );
        Ok(EventStream {
            response,
            buffer: Vec::new(),
            start: 0,
            comments: 0,
            ended: false,
        })
    }

    /// The next event, or `None` once the stream has ended; fails the test if none comes
    /// within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.take_event() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Ok(None)) => self.ended = true,
                Ok(Err(error)) => panic!("the stream failed: {error}"),
                Err(_) => panic!("no event within {timeout:?}"),
            }
        }
    }

    /// The next put or delete, skipping positions (`progress`); `None` once the stream has
    /// ended.
    pub async fn next_change(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.next(left).await?;
            if event.event != "progress" {
                return Some(event);
            }
        }
    }

    /// Events until one satisfies `done` (included), failing the test if the stream ends
    /// first or `timeout` passes.
    pub async fn until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Event) -> bool,
    ) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.next(left).await.expect("the stream ended early");
            let last = done(&event);
            events.push(event);
            if last {
                return events;
            }
        }
    }

    /// Whether the stream ends (the server closes it cleanly) within `timeout`, skipping any
    /// events before the end.
    pub async fn ends_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.take_event().is_some() {
                continue;
            }
            if self.ended {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Ok(None)) => self.ended = true,
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }

    /// Parses one complete event out of the buffer, skipping comment-only blocks.
    fn take_event(&mut self) -> Option<Event> {
        loop {
            let end = self.buffer[self.start..]
                .windows(2)
                .position(|w| w == b"\n\n")?
                + self.start;
            let text = std::str::from_utf8(&self.buffer[self.start..end])
                .expect("UTF-8 frames")
                .to_owned();
            self.start = end + 2;
            // Events are taken from the front; drop what was taken now and then, not each
            // time (a reader behind by megabytes would move them all for every event).
            if self.start > 1 << 20 || self.start == self.buffer.len() {
                self.buffer.drain(..self.start);
                self.start = 0;
            }
            let (mut event, mut id, mut data) = (None, None, None);
            for line in text.lines() {
                if line.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                match field {
                    "event" => event = Some(value.to_owned()),
                    "id" => id = Some(value.parse().expect("numeric ids")),
                    "data" => data = Some(value.to_owned()),
                    "" => {}
                    other => panic!("unexpected field {other:?} in {text:?}"),
                }
            }
            let Some(data) = data else {
                continue;
            };
            return Some(Event {
                event: event.unwrap_or_else(|| "message".into()),
                id,
                data: serde_json::from_str(&data).expect("JSON data"),
            });
        }
    }
}
