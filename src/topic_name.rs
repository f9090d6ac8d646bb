//! Kafka's rules for topic names, checked before a name reaches the broker.

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks `name` against Kafka's rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, and not
/// `.` or `..`. Returns what is wrong, fit to show to a client.
pub fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name must not be empty".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!(
            "topic name is {} characters; the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name must not be \".\" or \"..\"".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name contains {bad:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_names() {
        for name in ["a", "users", "my.topic_v2-x", "..a", &"x".repeat(249)] {
            assert!(validate(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_what_kafka_rejects() {
        for name in ["", ".", "..", "a b", "a/b", "ü", "a\u{0}", &"x".repeat(250)] {
            assert!(validate(name).is_err(), "{name:?}");
        }
    }
}
