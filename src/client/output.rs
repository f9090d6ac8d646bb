//! Writing to stdout, and values as fields of `key<TAB>value` lines.
//!
//! A line holds one key and one value, so text that could break it is escaped the way
//! PostgreSQL's `COPY` text format does: `\\`, `\t`, `\n` and `\r`. JSON values are printed
//! compact (which never holds a raw tab or newline), and binary values as their base64.

use std::borrow::Cow;
use std::io::{BufWriter, IsTerminal, Stdout, Write};

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::error::ClientError;

/// Buffered stdout; call [`Output::finish`] to flush it.
#[derive(Debug)]
pub struct Output {
    out: BufWriter<Stdout>,
    terminal: bool,
}

impl Output {
    /// Stdout.
    pub fn stdout() -> Output {
        let stdout = std::io::stdout();
        Output {
            terminal: stdout.is_terminal(),
            out: BufWriter::new(stdout),
        }
    }

    /// Whether a person is likely reading (stdout is a terminal).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// Writes bytes as they are.
    pub fn raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        Ok(self.out.write_all(bytes)?)
    }

    /// Writes `fields` joined by tabs, and a newline.
    pub fn line<S: AsRef<str>>(&mut self, fields: &[S]) -> Result<(), ClientError> {
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                self.out.write_all(b"\t")?;
            }
            self.out.write_all(field.as_ref().as_bytes())?;
        }
        Ok(self.out.write_all(b"\n")?)
    }

    /// Writes `value` as compact JSON, without a newline.
    pub fn json_fragment(&mut self, value: &impl Serialize) -> Result<(), ClientError> {
        serde_json::to_writer(&mut self.out, value).map_err(std::io::Error::from)?;
        Ok(())
    }

    /// Writes `value` as compact JSON and a newline.
    pub fn json(&mut self, value: &impl Serialize) -> Result<(), ClientError> {
        self.json_fragment(value)?;
        Ok(self.out.write_all(b"\n")?)
    }

    /// Writes JSON as it came, and a newline.
    pub fn raw_json(&mut self, json: &RawValue) -> Result<(), ClientError> {
        self.raw(json.get().as_bytes())?;
        self.raw(b"\n")
    }

    /// Flushes what is buffered.
    pub fn finish(mut self) -> Result<(), ClientError> {
        Ok(self.out.flush()?)
    }
}

/// `text` with `\`, tab, newline and carriage return escaped, so it fits in one field.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['\\', '\t', '\n', '\r']) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\t' => escaped.push_str("\\t"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// A range item's `value` as one field, by its `encoding`: JSON compact, text escaped,
/// base64 as it is.
pub fn value_field(value: &Value, encoding: &str) -> String {
    match value {
        Value::String(text) if encoding != "json" => escape(text).into_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_what_would_break_a_line() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\tb\nc\rd\\e"), "a\\tb\\nc\\rd\\\\e");
    }

    #[test]
    fn values_as_fields() {
        assert_eq!(value_field(&json!("two\nlines"), "text"), "two\\nlines");
        assert_eq!(value_field(&json!("AAH/"), "base64"), "AAH/");
        assert_eq!(
            value_field(&json!({"a": "x\ty"}), "json"),
            r#"{"a":"x\ty"}"#
        );
        assert_eq!(value_field(&json!("hi"), "json"), r#""hi""#);
        assert_eq!(value_field(&json!(42), "json"), "42");
    }
}
