//! README's configuration table held to the code: every setting is listed, under the
//! environment variable the loader reads, with the default `Config::default()` has.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Config;

/// The rows of the table under README's "## Configuration": key -> (env, default), as written.
fn documented() -> BTreeMap<String, (String, String)> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split_once("\n## Configuration\n")
        .and_then(|(_, rest)| rest.split("\n## ").next())
        .expect("README has a Configuration section");
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let env = cells.get(2)?.trim_matches('`');
            let default = cells.get(3)?.trim_matches('`');
            Some((key.to_owned(), (env.to_owned(), default.to_owned())))
        })
        .collect()
}

/// Every leaf of the default configuration, by dotted key, as README writes it. A table of
/// free-form entries (`kafka.librdkafka`), empty by default, is a leaf `{}`.
fn defaults() -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
        match value {
            Value::Object(fields) if !fields.is_empty() => {
                for (name, value) in fields {
                    let key = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&key, value, out);
                }
            }
            Value::Object(_) => {
                out.insert(prefix.to_owned(), "{}".to_owned());
            }
            Value::Null => {
                out.insert(prefix.to_owned(), "none".to_owned());
            }
            Value::String(text) => {
                out.insert(prefix.to_owned(), text.clone());
            }
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    let value = serde_json::to_value(Config::default()).expect("the default config serializes");
    walk("", &value, &mut out);
    out
}

/// Settings whose README default is not the literal value: said in words, or computed when
/// the service starts.
const DESCRIBED: &[&str] = &[
    // An empty prefix becomes kvstore-<hostname>-<bound port> at startup.
    "consistency.transactional_id",
    // Unset means on unless the listener is a loopback address.
    "auth.enabled",
    // Unset means the system's CA certificates.
    "kafka.tls.ca_file",
];

/// Whether README's default cell says `default`; "—" is README's word for unset or empty.
fn says(written: &str, default: &str) -> bool {
    written == default || (written == "—" && matches!(default, "none" | "" | "[]" | "{}"))
}

#[test]
fn readme_lists_every_setting_with_its_environment_variable_and_default() {
    let documented = documented();
    let defaults = defaults();
    let mut problems = Vec::new();
    for (key, default) in &defaults {
        let Some((env, written)) = documented.get(key) else {
            problems.push(format!("{key} (default {default}) is not in README"));
            continue;
        };
        let expected_env = format!("KVSTORE_{}", key.to_uppercase().replace('.', "__"));
        // A secret is named by reference: `..._PASSWORD__FILE` or `__ENV`. A free-form table
        // has no variable of its own (its entries would each be one).
        let free_form = default == "{}" && env == "—";
        if !env.starts_with(&expected_env) && !free_form {
            problems.push(format!(
                "{key}: README says {env}, the loader reads {expected_env}"
            ));
        }
        if !DESCRIBED.contains(&key.as_str()) && !says(written, default) {
            problems.push(format!(
                "{key}: README says {written}, the default is {default}"
            ));
        }
    }
    for key in documented.keys() {
        if !defaults.contains_key(key) {
            problems.push(format!("README lists {key}, which is no setting"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
