//! `${env:NAME}` substitution in string values.
//!
//! A string that is exactly one reference takes the variable's value as a YAML scalar, so
//! `port: ${env:PORT}` is a number and `enabled: ${env:FLAG}` a boolean; a reference inside a
//! longer string is replaced as text. `$${` stands for a literal `${`. Keys are not substituted.

use serde_yaml_ng::Value;

use crate::config::error::{ConfigError, ConfigErrorKind};
use crate::config::position::YamlPath;

/// Replaces every reference in `value`, reporting each unset variable or malformed reference.
pub fn substitute(
    value: &mut Value,
    path: &YamlPath,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        Value::String(text) if text.contains('$') => match expand(text, lookup) {
            Ok(Expanded::Whole(raw)) => *value = scalar(raw),
            Ok(Expanded::Text(expanded)) => *text = expanded,
            Err(kind) => errors.push(ConfigError::new(path.clone(), kind)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, &path.index(i), lookup, errors);
            }
        }
        Value::Mapping(entries) => {
            for (key, item) in entries.iter_mut() {
                let child = match key {
                    Value::String(k) => path.key(k.clone()),
                    other => path.key(format!("{other:?}")),
                };
                substitute(item, &child, lookup, errors);
            }
        }
        Value::Tagged(tagged) => substitute(&mut tagged.value, path, lookup, errors),
        _ => {}
    }
}

enum Expanded {
    /// The string was a single reference: this is the variable's raw value.
    Whole(String),
    /// The string with every reference replaced.
    Text(String),
}

fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, ConfigErrorKind> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if tail.starts_with("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| ConfigErrorKind::InvalidReference {
                    reference: tail.to_owned(),
                })?;
            let reference = &tail[..=end];
            let name = reference[2..end]
                .strip_prefix("env:")
                .filter(|n| is_variable_name(n))
                .ok_or_else(|| ConfigErrorKind::InvalidReference {
                    reference: reference.to_owned(),
                })?;
            let value = lookup(name).ok_or_else(|| ConfigErrorKind::UnsetEnvVar {
                name: name.to_owned(),
            })?;
            if reference.len() == text.len() {
                return Ok(Expanded::Whole(value));
            }
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Expanded::Text(out))
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variable's value read as a YAML scalar (number, boolean), or as text otherwise.
fn scalar(raw: String) -> Value {
    match serde_yaml_ng::from_str::<Value>(&raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_))) => v,
        _ => Value::String(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> (Value, Vec<ConfigError>) {
        let mut value: Value = serde_yaml_ng::from_str(yaml).expect("test YAML");
        let mut errors = Vec::new();
        let lookup = |name: &str| match name {
            "PORT" => Some("4318".to_owned()),
            "HOST" => Some("127.0.0.1".to_owned()),
            "TOKEN" => Some("s3cr3t".to_owned()),
            _ => None,
        };
        substitute(&mut value, &YamlPath::root(), &lookup, &mut errors);
        (value, errors)
    }

    #[test]
    fn whole_references_become_typed_scalars() {
        let (value, errors) = run("port: ${env:PORT}\ntoken: ${env:TOKEN}");
        assert!(errors.is_empty());
        assert_eq!(value["port"], Value::from(4318));
        assert_eq!(value["token"], Value::from("s3cr3t"));
    }

    #[test]
    fn embedded_references_are_replaced_as_text() {
        let (value, errors) = run("listen: '${env:HOST}:${env:PORT}'\nprice: '$5 and $${env:X}'");
        assert!(errors.is_empty());
        assert_eq!(value["listen"], Value::from("127.0.0.1:4318"));
        assert_eq!(value["price"], Value::from("$5 and ${env:X}"));
    }

    #[test]
    fn unset_and_malformed_references_are_reported_with_their_path() {
        let (_, errors) = run("a:\n  b: ${env:MISSING}\nc: [ok, '${env:bad-name}', '${env:OPEN']");
        let found: Vec<(String, ConfigErrorKind)> = errors
            .into_iter()
            .map(|e| (e.path.to_string(), e.kind))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "a.b".to_owned(),
                    ConfigErrorKind::UnsetEnvVar {
                        name: "MISSING".into()
                    }
                ),
                (
                    "c[1]".to_owned(),
                    ConfigErrorKind::InvalidReference {
                        reference: "${env:bad-name}".into()
                    }
                ),
                (
                    "c[2]".to_owned(),
                    ConfigErrorKind::InvalidReference {
                        reference: "${env:OPEN".into()
                    }
                ),
            ]
        );
    }
}
