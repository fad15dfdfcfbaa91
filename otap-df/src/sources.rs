//! Where `validate`, `run` and `print-config` take their configuration from: files (merged in
//! order; `-` is standard input) and `--set path=value` overrides, and how `print-config`
//! hides secrets.

use std::io::Read as _;
use std::path::PathBuf;

use serde_yaml_ng::Value;

use crate::core::config::Layer;

/// The configuration sources of a command.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Sources {
    /// YAML configuration files, merged in order (later over earlier: mappings key by key,
    /// lists and values replaced whole); `-` reads standard input.
    #[arg(value_name = "CONFIG")]
    files: Vec<PathBuf>,
    /// More configuration files, merged after the positional ones, in order (repeatable;
    /// `-` reads standard input).
    #[arg(long = "config", value_name = "FILE")]
    configs: Vec<PathBuf>,
    /// Overrides one value after every file: `PATH=VALUE`, the path dotted from the top
    /// (`groups.g.pipelines.p.nodes.gen.config.count=5`), the value YAML (`5`, `[a, b]`,
    /// `{ x: 1 }`). Repeatable, applied in order.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
}

/// The sources read: `(name, text)` per file, then `(name, path, value)` per override.
#[derive(Debug)]
pub(crate) struct Read {
    files: Vec<(String, String)>,
    sets: Vec<(String, String, String)>,
}

impl Read {
    /// The layers, in merge order.
    pub(crate) fn layers(&self) -> Vec<Layer<'_>> {
        self.files
            .iter()
            .map(|(name, text)| Layer::file(name, text))
            .chain(
                self.sets
                    .iter()
                    .map(|(name, path, value)| Layer::set(name, path, value)),
            )
            .collect()
    }

    /// What the configuration is called in messages: its files, comma-separated.
    pub(crate) fn label(&self) -> String {
        self.layers()
            .iter()
            .map(|layer| layer.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Sources {
    /// Reads every source again, for a reload: standard input cannot be read twice.
    pub(crate) fn read_again(&self) -> Result<Read, String> {
        if self
            .files
            .iter()
            .chain(&self.configs)
            .any(|p| p.as_os_str() == "-")
        {
            return Err(
                "the configuration came from standard input, which cannot be read again; \
                 a reload needs configuration files"
                    .to_owned(),
            );
        }
        self.read()
    }

    /// Reads every source; the error says which and why.
    pub(crate) fn read(&self) -> Result<Read, String> {
        let paths: Vec<&PathBuf> = self.files.iter().chain(&self.configs).collect();
        if paths.is_empty() {
            return Err(
                "no configuration: give a file (`otap-df run config.yaml`), \
                        `--config FILE`, or `-` to read standard input"
                    .to_owned(),
            );
        }
        if paths.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
            return Err("standard input (`-`) can be read once".to_owned());
        }
        let mut files = Vec::new();
        for path in paths {
            let (name, bytes) = if path.as_os_str() == "-" {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("cannot read standard input: {e}"))?;
                ("<stdin>".to_owned(), bytes)
            } else {
                let name = path.display().to_string();
                let bytes = std::fs::read(path)
                    .map_err(|error| format!("cannot read `{name}`: {error}"))?;
                (name, bytes)
            };
            let text = String::from_utf8(bytes).map_err(|error| not_utf8(&name, &error))?;
            files.push((name, text));
        }
        let mut sets = Vec::new();
        for set in &self.sets {
            let Some((path, value)) = set.split_once('=') else {
                return Err(format!(
                    "`--set {set}`: expected PATH=VALUE, e.g. `--set engine.cores=2`"
                ));
            };
            if path.trim().is_empty() {
                return Err(format!("`--set {set}`: the path before `=` is empty"));
            }
            sets.push((
                format!("--set {set}"),
                path.trim().to_owned(),
                value.to_owned(),
            ));
        }
        Ok(Read { files, sets })
    }
}

/// Where a file stops being UTF-8: line and column (in characters) of the bad byte.
fn not_utf8(name: &str, error: &std::string::FromUtf8Error) -> String {
    let bytes = error.as_bytes();
    let valid = &bytes[..error.utf8_error().valid_up_to()];
    let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = valid
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    let column = String::from_utf8_lossy(&valid[line_start..])
        .chars()
        .count()
        + 1;
    format!(
        "`{name}`:{line}:{column}: not UTF-8 (byte 0x{:02x}); save the configuration as UTF-8",
        bytes[valid.len()]
    )
}

/// Option names whose values are secrets wherever they appear: printed as `<redacted>`.
pub(crate) const SECRET_KEYS: &[&str] = &[
    "token",
    "tokens",
    "password",
    "client_secret",
    "secret",
    "api_key",
    "private_key",
];

/// What `print-config` shows: `value` with every secret replaced by `<redacted>` — the
/// values of [`SECRET_KEYS`] options, every value of a `headers` mapping, and the user
/// information of URLs (`redis://user:pass@host` → `redis://<redacted>@host`).
pub(crate) fn redacted(value: Value) -> Value {
    match value {
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .map(|(key, value)| {
                    let name = key.as_str().unwrap_or_default();
                    let value = if SECRET_KEYS.contains(&name) {
                        hidden(value)
                    } else if name == "headers" {
                        match value {
                            Value::Mapping(headers) => Value::Mapping(
                                headers.into_iter().map(|(k, v)| (k, hidden(v))).collect(),
                            ),
                            other => hidden(other),
                        }
                    } else {
                        redacted(value)
                    };
                    (key, value)
                })
                .collect(),
        ),
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(redacted).collect()),
        Value::String(text) => Value::String(without_userinfo(&text)),
        other => other,
    }
}

/// A secret's value, hidden: each string of it (a list keeps its length).
fn hidden(value: Value) -> Value {
    match value {
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(hidden).collect()),
        Value::Null => Value::Null,
        _ => Value::String("<redacted>".to_owned()),
    }
}

/// `scheme://user:pass@host…` → `scheme://<redacted>@host…`.
fn without_userinfo(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://<redacted>@{}", &text[..scheme_end], &rest[at + 1..]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_rest_is_kept() {
        let value: Value = serde_yaml_ng::from_str(
            "a: { token: t1, tokens: [x, y], url: 'redis://u:p@h:6379/0', listen: 127.0.0.1:1,
               headers: { x-api: k }, nested: [{ password: p, count: 3 }], plain: 'http://h/x@y' }",
        )
        .expect("yaml");
        let shown = serde_yaml_ng::to_string(&redacted(value)).expect("yaml");
        assert_eq!(
            shown,
            "a:\n  token: <redacted>\n  tokens:\n  - <redacted>\n  - <redacted>\n  url: redis://<redacted>@h:6379/0\n  listen: 127.0.0.1:1\n  headers:\n    x-api: <redacted>\n  nested:\n  - password: <redacted>\n    count: 3\n  plain: http://h/x@y\n"
        );
    }
}
