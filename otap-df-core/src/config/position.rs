//! YAML paths and source positions.
//!
//! `serde_yaml_ng` parses the document and gives positions only for the first syntax error.
//! To put a line and column on *every* error, [`PositionIndex`] walks the same text once with
//! `saphyr-parser`'s spanned events and records where each path starts.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser};

/// One step of a [`YamlPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Where a value sits in the document: `groups.default.pipelines.main.nodes.dedup`,
/// `...connections[1].to`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct YamlPath(Vec<PathSegment>);

impl YamlPath {
    /// The document root.
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses the dotted form (`a.b[2].c`); keys containing `.` or `[` cannot be expressed.
    pub fn parse(dotted: &str) -> Self {
        let mut path = Self::root();
        for part in dotted.split('.').filter(|p| !p.is_empty()) {
            let (key, indices) = part.split_once('[').unwrap_or((part, ""));
            if !key.is_empty() {
                path = path.key(key);
            }
            for index in indices.split('[') {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    path = path.index(i);
                }
            }
        }
        path
    }

    /// This path extended by a mapping key.
    #[must_use]
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut segments = self.0.clone();
        segments.push(PathSegment::Key(key.into()));
        Self(segments)
    }

    /// This path extended by a sequence index.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(PathSegment::Index(index));
        Self(segments)
    }

    /// The path's steps, from the root.
    pub fn segments(&self) -> &[PathSegment] {
        &self.0
    }

    /// The path without its last step (the root stays the root).
    #[must_use]
    pub fn parent(&self) -> Self {
        let mut segments = self.0.clone();
        segments.pop();
        Self(segments)
    }

    /// Whether `prefix` is this path or one of its ancestors.
    pub fn starts_with(&self, prefix: &YamlPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// Whether this is the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<root>");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                PathSegment::Key(key) if i == 0 => f.write_str(key)?,
                PathSegment::Key(key) => write!(f, ".{key}")?,
                PathSegment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A position in the source text; line and column both start at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Which source of a layered configuration (`--config a.yaml --config b.yaml`): the index
    /// into [`ConfigErrors::files`](super::ConfigErrors::files); 0 for a single file.
    pub file: u16,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Where each path of a document starts: the key for a mapping entry, the item for a
/// sequence element.
///
/// Keyed by the path's rendered form (`a.b[2].c`): one string per node keeps building the
/// index cheaper than parsing the YAML. A key that itself contains `.` or `[` may share its
/// rendering with another path; only the reported position can suffer from that.
#[derive(Debug, Default, Clone)]
pub struct PositionIndex {
    positions: HashMap<String, Location>,
}

enum Frame {
    Mapping {
        path: String,
        pending_key: Option<(String, Location)>,
    },
    Sequence {
        path: String,
        next: usize,
    },
}

fn child_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn render(segments: &[PathSegment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            PathSegment::Key(key) => out = child_key(&out, key),
            PathSegment::Index(index) => out = format!("{out}[{index}]"),
        }
    }
    out
}

/// Every path of `value` (the value itself, as `prefix`, included), rendered as the index
/// keys them.
fn value_paths(value: &serde_yaml_ng::Value, prefix: String, out: &mut Vec<String>) {
    match value {
        serde_yaml_ng::Value::Mapping(map) => {
            for (key, child) in map {
                let key = match key {
                    serde_yaml_ng::Value::String(key) => key.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .map(|k| k.trim_end().to_owned())
                        .unwrap_or_default(),
                };
                value_paths(child, child_key(&prefix, &key), out);
            }
        }
        serde_yaml_ng::Value::Sequence(items) => {
            for (index, child) in items.iter().enumerate() {
                value_paths(child, format!("{prefix}[{index}]"), out);
            }
        }
        serde_yaml_ng::Value::Tagged(tagged) => value_paths(&tagged.value, prefix.clone(), out),
        _ => {}
    }
    out.push(prefix);
}

/// Where `text` first fails to parse as YAML, and why, as `saphyr-parser` sees it.
pub(crate) fn first_syntax_error(text: &str) -> Option<(Location, String)> {
    Parser::new_from_str(text).find_map(|event| {
        let error = event.err()?;
        Some((
            Location {
                file: 0,
                line: error.marker().line(),
                column: error.marker().col() + 1,
            },
            error.info().to_owned(),
        ))
    })
}

impl PositionIndex {
    /// Indexes the first document of `text`. Best effort: on a syntax error the index holds
    /// what came before it (the syntax error itself is reported by the real parser).
    pub fn build(text: &str) -> Self {
        Self::build_in(text, 0)
    }

    /// [`build`](Self::build) for source `file` of a layered configuration.
    pub fn build_in(text: &str, file: u16) -> Self {
        let mut index = Self::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut seen_root = false;
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else { break };
            let at = Location {
                file,
                line: span.start.line(),
                column: span.start.col() + 1,
            };
            let opens = match &event {
                Event::Scalar(..) | Event::Alias(_) => None,
                Event::MappingStart(..) => Some(true),
                Event::SequenceStart(..) => Some(false),
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    continue;
                }
                Event::DocumentEnd if seen_root => break,
                _ => continue,
            };
            let path = match stack.last_mut() {
                None => {
                    seen_root = true;
                    String::new()
                }
                Some(Frame::Sequence { path, next }) => {
                    *next += 1;
                    format!("{path}[{}]", *next - 1)
                }
                Some(Frame::Mapping { path, pending_key }) => match pending_key.take() {
                    Some((key, key_at)) => {
                        let child = child_key(path, &key);
                        index.positions.entry(child.clone()).or_insert(key_at);
                        child
                    }
                    None => {
                        // A mapping key. Only scalar keys name a path; a complex key's
                        // contents are indexed under a name no path renders to.
                        if let Event::Scalar(key, ..) = &event {
                            *pending_key = Some((key.to_string(), at));
                            continue;
                        }
                        *pending_key = Some(("\u{0}complex-key".to_owned(), at));
                        child_key(path, "\u{0}complex-key-contents")
                    }
                },
            };
            match opens {
                None => {
                    index.positions.entry(path).or_insert(at);
                }
                Some(mapping) => {
                    index.positions.entry(path.clone()).or_insert(at);
                    stack.push(if mapping {
                        Frame::Mapping {
                            path,
                            pending_key: None,
                        }
                    } else {
                        Frame::Sequence { path, next: 0 }
                    });
                }
            }
        }
        index
    }

    /// Lays `layer` (the index of a later source, whose parsed value is `value`) over this
    /// one: every path `value` holds is located where `layer` says, or nowhere when `layer`
    /// does not know it; other paths keep their place.
    pub fn overlay(&mut self, layer: PositionIndex, value: &serde_yaml_ng::Value) {
        let mut paths = Vec::new();
        value_paths(value, String::new(), &mut paths);
        for path in paths {
            match layer.positions.get(&path) {
                Some(at) => {
                    self.positions.insert(path, *at);
                }
                None => {
                    self.positions.remove(&path);
                }
            }
        }
    }

    /// Places every path of `value` at `at` (a command-line override's one place).
    pub fn all_at(value: &serde_yaml_ng::Value, at: Location) -> Self {
        let mut paths = Vec::new();
        value_paths(value, String::new(), &mut paths);
        Self {
            positions: paths.into_iter().map(|path| (path, at)).collect(),
        }
    }

    /// Where `path` starts, or where its nearest indexed ancestor starts.
    pub fn locate(&self, path: &YamlPath) -> Option<Location> {
        let segments = path.segments();
        (0..=segments.len())
            .rev()
            .find_map(|len| self.positions.get(&render(&segments[..len])))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
version: otap_df/v1
groups:
  default:
    pipelines:
      main:
        nodes:
          a: { type: 'receiver:x' }
        connections:
          - { from: a, to: b }
          - from: b
            to: [c, d]
";

    fn at(line: usize, column: usize) -> Option<Location> {
        Some(Location {
            file: 0,
            line,
            column,
        })
    }

    #[test]
    fn mapping_entries_are_located_at_their_key() {
        let index = PositionIndex::build(DOC);
        assert_eq!(index.locate(&YamlPath::parse("version")), at(1, 1));
        assert_eq!(index.locate(&YamlPath::parse("groups.default")), at(3, 3));
        let a = YamlPath::parse("groups.default.pipelines.main.nodes.a");
        assert_eq!(index.locate(&a), at(7, 11));
        assert_eq!(index.locate(&a.key("type")), at(7, 16));
    }

    #[test]
    fn sequence_items_are_located_at_the_item() {
        let index = PositionIndex::build(DOC);
        let connections = YamlPath::parse("groups.default.pipelines.main.connections");
        assert_eq!(index.locate(&connections.index(0)), at(9, 13));
        assert_eq!(index.locate(&connections.index(1).key("to")), at(11, 13));
        assert_eq!(
            index.locate(&connections.index(1).key("to").index(1)),
            at(11, 21)
        );
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_ancestor() {
        let index = PositionIndex::build(DOC);
        let missing = YamlPath::parse("groups.default.pipelines.main.nodes.a.config.deep");
        assert_eq!(index.locate(&missing), at(7, 11));
        assert_eq!(index.locate(&YamlPath::parse("nothing")), at(1, 1));
    }

    #[test]
    fn dotted_paths_round_trip() {
        let path = YamlPath::parse("groups.g.pipelines.p.connections[3].to");
        assert_eq!(path.to_string(), "groups.g.pipelines.p.connections[3].to");
        assert_eq!(
            path.parent().to_string(),
            "groups.g.pipelines.p.connections[3]"
        );
    }
}
