//! Kafka's rules for topic names, checked before a name reaches the broker, and patterns
//! over topic names (`users*`) as used by token scopes and `topics.deny`.

use std::fmt;

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

/// A glob over topic names: `*` matches any run of characters, `?` any one character, and
/// `[abc]` one of a set. `users*` matches `users` and `users-eu`; `*` matches every topic.
#[derive(Clone)]
pub struct TopicPattern {
    source: String,
    matcher: globset::GlobMatcher,
}

impl TopicPattern {
    /// Parses `pattern`. Returns what is wrong, fit to show to an operator.
    pub fn new(pattern: &str) -> Result<TopicPattern, String> {
        if pattern.is_empty() {
            return Err("topic pattern must not be empty".into());
        }
        if let Some(bad) = pattern.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | '?' | '[' | ']'))
        }) {
            return Err(format!(
                "topic pattern {pattern:?} contains {bad:?}; topic names have only ASCII \
                 letters, digits, '.', '_' and '-', and patterns add '*', '?' and '[...]'"
            ));
        }
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .backslash_escape(false)
            .build()
            .map_err(|e| format!("topic pattern {pattern:?} is invalid: {}", e.kind()))?;
        Ok(TopicPattern {
            source: pattern.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }

    /// Whether `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        self.matcher.is_match(topic)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Debug for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicPattern({:?})", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_shell_globs() {
        let users = TopicPattern::new("users*").expect("valid");
        assert!(users.matches("users"));
        assert!(users.matches("users-eu.v2"));
        assert!(!users.matches("orders"));
        assert!(!users.matches("my-users"));
        let internal = TopicPattern::new("__*").expect("valid");
        assert!(internal.matches("__consumer_offsets"));
        assert!(!internal.matches("_schemas"));
        let all = TopicPattern::new("*").expect("valid");
        assert!(all.matches("anything.at_all-1"));
        let one = TopicPattern::new("t?").expect("valid");
        assert!(one.matches("t1") && !one.matches("t12"));
        let exact = TopicPattern::new("orders").expect("valid");
        assert!(exact.matches("orders") && !exact.matches("orders2"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for pattern in ["", "a b", "a/b", "x{a,b}", "[unclosed", "a\\*"] {
            assert!(TopicPattern::new(pattern).is_err(), "{pattern:?}");
        }
    }

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
