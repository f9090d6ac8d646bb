//! The event stream of a watch, as the connection polls it: what to send next (a change, a
//! snapshot's key or `synced`, a `progress` bookmark, a keep-alive comment, a last `error`)
//! and each event's frame.
//!
//! Frames are written here rather than with axum's `Sse`, so that a change's frame is encoded
//! once and shared by every watcher that sends it ([`Change::encoded`]).

use std::convert::Infallible;
use std::time::Instant;

use axum::body::Bytes;
use serde::Serialize;

use super::encoding::{RangeItem, key_text};
use super::watch::{WatchDelete, WatchPosition};
use crate::error::ApiError;
use crate::store::{Change, Value};
use crate::watch::{WatchError, WatchEvent, Watcher, WatcherPermit, Watchers};

/// The state of one event stream between frames.
struct Stream {
    watcher: Watcher,
    _permit: WatcherPermit,
    watchers: Watchers,
    /// The last position sent as an `id`, so that `progress` only says something new.
    last_id: Option<i64>,
    /// Whether the first frame has been sent.
    started: bool,
    last_event: Instant,
    last_frame: Instant,
    events: metrics::Counter,
    done: bool,
}

/// The frames of a watch, one at a time, as the connection takes them: a client that does
/// not read is not polled, and costs nothing but its connection.
pub(super) fn events(
    watcher: Watcher,
    permit: WatcherPermit,
    watchers: Watchers,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let now = Instant::now();
    let stream = Stream {
        last_id: None,
        started: false,
        watcher,
        _permit: permit,
        watchers,
        last_event: now,
        last_frame: now,
        events: crate::metrics::watch_events(),
        done: false,
    };
    futures::stream::unfold(stream, |mut stream| async move {
        let frame = stream.next_frame().await?;
        Some((Ok(frame), stream))
    })
}

impl Stream {
    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            // The start position first, so that a client that loses the connection before
            // any change can still resume from where it started (a snapshot says it with
            // `synced` instead).
            if let Some(frame) = self.progress() {
                return Some(frame);
            }
        }
        let (progress_interval, keep_alive_interval) = {
            let config = self.watchers.config();
            (config.progress_interval, config.keep_alive_interval)
        };
        let stopping = self.watchers.stopping().clone();
        loop {
            let progress_at = self.last_event + progress_interval;
            let keep_alive_at = self.last_frame + keep_alive_interval;
            let wake = tokio::time::Instant::from_std(progress_at.min(keep_alive_at));
            tokio::select! {
                biased;
                () = stopping.cancelled() => {
                    // The position reached, as a last bookmark; then the end.
                    self.done = true;
                    return Some(
                        self.progress()
                            .unwrap_or_else(|| Bytes::from_static(b": shutting down\n\n")),
                    );
                }
                event = self.watcher.next() => {
                    return Some(match event {
                        Ok(event) => self.event(event),
                        Err(error) => self.error(error),
                    });
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            if let Some(error) = self.watcher.topic_failed() {
                return Some(self.error(error));
            }
            let now = Instant::now();
            if now >= progress_at {
                self.last_event = now;
                self.watcher.advance_idle();
                if let Some(frame) = self.progress() {
                    return Some(frame);
                }
            }
            if now >= keep_alive_at {
                self.last_frame = now;
                return Some(Bytes::from_static(b": keep-alive\n\n"));
            }
        }
    }

    fn event(&mut self, event: WatchEvent) -> Bytes {
        let now = Instant::now();
        self.last_event = now;
        self.last_frame = now;
        self.events.increment(1);
        match event {
            WatchEvent::Change {
                change,
                resumable: true,
            } => {
                self.last_id = Some(change.offset);
                change
                    .encoded
                    .get_or_init(|| change_frame(&change, true))
                    .clone()
            }
            WatchEvent::Change {
                change,
                resumable: false,
            } => change_frame(&change, false),
            WatchEvent::SnapshotKey { key, value } => put_frame(None, key, &value),
            WatchEvent::Synced(offset) => {
                self.last_id = Some(offset);
                position_frame("synced", offset)
            }
        }
    }

    /// A `progress` event, if the position moved since the last `id` sent.
    fn progress(&mut self) -> Option<Bytes> {
        let position = self.watcher.position()?;
        if self.last_id == Some(position) {
            return None;
        }
        self.last_id = Some(position);
        self.last_frame = Instant::now();
        self.events.increment(1);
        Some(position_frame("progress", position))
    }

    /// An `error` event; the stream ends after it.
    fn error(&mut self, error: WatchError) -> Bytes {
        self.done = true;
        let error = ApiError::from(error);
        tracing::info!(topic = self.watcher.topic().name(), %error, "watch ended");
        frame("error", None, &error.body())
    }
}

fn change_frame(change: &Change, with_id: bool) -> Bytes {
    let id = with_id.then_some(change.offset);
    match &change.value {
        Some(bytes) => {
            let value = Value {
                bytes: bytes.to_vec(),
                content_type: change.content_type.clone(),
                offset: change.offset,
            };
            put_frame(id, change.key.to_vec(), &value)
        }
        None => {
            let (key, key_encoding) = key_text(change.key.to_vec());
            let data = WatchDelete {
                key,
                key_encoding,
                offset: change.offset,
            };
            frame("delete", id, &data)
        }
    }
}

fn put_frame(id: Option<i64>, key: Vec<u8>, value: &Value) -> Bytes {
    frame("put", id, &RangeItem::new(key, value))
}

fn position_frame(event: &str, offset: i64) -> Bytes {
    frame(event, Some(offset), &WatchPosition { offset })
}

/// One event: its type, its `id` if it is a position to resume from, and its data as one
/// line of JSON (serde_json escapes every line break inside strings).
fn frame(event: &str, id: Option<i64>, data: &impl Serialize) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    if let Some(id) = id {
        out.extend_from_slice(format!("\nid: {id}").as_bytes());
    }
    out.extend_from_slice(b"\ndata: ");
    if serde_json::to_writer(&mut out, data).is_err() {
        // Only maps with non-string keys fail to serialize; none is written here.
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, OnceLock};

    #[test]
    fn frames_are_one_event_each() {
        let change = Change {
            offset: 7,
            key: (*b"a\nb").into(),
            value: Some((*b"{\"x\":\n1}").into()),
            content_type: Arc::from("application/json"),
            encoded: OnceLock::new(),
        };
        let text = String::from_utf8(change_frame(&change, true).to_vec()).expect("utf8");
        assert_eq!(
            text,
            "event: put\nid: 7\ndata: {\"key\":\"a\\nb\",\"value\":{\"x\":1},\"encoding\":\"json\",\
             \"content_type\":\"application/json\",\"offset\":7}\n\n"
        );
        let delete = Change {
            key: (*b"\xff").into(),
            value: None,
            ..change
        };
        let text = String::from_utf8(change_frame(&delete, false).to_vec()).expect("utf8");
        assert_eq!(
            text,
            "event: delete\ndata: {\"key\":\"/w==\",\"key_encoding\":\"base64\",\"offset\":7}\n\n"
        );
    }
}
