//! What each client command does: one request (or one per page), then its output.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::args::{
    BatchArgs, ClientCommand, Connection, DeleteArgs, GetArgs, PutArgs, RangeArgs, TopicsArgs,
};
use super::error::ClientError;
use super::http::{KvClient, RangeQuery};
use super::input::{batch_body, read_input};
use super::output::{Output, escape, value_field};
use crate::http::encoding::{ValueEncoding, embed};

/// Runs `command` against the server its arguments name.
pub async fn execute(command: ClientCommand) -> Result<(), ClientError> {
    match command {
        ClientCommand::Get(args) => get(args).await,
        ClientCommand::Put(args) => put(args).await,
        ClientCommand::Delete(args) => delete(args).await,
        ClientCommand::Range(args) => range(args).await,
        ClientCommand::Batch(args) => batch(args).await,
        ClientCommand::Topics(args) => topics(args).await,
        ClientCommand::Watch(args) => super::watch::watch(args).await,
    }
}

fn client(connection: &Connection) -> Result<KvClient, ClientError> {
    KvClient::new(&connection.url, connection.timeout, &connection.security)
}

/// `kvstore get --json`: a range item with its topic.
#[derive(Debug, Serialize)]
struct GetOutput<'a> {
    topic: &'a str,
    key: &'a str,
    value: Value,
    encoding: ValueEncoding,
    content_type: &'a str,
    offset: Option<i64>,
}

/// The raw value; with `--json`, the value embedded as range items embed it, with its
/// content type and offset.
async fn get(args: GetArgs) -> Result<(), ClientError> {
    let stored = client(&args.connection)?
        .get_key(&args.topic, &args.key, &args.freshness)
        .await?;
    let mut out = Output::stdout();
    if args.connection.json {
        let (value, encoding) = embed(&stored.bytes, &stored.content_type);
        let shown = GetOutput {
            topic: &args.topic,
            key: &args.key,
            value,
            encoding,
            content_type: &stored.content_type,
            offset: stored.offset,
        };
        out.json(&shown)?;
    } else {
        out.raw(&stored.bytes)?;
        // On a terminal the prompt would follow the value on its line; piped or redirected,
        // the bytes stay exactly as stored.
        if out.is_terminal() && !stored.bytes.ends_with(b"\n") {
            out.raw(b"\n")?;
        }
    }
    out.finish()
}

async fn put(args: PutArgs) -> Result<(), ClientError> {
    let value = read_input(args.value.as_deref(), args.file.as_deref())?;
    let answer = client(&args.connection)?
        .put_key(
            &args.topic,
            &args.key,
            value,
            args.content_type.as_deref(),
            &args.conditions,
        )
        .await?;
    print_write(&answer, &args.connection)
}

async fn delete(args: DeleteArgs) -> Result<(), ClientError> {
    let answer = client(&args.connection)?
        .delete_key(&args.topic, &args.key, &args.conditions)
        .await?;
    print_write(&answer, &args.connection)
}

async fn batch(args: BatchArgs) -> Result<(), ClientError> {
    let mut body = batch_body(&read_input(args.ops.as_deref(), args.file.as_deref())?)?;
    if args.atomic {
        body["atomic"] = Value::Bool(true);
    }
    let answer = client(&args.connection)?.batch(&args.topic, &body).await?;
    print_write(&answer, &args.connection)
}

/// Reads `T` out of an answer kept as it came.
fn parse<'a, T: Deserialize<'a>>(
    raw: &'a RawValue,
    connection: &Connection,
) -> Result<T, ClientError> {
    serde_json::from_str(raw.get()).map_err(|e| ClientError::Unexpected {
        url: connection.url.clone(),
        reason: format!("{e} in {}", raw.get()),
    })
}

/// The part of a write's answer printed without `--json`.
#[derive(Debug, Deserialize)]
struct Written {
    offset: i64,
}

/// A write's answer: its offset alone, or the server's JSON as it came with `--json`.
fn print_write(answer: &RawValue, connection: &Connection) -> Result<(), ClientError> {
    let mut out = Output::stdout();
    if connection.json {
        out.raw_json(answer)?;
    } else {
        let written: Written = parse(answer, connection)?;
        out.line(&[written.offset.to_string()])?;
    }
    out.finish()
}

/// One page of a range, its items kept as they came.
#[derive(Debug, Deserialize)]
struct RangePage {
    items: Vec<Box<RawValue>>,
    next_cursor: Option<String>,
}

/// Every key of the range (or `--limit` of them), page after page. With `--json` the output
/// has the shape of one range page: all the items, and `next_cursor` if `--limit` stopped
/// the listing before its end.
async fn range(args: RangeArgs) -> Result<(), ClientError> {
    let client = client(&args.connection)?;
    let json = args.connection.json;
    let mut out = Output::stdout();
    let mut cursor = args.cursor.clone();
    let mut remaining = args.limit;
    let mut written = 0_u64;
    let mut first_page = true;
    loop {
        let limit = match (remaining, args.page_size) {
            (Some(remaining), Some(page)) => Some(remaining.min(page)),
            (remaining, page) => remaining.or(page),
        };
        let query = RangeQuery {
            prefix: args.keys.prefix.as_deref(),
            start: args.keys.start.as_deref(),
            end: args.keys.end.as_deref(),
            limit,
            cursor: cursor.as_deref(),
        };
        let page: RangePage = client
            .range_page(&args.topic, &query, &args.freshness)
            .await?;
        // Opened once the first page is in, so a listing that fails at once prints nothing.
        if json && first_page {
            out.raw(b"{\"items\":[")?;
        }
        first_page = false;
        for item in &page.items {
            if json {
                if written > 0 {
                    out.raw(b",")?;
                }
                out.raw(item.get().as_bytes())?;
            } else {
                out.line(&item_fields(&parse(item, &args.connection)?))?;
            }
            written += 1;
        }
        if let Some(remaining) = remaining.as_mut() {
            *remaining = remaining.saturating_sub(page.items.len() as u64);
        }
        cursor = page.next_cursor;
        if cursor.is_none() || remaining == Some(0) {
            break;
        }
        if page.items.is_empty() {
            return Err(ClientError::Unexpected {
                url: args.connection.url.clone(),
                reason: "an empty range page with a next_cursor".into(),
            });
        }
    }
    if json {
        out.raw(b"]")?;
        if let Some(cursor) = &cursor {
            out.raw(b",\"next_cursor\":")?;
            out.json_fragment(&json!(cursor))?;
        }
        out.raw(b"}\n")?;
    }
    out.finish()
}

/// `key` and `value` of a range item as line fields. A key that is not UTF-8 comes as its
/// base64, as the server sends it.
fn item_fields(item: &Value) -> [String; 2] {
    let key = item["key"].as_str().unwrap_or_default();
    let key = if item.get("key_encoding").is_some() {
        key.to_owned()
    } else {
        escape(key).into_owned()
    };
    let encoding = item["encoding"].as_str().unwrap_or_default();
    [key, value_field(&item["value"], encoding)]
}

/// `/v1/topics`, the fields printed without `--json`.
#[derive(Debug, Deserialize)]
struct TopicList {
    topics: Vec<TopicLine>,
}

/// One attached topic, as `/v1/topics` lists it.
#[derive(Debug, Deserialize)]
struct TopicLine {
    name: String,
    state: String,
    keys: u64,
    bytes: u64,
    applied_offset: i64,
    end_offset: Option<i64>,
    lag: Option<i64>,
}

/// One line per topic, tab-separated, with a header when stdout is a terminal.
async fn topics(args: TopicsArgs) -> Result<(), ClientError> {
    let answer = client(&args.connection)?.topics().await?;
    let mut out = Output::stdout();
    if args.connection.json {
        out.raw_json(&answer)?;
        return out.finish();
    }
    let TopicList { topics } = parse(&answer, &args.connection)?;
    if out.is_terminal() {
        out.line(&[
            "name",
            "state",
            "keys",
            "bytes",
            "applied_offset",
            "end_offset",
            "lag",
        ])?;
    }
    let known = |n: Option<i64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    for topic in topics {
        out.line(&[
            topic.name,
            topic.state,
            topic.keys.to_string(),
            topic.bytes.to_string(),
            topic.applied_offset.to_string(),
            known(topic.end_offset),
            known(topic.lag),
        ])?;
    }
    out.finish()
}
