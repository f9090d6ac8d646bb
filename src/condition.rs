//! Conditions a write states on keys: `If-Match`, `If-None-Match`, and an atomic batch's
//! `if_version`, `if_absent` and `checks`. The writer judges them against the keys' latest
//! versions in log order ([`crate::writer::Writer::write_if`]); nothing here does I/O.

/// What must be true of a key's version (the offset of its latest record; none if absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The key exists and its version is one of these (`If-Match` with ETags, `if_version`).
    VersionIn(Vec<i64>),
    /// The key exists (`If-Match: *`, `if_exists`).
    Exists,
    /// The key does not exist (`If-None-Match: *`, `if_absent`).
    Absent,
    /// The key is absent or its version is none of these (`If-None-Match` with ETags).
    VersionNotIn(Vec<i64>),
}

impl Condition {
    /// Whether the condition holds for a key at `version`.
    pub fn holds(&self, version: Option<i64>) -> bool {
        match self {
            Condition::VersionIn(versions) => version.is_some_and(|v| versions.contains(&v)),
            Condition::Exists => version.is_some(),
            Condition::Absent => version.is_none(),
            Condition::VersionNotIn(versions) => version.is_none_or(|v| !versions.contains(&v)),
        }
    }
}

/// A condition on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition {
    /// The key.
    pub key: Vec<u8>,
    /// What must hold of it.
    pub condition: Condition,
}

/// A precondition that did not hold, and the key's version when it was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmet {
    /// Its place among the write's preconditions.
    pub index: usize,
    /// The key's version then; `None` if it was absent.
    pub version: Option<i64>,
}

/// The preconditions that do not hold, given each one's key version in the same order.
pub fn unmet(preconditions: &[Precondition], versions: &[Option<i64>]) -> Vec<Unmet> {
    preconditions
        .iter()
        .zip(versions)
        .enumerate()
        .filter(|(_, (precondition, version))| !precondition.condition.holds(**version))
        .map(|(index, (_, version))| Unmet {
            index,
            version: *version,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_condition_against_absent_and_present_keys() {
        let cases = [
            (Condition::VersionIn(vec![3, 7]), [false, true, false]),
            (Condition::Exists, [false, true, true]),
            (Condition::Absent, [true, false, false]),
            (Condition::VersionNotIn(vec![3, 7]), [true, false, true]),
        ];
        for (condition, expected) in cases {
            let got = [None, Some(7), Some(8)].map(|version| condition.holds(version));
            assert_eq!(got, expected, "{condition:?}");
        }
    }

    #[test]
    fn unmet_names_each_failing_precondition_with_its_version() {
        let on = |key: &str, condition| Precondition {
            key: key.as_bytes().to_vec(),
            condition,
        };
        let preconditions = [
            on("a", Condition::Absent),
            on("b", Condition::VersionIn(vec![4])),
            on("c", Condition::Exists),
        ];
        let unmet = unmet(&preconditions, &[None, Some(5), None]);
        assert_eq!(
            unmet,
            [
                Unmet {
                    index: 1,
                    version: Some(5)
                },
                Unmet {
                    index: 2,
                    version: None
                }
            ]
        );
    }
}
