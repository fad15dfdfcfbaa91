//! A component's own `config:` block, and decoding into typed, `deny_unknown_fields` structs
//! with errors that keep their YAML path and position.

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::config::error::{ConfigError, ConfigErrorKind, closest};
use crate::config::position::{PositionIndex, YamlPath};

/// The `config:` block of one extension or node, as its factory sees it.
#[derive(Debug, Clone, Copy)]
pub struct ComponentConfig<'a> {
    value: &'a Value,
    path: &'a YamlPath,
    positions: &'a PositionIndex,
}

impl<'a> ComponentConfig<'a> {
    /// A view of `value` found at `path`. An absent or empty `config:` is an empty mapping.
    pub fn new(value: &'a Value, path: &'a YamlPath, positions: &'a PositionIndex) -> Self {
        Self {
            value,
            path,
            positions,
        }
    }

    /// The raw value.
    pub fn value(&self) -> &'a Value {
        self.value
    }

    /// Where the block is (`...nodes.dedup.config`).
    pub fn path(&self) -> &'a YamlPath {
        self.path
    }

    /// Decodes the block into `T`. Use `#[serde(deny_unknown_fields)]` on `T`: an unknown field
    /// is then reported with the valid ones and the nearest match.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        decode_at(self.value, self.path, self.positions)
    }

    /// An error about a field of the block that decoded but is not valid (a value out of
    /// range, two options that exclude each other), located at that field.
    pub fn invalid(&self, field: &str, message: impl Into<String>) -> ConfigError {
        let path =
            YamlPath::parse(field)
                .segments()
                .iter()
                .fold(self.path.clone(), |path, segment| match segment {
                    crate::config::position::PathSegment::Key(k) => path.key(k.clone()),
                    crate::config::position::PathSegment::Index(i) => path.index(*i),
                });
        let location = self.positions.locate(&path);
        ConfigError {
            path,
            location,
            kind: ConfigErrorKind::InvalidValue {
                message: message.into(),
            },
        }
    }

    /// The mapping at `field` (`protocols.grpc`) as a block of its own, handed to `decode`:
    /// for a component whose configuration holds another's, decoded and checked by that
    /// other's own code, its errors located inside this block. `None` when `field` is absent;
    /// a field present without a value (`grpc:`) is an empty mapping, so its defaults.
    pub fn nested<R>(
        &self,
        field: &str,
        decode: impl FnOnce(&ComponentConfig<'_>) -> R,
    ) -> Option<R> {
        let mut path = self.path.clone();
        let mut value = self.value;
        for segment in YamlPath::parse(field).segments() {
            let crate::config::position::PathSegment::Key(key) = segment else {
                return None;
            };
            value = value.get(key.as_str())?;
            path = path.key(key.clone());
        }
        let empty = Value::Mapping(serde_yaml_ng::Mapping::new());
        let value = if value.is_null() { &empty } else { value };
        Some(decode(&ComponentConfig::new(value, &path, self.positions)))
    }

    /// [`invalid`](Self::invalid) of what a config struct's own check found.
    pub fn located(&self, invalid: InvalidOption) -> ConfigError {
        self.invalid(&invalid.option, invalid.message)
    }
}

/// An option of a component's `config:` that decoded but is not valid, as a config struct's
/// own check reports it: the same check serves a block decoded from YAML (where
/// [`ComponentConfig::located`] adds the path and line) and a struct built in code (where
/// the constructor that takes it returns this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if option.is_empty() { String::new() } else { format!("`config.{option}`: ") })]
pub struct InvalidOption {
    /// The option, as a path inside the block (`tls.ca_file`, `tokens[2]`); empty for the
    /// block as a whole (a required option missing).
    pub option: String,
    /// What is wrong, and what would be valid.
    pub message: String,
}

impl InvalidOption {
    /// Option `option` (empty: the block) is not valid, for `message`.
    pub fn new(option: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            option: option.into(),
            message: message.into(),
        }
    }
}

/// Decodes `value` (found at `path`) into `T`, turning a serde error into a located
/// [`ConfigError`].
pub(crate) fn decode_at<T: DeserializeOwned>(
    value: &Value,
    path: &YamlPath,
    positions: &PositionIndex,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let mut at = path.clone();
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Map { key } => at = at.key(key.clone()),
                serde_path_to_error::Segment::Seq { index } => at = at.index(*index),
                _ => {}
            }
        }
        let kind = classify(&error.inner().to_string());
        if let ConfigErrorKind::UnknownField { field, .. } = &kind {
            // serde reports an unknown key at its parent; point at the key itself.
            if at.segments().last()
                != Some(&crate::config::position::PathSegment::Key(field.clone()))
            {
                at = at.key(field.clone());
            }
        }
        let location = positions.locate(&at);
        ConfigError {
            path: at,
            location,
            kind,
        }
    })
}

/// Recognizes serde's standard messages so that they become structured errors.
fn classify(message: &str) -> ConfigErrorKind {
    // serde: "unknown field `x`, expected one of `a`, `b`" / "expected `a`" / "there are no fields"
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, tail)) = rest.split_once('`')
    {
        let expected: Vec<String> = tail
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let suggestion = closest(field, expected.iter().map(String::as_str));
        return ConfigErrorKind::UnknownField {
            field: field.to_owned(),
            expected,
            suggestion,
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        return ConfigErrorKind::MissingField {
            field: field.to_owned(),
        };
    }
    ConfigErrorKind::InvalidValue {
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::position::Location;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        max_entries: usize,
        #[serde(default)]
        nested: Option<Nested>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        ttl: u64,
    }

    fn decode_text(text: &str) -> Result<Sample, ConfigError> {
        let positions = PositionIndex::build(text);
        let value: Value = serde_yaml_ng::from_str(text).expect("test YAML");
        let root = YamlPath::root();
        ComponentConfig::new(&value, &root, &positions).decode()
    }

    #[test]
    fn unknown_field_is_located_and_lists_valid_fields() {
        let error = decode_text("max_entries: 3\nmax_entires: 4\n").expect_err("unknown field");
        assert_eq!(error.path.to_string(), "max_entires");
        assert_eq!(
            error.location,
            Some(Location {
                file: 0,
                line: 2,
                column: 1
            })
        );
        assert_eq!(
            error.kind,
            ConfigErrorKind::UnknownField {
                field: "max_entires".into(),
                expected: vec!["max_entries".into(), "nested".into()],
                suggestion: Some("max_entries".into()),
            }
        );
    }

    #[test]
    fn nested_errors_carry_the_full_path() {
        let error = decode_text("max_entries: 3\nnested:\n  ttl: soon\n").expect_err("bad type");
        assert_eq!(error.path.to_string(), "nested.ttl");
        assert_eq!(
            error.location,
            Some(Location {
                file: 0,
                line: 3,
                column: 3
            })
        );
        assert!(matches!(error.kind, ConfigErrorKind::InvalidValue { .. }));
        let missing = decode_text("nested: { ttl: 1 }").expect_err("missing field");
        assert_eq!(
            missing.kind,
            ConfigErrorKind::MissingField {
                field: "max_entries".into()
            }
        );
    }

    #[test]
    fn a_nested_block_decodes_on_its_own_with_errors_located_in_the_whole() {
        let text = "outer:\n  inner:\n    ttl: soon\n  bare:\n";
        let positions = PositionIndex::build(text);
        let value: Value = serde_yaml_ng::from_str(text).expect("test YAML");
        let root = YamlPath::root();
        let config = ComponentConfig::new(&value, &root, &positions);
        let error = config
            .nested("outer.inner", |inner| inner.decode::<Nested>())
            .expect("present")
            .expect_err("bad type");
        assert_eq!(error.path.to_string(), "outer.inner.ttl");
        assert_eq!(error.location.map(|l| (l.line, l.column)), Some((3, 5)));
        let bare = config
            .nested("outer.bare", |bare| bare.decode::<Option<Nested>>())
            .expect("present");
        assert!(
            matches!(
                bare,
                Err(ConfigError {
                    kind: ConfigErrorKind::MissingField { .. },
                    ..
                })
            ),
            "an empty value is an empty mapping: {bare:?}"
        );
        assert!(config.nested("outer.absent", |_| ()).is_none());
        let invalid = config
            .nested("outer.inner", |inner| inner.invalid("ttl", "too soon"))
            .expect("present");
        assert_eq!(invalid.path.to_string(), "outer.inner.ttl");
        assert_eq!(invalid.location.map(|l| (l.line, l.column)), Some((3, 5)));
    }
}
