//! Bounds on a configuration's text, checked before any work that grows with its shape.
//!
//! A configuration is small and shallow; what is not is refused in one pass over the YAML
//! events, in time linear in the text, before the value tree and the position index are built
//! (the index renders a path per node: on a 20,000-deep nesting that is quadratic):
//!
//! - the text is at most [`MAX_SOURCE_BYTES`];
//! - collections nest at most [`MAX_DEPTH`] deep;
//! - with every alias expanded, the document holds at most [`MAX_EXPANDED_NODES`] nodes and
//!   [`MAX_EXPANDED_SCALAR_BYTES`] bytes of scalars (an alias is a copy once parsed: a few
//!   aliases of one large string would otherwise cost gigabytes);
//! - one document (a second `---` is located).
//!
//! Each refusal is a [`ConfigError`] with the line and column where the limit was crossed.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

use super::error::{ConfigError, ConfigErrorKind};
use super::position::{Location, YamlPath};

/// The largest configuration text accepted: 8 MiB.
pub const MAX_SOURCE_BYTES: usize = 8 << 20;

/// The deepest nesting of mappings and sequences accepted.
pub const MAX_DEPTH: usize = 64;

/// The most nodes (scalars and collections) a document may hold with its aliases expanded.
pub const MAX_EXPANDED_NODES: u64 = 1_000_000;

/// The most scalar bytes a document may hold with its aliases expanded: 16 MiB.
pub const MAX_EXPANDED_SCALAR_BYTES: u64 = 16 << 20;

/// What a node holds once its aliases are expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: u64,
    bytes: u64,
}

/// An anchored collection being read: its anchor and the totals when it started.
struct Open {
    anchor: usize,
    at_start: Size,
}

/// The totals so far of one pass over the events.
#[derive(Default)]
struct Tally {
    total: Size,
    /// What each anchor stands for, once its node has ended.
    anchors: HashMap<usize, Size>,
    /// Every open collection, anchored or not (`anchor` 0: none).
    open: Vec<Open>,
    documents: usize,
}

/// Checks `text` against the limits above; the first limit crossed, located.
pub(crate) fn check(text: &str) -> Result<(), ConfigError> {
    if text.len() > MAX_SOURCE_BYTES {
        return Err(limit_error(
            None,
            format!(
                "the configuration is {} bytes; the most accepted is {MAX_SOURCE_BYTES} (8 MiB)",
                text.len()
            ),
        ));
    }
    let mut tally = Tally::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = match event {
            Ok(event) => event,
            // Flow collections (`[[[…`) nested past this parser's own bound: refused here, as
            // the parser that builds the value takes time quadratic in the depth to say so.
            Err(error) if error.info().contains("recursion limit") => {
                return Err(error_at_depth(Some(Location {
                    file: 0,
                    line: error.marker().line(),
                    column: error.marker().col() + 1,
                })));
            }
            // Any other syntax error is reported, with its location, by the parser that
            // builds the value.
            Err(_) => return Ok(()),
        };
        let at = Some(Location {
            file: 0,
            line: span.start.line(),
            column: span.start.col() + 1,
        });
        tally.count(event, at)?;
        tally.within(at)?;
    }
    Ok(())
}

impl Tally {
    /// Adds one event; refuses a second document and nesting past [`MAX_DEPTH`].
    fn count(&mut self, event: Event<'_>, at: Option<Location>) -> Result<(), ConfigError> {
        let total = &mut self.total;
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(limit_error(
                        at,
                        "a second YAML document starts here; a configuration is one document \
                         (remove the `---` and what follows, or merge it into the first)"
                            .to_owned(),
                    ));
                }
            }
            Event::Scalar(value, _, anchor, _) => {
                let size = Size {
                    nodes: 1,
                    bytes: value.len() as u64,
                };
                total.nodes += size.nodes;
                total.bytes += size.bytes;
                if anchor != 0 {
                    self.anchors.insert(anchor, size);
                }
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                total.nodes += 1;
                self.open.push(Open {
                    anchor,
                    at_start: *total,
                });
                if self.open.len() > MAX_DEPTH {
                    return Err(error_at_depth(at));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(Open { anchor, at_start }) = self.open.pop()
                    && anchor != 0
                {
                    let size = Size {
                        // The collection itself was counted before `at_start` was taken.
                        nodes: total.nodes - at_start.nodes + 1,
                        bytes: total.bytes - at_start.bytes,
                    };
                    self.anchors.insert(anchor, size);
                }
            }
            Event::Alias(anchor) => {
                // An alias of an anchor still open (a recursive alias) is refused by the
                // parser that builds the value.
                let size = self.anchors.get(&anchor).copied().unwrap_or_default();
                total.nodes += size.nodes;
                total.bytes += size.bytes;
            }
            _ => {}
        }
        Ok(())
    }

    /// Refuses totals past [`MAX_EXPANDED_NODES`] or [`MAX_EXPANDED_SCALAR_BYTES`].
    fn within(&self, at: Option<Location>) -> Result<(), ConfigError> {
        if self.total.nodes > MAX_EXPANDED_NODES {
            return Err(limit_error(
                at,
                format!(
                    "with its aliases expanded the configuration would hold more than {MAX_EXPANDED_NODES} nodes (here)"
                ),
            ));
        }
        if self.total.bytes > MAX_EXPANDED_SCALAR_BYTES {
            return Err(limit_error(
                at,
                format!(
                    "with its aliases expanded the configuration would hold more than {MAX_EXPANDED_SCALAR_BYTES} bytes of values (here); use fewer or smaller aliases"
                ),
            ));
        }
        Ok(())
    }
}

/// A limit crossed at `location`.
fn limit_error(location: Option<Location>, message: String) -> ConfigError {
    ConfigError {
        path: YamlPath::root(),
        location,
        kind: ConfigErrorKind::Limit { message },
    }
}

fn error_at_depth(location: Option<Location>) -> ConfigError {
    limit_error(
        location,
        format!(
            "collections nest more than {MAX_DEPTH} deep here; a configuration needs far fewer levels"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> ConfigError {
        check(text).expect_err("over a limit")
    }

    #[test]
    fn deep_nesting_is_refused_where_it_crosses_the_limit_in_linear_time() {
        for (open, close) in [("[", "]"), ("{a: ", "}")] {
            let depth = 100_000;
            let text = format!("x: {}1{}\n", open.repeat(depth), close.repeat(depth));
            let error = refused(&text);
            assert_eq!(error.location.map(|l| l.line), Some(1), "{open}");
            assert!(
                error.to_string().contains("nest more than 64 deep"),
                "{error}"
            );
        }
        let mut block = String::new();
        for level in 0..70 {
            block.push_str(&format!("{}k{level}:\n", "  ".repeat(level)));
        }
        // Line n holds the first key of the n-th mapping: the 65th starts on line 65.
        assert_eq!(
            refused(&block).location,
            Some(Location {
                file: 0,
                line: 65,
                column: 2 * 64 + 1
            })
        );
        let ok = format!("x: {}1{}\n", "[".repeat(63), "]".repeat(63));
        assert!(check(&ok).is_ok());
    }

    #[test]
    fn alias_fan_out_is_counted_as_expanded() {
        let large = "x".repeat(100_000);
        let aliases = vec!["*a"; 200].join(", ");
        let text = format!("base: &a \"{large}\"\nlist: [{aliases}]\n");
        let error = refused(&text);
        assert!(error.to_string().contains("bytes of values"), "{error}");
        // The 168th alias crosses 16 MiB (the anchor itself counts once).
        assert_eq!(error.location.map(|l| l.line), Some(2));

        // Nested fan-out: each level doubles what the next alias expands to.
        let mut laughs = String::from("a0: &a0 [x, x]\n");
        for level in 1..40 {
            laughs.push_str(&format!(
                "a{level}: &a{level} [*a{}, *a{}]\n",
                level - 1,
                level - 1
            ));
        }
        assert!(
            refused(&laughs)
                .to_string()
                .contains("more than 1000000 nodes")
        );

        let fine = format!("base: &a \"{}\"\nlist: [*a, *a, *a]\n", "x".repeat(1000));
        assert!(check(&fine).is_ok());
    }

    #[test]
    fn a_second_document_is_located() {
        let error = refused("version: otap_df/v1\n---\nmore: 1\n");
        assert_eq!(
            error.location,
            Some(Location {
                file: 0,
                line: 2,
                column: 1
            })
        );
        assert!(
            error.to_string().contains("second YAML document"),
            "{error}"
        );
        assert!(check("---\nversion: otap_df/v1\n...\n").is_ok());
    }

    #[test]
    fn oversized_text_is_refused_before_parsing() {
        let text = "#".repeat(MAX_SOURCE_BYTES + 1);
        assert!(refused(&text).to_string().contains("8 MiB"));
    }
}
