//! `kvstore watch`: reads `/v1/{topic}/watch` and prints one JSON object a line per event:
//! the event's data with `event` (and `id`, when it has one) added. A dropped connection, a
//! server that stops or fails, or a stream ended for falling behind is followed by a new
//! request that resumes strictly after the last `id` printed (`Last-Event-ID`), so nothing is
//! printed twice or skipped; a position the server no longer keeps (410) ends the command
//! with an error. A snapshot cut short before its `synced` is sent again in full.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use super::args::WatchArgs;
use super::error::ClientError;
use super::http::{api_error, segment, unreachable};

/// The first wait before reconnecting; doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// The longest wait before reconnecting.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One event of the stream.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    event: String,
    id: Option<i64>,
    data: String,
}

/// Parses Server-Sent Events as they arrive, a chunk at a time.
#[derive(Debug, Default)]
struct Parser {
    buffer: Vec<u8>,
}

impl Parser {
    /// Adds `chunk`; returns the events it completed.
    fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(end) = self.buffer[start..]
            .windows(2)
            .position(|pair| pair == b"\n\n")
        {
            let block = String::from_utf8_lossy(&self.buffer[start..start + end]).into_owned();
            start += end + 2;
            let mut event = Event {
                event: "message".into(),
                id: None,
                data: String::new(),
            };
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.event = value.to_owned(),
                    "id" => event.id = value.parse().ok(),
                    "data" => event.data.push_str(value),
                    // Comments (keep-alives) and fields this client has no use for.
                    _ => {}
                }
            }
            if !event.data.is_empty() {
                events.push(event);
            }
        }
        self.buffer.drain(..start);
        events
    }
}

/// How a stream ended.
enum Ended {
    /// The connection dropped or the server ended the stream: resume.
    Dropped(String),
    /// The server answered or sent an error that passes by itself: resume after a pause.
    Retry(String),
}

/// Follows the topic until an error that retrying cannot mend.
pub async fn watch(args: WatchArgs) -> Result<(), ClientError> {
    let base = args.url.trim_end_matches('/');
    let url = format!("{base}/v1/{}/watch", segment("topic", &args.topic)?);
    reqwest::Url::parse(&url)
        .map_err(|e| ClientError::Usage(format!("invalid --url {:?}: {e}", args.url)))?;
    // No total timeout: a stream lasts as long as it is followed.
    let http = args
        .security
        .apply(reqwest::Client::builder().connect_timeout(Duration::from_secs(10)))
        .map_err(ClientError::Usage)?
        .build()
        .map_err(|e| ClientError::Usage(format!("building the HTTP client: {e}")))?;
    let mut position = args.from;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let ended = follow(&http, &url, &args, &mut position, &mut backoff).await?;
        let (reason, pause) = match ended {
            Ended::Dropped(reason) => (reason, FIRST_BACKOFF),
            Ended::Retry(reason) => {
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                (reason, pause)
            }
        };
        let after = position.map_or_else(|| "from now".to_owned(), |p| format!("after {p}"));
        eprintln!("kvstore watch: {reason}; resuming {after} in {pause:?}");
        tokio::time::sleep(pause).await;
    }
}

/// One request: prints its events until it ends; keeps `position` at the last `id` printed.
async fn follow(
    http: &reqwest::Client,
    url: &str,
    args: &WatchArgs,
    position: &mut Option<i64>,
    backoff: &mut Duration,
) -> Result<Ended, ClientError> {
    let mut query: Vec<(&str, &str)> = [
        ("prefix", args.keys.prefix.as_deref()),
        ("start", args.keys.start.as_deref()),
        ("end", args.keys.end.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
    .collect();
    let mut request = http.get(url);
    match position {
        Some(offset) => request = request.header("last-event-id", offset.to_string()),
        None if args.snapshot => query.push(("snapshot", "true")),
        None => {}
    }
    let mut response = match request.query(&query).send().await {
        Ok(response) => response,
        Err(error) => return Ok(Ended::Retry(unreachable(url, &error).to_string())),
    };
    let status = response.status();
    if !status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        let error = api_error(status.as_u16(), &body);
        // Busy, unavailable, not caught up: another try may do. Anything else will not.
        return match status.as_u16() {
            429 | 500..=599 => Ok(Ended::Retry(error.to_string())),
            _ => Err(error),
        };
    }
    let mut parser = Parser::default();
    loop {
        let chunk = match tokio::time::timeout(args.idle_timeout, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => return Ok(Ended::Dropped("the server ended the stream".into())),
            Ok(Err(error)) => return Ok(Ended::Dropped(unreachable(url, &error).to_string())),
            Err(_) => {
                return Ok(Ended::Dropped(format!(
                    "nothing received for {:?}",
                    args.idle_timeout
                )));
            }
        };
        *backoff = FIRST_BACKOFF;
        let mut stdout = std::io::stdout().lock();
        for event in parser.feed(&chunk) {
            if event.event == "error" {
                // The server's error body. Resuming will tell: a position no longer kept
                // answers 410, which ends the command.
                let body: Value = serde_json::from_str(&event.data).unwrap_or_default();
                let error = &body["error"];
                return Ok(Ended::Retry(format!(
                    "the stream ended with an error: {} ({})",
                    error["message"].as_str().unwrap_or(&event.data),
                    error["code"].as_str().unwrap_or("unknown"),
                )));
            }
            stdout.write_all(line_of(&event).as_bytes())?;
            stdout.flush()?;
            if event.id.is_some() {
                *position = event.id;
            }
        }
    }
}

/// The line printed for `event`: its data with `event` and `id` first, the data's fields
/// in the server's order after them.
fn line_of(event: &Event) -> String {
    let mut line = format!("{{\"event\":{}", Value::String(event.event.clone()));
    if let Some(id) = event.id {
        line.push_str(&format!(",\"id\":{id}"));
    }
    match serde_json::from_str::<Value>(&event.data) {
        Ok(Value::Object(fields)) if !fields.is_empty() => {
            // The data as it came, past its opening brace.
            line.push(',');
            line.push_str(event.data.trim().trim_start_matches('{'));
        }
        Ok(Value::Object(_)) => line.push('}'),
        // Not an object (no kvstore sends one): kept whole under `data`.
        _ => line.push_str(&format!(
            ",\"data\":{}}}",
            Value::String(event.data.clone())
        )),
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_chunks_and_comments_skipped() {
        let mut parser = Parser::default();
        assert!(parser.feed(b": keep-alive\n\nevent: put\nid: 4").is_empty());
        let events = parser.feed(b"2\ndata: {\"key\":\"k\"}\n\nevent: put\ndata: {}\n\n");
        assert_eq!(
            events,
            [
                Event {
                    event: "put".into(),
                    id: Some(42),
                    data: "{\"key\":\"k\"}".into()
                },
                Event {
                    event: "put".into(),
                    id: None,
                    data: "{}".into()
                }
            ]
        );
        assert!(parser.buffer.is_empty());
        assert_eq!(
            line_of(&events[0]),
            "{\"event\":\"put\",\"id\":42,\"key\":\"k\"}\n"
        );
        assert_eq!(line_of(&events[1]), "{\"event\":\"put\"}\n");
    }
}
