//! Checks on a loaded configuration that its types alone cannot express.

use super::{Config, ConfigError};
use crate::topic_name::TopicPattern;

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("limits.max_key_bytes", self.limits.max_key_bytes),
            ("limits.max_value_bytes", self.limits.max_value_bytes),
            ("limits.max_batch_ops", self.limits.max_batch_ops),
            ("limits.max_batch_bytes", self.limits.max_batch_bytes),
            (
                "limits.default_range_limit",
                self.limits.default_range_limit,
            ),
            ("limits.max_range_limit", self.limits.max_range_limit),
            ("limits.max_range_bytes", self.limits.max_range_bytes),
            ("limits.max_topics", self.limits.max_topics),
            ("limits.max_pending_writes", self.limits.max_pending_writes),
            (
                "limits.max_atomic_batch_ops",
                self.limits.max_atomic_batch_ops,
            ),
            ("consistency.transactions", self.consistency.transactions),
            (
                "http.max_concurrent_requests",
                self.http.max_concurrent_requests,
            ),
            ("watch.max_watchers", self.watch.max_watchers),
            ("watch.retain_changes", self.watch.retain_changes),
            ("watch.retain_bytes", self.watch.retain_bytes),
            ("watch.max_buffer_bytes", self.watch.max_buffer_bytes),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.limits.default_range_limit > self.limits.max_range_limit {
            return Err(invalid(
                "limits.default_range_limit",
                "must not exceed limits.max_range_limit",
            ));
        }
        // Kafka's own ceiling on a record is an i32 byte count; stay well inside it.
        if self.limits.max_value_bytes > 512 * 1024 * 1024 {
            return Err(invalid("limits.max_value_bytes", "must be at most 512 MiB"));
        }
        let durations = [
            ("write_timeout", self.write_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("http.body_read_timeout", self.http.body_read_timeout),
            ("topics.attach_timeout", self.topics.attach_timeout),
            ("kafka.health_interval", self.kafka.health_interval),
            ("kafka.admin_timeout", self.kafka.admin_timeout),
            ("consistency.default_wait", self.consistency.default_wait),
            ("consistency.max_wait", self.consistency.max_wait),
            ("watch.progress_interval", self.watch.progress_interval),
            ("watch.keep_alive_interval", self.watch.keep_alive_interval),
        ];
        for (key, value) in durations {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than 0s"));
            }
        }
        if self.consistency.transactions > 64 {
            return Err(invalid("consistency.transactions", "must be at most 64"));
        }
        // Kafka counts the timeout in whole milliseconds and refuses one under a second.
        if self.consistency.transaction_timeout < std::time::Duration::from_secs(1) {
            return Err(invalid(
                "consistency.transaction_timeout",
                "must be at least 1s",
            ));
        }
        if self.consistency.default_wait > self.consistency.max_wait {
            return Err(invalid(
                "consistency.default_wait",
                "must not exceed consistency.max_wait",
            ));
        }
        if self
            .consistency
            .transactional_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err(invalid(
                "consistency.transactional_id",
                "must not be empty; leave it out for the default",
            ));
        }
        match (&self.http.tls.cert_file, &self.http.tls.key_file) {
            (Some(_), None) => {
                return Err(invalid(
                    "http.tls.key_file",
                    "must be set when http.tls.cert_file is",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "http.tls.cert_file",
                    "must be set when http.tls.key_file is",
                ));
            }
            _ => {}
        }
        if self.brokers.trim().is_empty() {
            return Err(invalid("brokers", "must name at least one host:port"));
        }
        if self.topics.replication_factor == 0 || self.topics.replication_factor < -1 {
            return Err(invalid(
                "topics.replication_factor",
                "must be -1 (broker default) or at least 1",
            ));
        }
        for pattern in &self.topics.deny {
            TopicPattern::new(pattern).map_err(|problem| invalid("topics.deny", problem))?;
        }
        let denied = self.denied_topics();
        for topic in &self.topics.preload {
            if let Err(problem) = crate::topic_name::validate(topic) {
                return Err(invalid("topics.preload", format!("{topic:?}: {problem}")));
            }
            if let Some(pattern) = denied.iter().find(|p| p.matches(topic)) {
                return Err(invalid(
                    "topics.preload",
                    format!("{topic:?} matches the topics.deny pattern {pattern:?}"),
                ));
            }
        }
        self.validate_kafka_security()?;
        self.validate_auth()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(invalid("log_level", "is not a valid tracing filter"));
        }
        Ok(())
    }

    fn validate_kafka_security(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        let protocol = kafka.security_protocol;
        if protocol.uses_sasl() {
            if kafka.sasl.username.is_empty() {
                return Err(invalid(
                    "kafka.sasl.username",
                    format!(
                        "must be set with security_protocol {}",
                        protocol.as_librdkafka()
                    ),
                ));
            }
            if kafka.sasl.password.is_none() {
                return Err(invalid(
                    "kafka.sasl.password",
                    "must name a file or environment variable: { file = \"...\" } or { env = \"...\" }",
                ));
            }
        }
        let tls = &kafka.tls;
        let tls_set = tls.ca_file.is_some()
            || tls.cert_file.is_some()
            || tls.key_file.is_some()
            || tls.key_password.is_some();
        if tls_set && !protocol.uses_tls() {
            return Err(invalid(
                "kafka.tls",
                "is only used with security_protocol ssl or sasl_ssl",
            ));
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(invalid(
                "kafka.tls.cert_file",
                "and kafka.tls.key_file must be given together",
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for token in &self.auth.tokens {
            if token.name.trim().is_empty() {
                return Err(invalid("auth.tokens", "every token needs a name"));
            }
            if !names.insert(token.name.as_str()) {
                return Err(invalid(
                    "auth.tokens",
                    format!("two tokens are named {:?}", token.name),
                ));
            }
            for scope in &token.scopes {
                super::Scope::parse(scope).map_err(|problem| {
                    invalid("auth.tokens", format!("token {:?}: {problem}", token.name))
                })?;
            }
        }
        if self.auth_enabled() && self.auth.tokens.is_empty() {
            let why = match self.auth.enabled {
                Some(_) => "auth.enabled is true".to_owned(),
                None => format!(
                    "auth is on by default when listening on {}, which is not a loopback address",
                    self.listen
                ),
            };
            return Err(invalid(
                "auth.tokens",
                format!(
                    "is empty but {why}: configure tokens, or set auth.enabled = false \
                     (KVSTORE_AUTH__ENABLED=false) to serve without authentication"
                ),
            ));
        }
        Ok(())
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}
