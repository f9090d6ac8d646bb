//! Where values and batches come from: an argument, a file, or stdin (`-`).

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::error::ClientError;

/// The bytes given as `argument` (`-`: stdin) or in `file` (`-`: stdin); clap makes sure
/// exactly one is there.
pub fn read_input(argument: Option<&str>, file: Option<&Path>) -> Result<Vec<u8>, ClientError> {
    match (argument, file) {
        (Some("-"), _) => read_stdin(),
        (Some(text), _) => Ok(text.as_bytes().to_vec()),
        (None, Some(path)) if path == Path::new("-") => read_stdin(),
        (None, Some(path)) => std::fs::read(path).map_err(|source| ClientError::Input {
            what: path.display().to_string(),
            source,
        }),
        (None, None) => Err(ClientError::Usage(
            "give a value, `-` for stdin, or --file".into(),
        )),
    }
}

fn read_stdin() -> Result<Vec<u8>, ClientError> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|source| ClientError::Input {
            what: "stdin".into(),
            source,
        })?;
    Ok(bytes)
}

/// The batch request body for `input`: a `{"ops": [...]}` object as is, an array of
/// operations, or operations one after another (one per line, as `jq -c` prints them).
pub fn batch_body(input: &[u8]) -> Result<Value, ClientError> {
    let invalid =
        |e: serde_json::Error| ClientError::Usage(format!("batch input is not JSON: {e}"));
    let values = serde_json::Deserializer::from_slice(input)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let ops = match <[Value; 1]>::try_from(values) {
        Ok([whole @ Value::Object(_)]) if whole.get("ops").is_some() => return Ok(whole),
        Ok([Value::Array(ops)]) => ops,
        Ok([op]) => vec![op],
        Err(values) if values.is_empty() => {
            return Err(ClientError::Usage("batch input is empty".into()));
        }
        Err(values) => values,
    };
    Ok(serde_json::json!({ "ops": ops }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batch_input_forms() {
        let op = json!({"op": "delete", "key": "k"});
        let whole = json!({"ops": [op]});
        assert_eq!(
            batch_body(whole.to_string().as_bytes()).expect("object"),
            whole
        );
        assert_eq!(
            batch_body(b"[{\"op\":\"delete\",\"key\":\"k\"}]").expect("array"),
            whole
        );
        assert_eq!(
            batch_body(b"{\"op\":\"delete\",\"key\":\"k\"}\n").expect("one op"),
            whole
        );
        let lines = b"{\"op\":\"delete\",\"key\":\"a\"}\n{\"op\":\"delete\",\"key\":\"b\"}\n";
        assert_eq!(
            batch_body(lines).expect("lines"),
            json!({"ops": [{"op": "delete", "key": "a"}, {"op": "delete", "key": "b"}]})
        );
        assert!(batch_body(b"").is_err());
        assert!(batch_body(b"{\"op\":").is_err());
    }
}
