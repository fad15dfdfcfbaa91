//! Component type names: `urn:otap:<kind>:<name>`, or the short form `<kind>:<name>`.

use std::fmt;

use crate::config::error::ConfigErrorKind;

/// The four kinds of pipeline components.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    /// Provides capabilities to nodes; never touches pipeline data.
    Extension,
    /// Brings data into a pipeline.
    Receiver,
    /// Transforms, filters or routes data.
    Processor,
    /// Sends data out of a pipeline.
    Exporter,
}

impl ComponentKind {
    /// Every kind.
    pub const ALL: [ComponentKind; 4] = [
        ComponentKind::Extension,
        ComponentKind::Receiver,
        ComponentKind::Processor,
        ComponentKind::Exporter,
    ];

    /// The kind as written in type names.
    pub const fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Extension => "extension",
            ComponentKind::Receiver => "receiver",
            ComponentKind::Processor => "processor",
            ComponentKind::Exporter => "exporter",
        }
    }

    /// The pipeline section components of this kind are declared in.
    pub const fn section(self) -> &'static str {
        match self {
            ComponentKind::Extension => "extensions",
            _ => "nodes",
        }
    }

    /// `a` or `an`, for messages.
    pub const fn article(self) -> &'static str {
        match self {
            ComponentKind::Extension | ComponentKind::Exporter => "an",
            _ => "a",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed component type name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentUrn {
    /// The component's kind.
    pub kind: ComponentKind,
    /// Its name within the kind (`memory_kv`, `otlp_http`).
    pub name: String,
}

impl ComponentUrn {
    /// Parses `urn:otap:<kind>:<name>` or `<kind>:<name>`. Names are made of ASCII letters,
    /// digits, `_` and `-`.
    pub fn parse(value: &str) -> Result<Self, ConfigErrorKind> {
        let invalid = || ConfigErrorKind::InvalidTypeName {
            value: value.to_owned(),
        };
        let short = value.strip_prefix("urn:otap:").unwrap_or(value);
        let (kind, name) = short.split_once(':').ok_or_else(invalid)?;
        let kind = ComponentKind::from_name(kind).ok_or_else(invalid)?;
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(invalid());
        }
        Ok(Self {
            kind,
            name: name.to_owned(),
        })
    }

    /// The short form, `<kind>:<name>`.
    pub fn short(&self) -> String {
        format!("{}:{}", self.kind, self.name)
    }
}

impl fmt::Display for ComponentUrn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "urn:otap:{}:{}", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_short_forms_parse_to_the_same_urn() {
        let long = ComponentUrn::parse("urn:otap:extension:memory_kv").expect("long form");
        let short = ComponentUrn::parse("extension:memory_kv").expect("short form");
        assert_eq!(long, short);
        assert_eq!(long.kind, ComponentKind::Extension);
        assert_eq!(long.name, "memory_kv");
        assert_eq!(long.to_string(), "urn:otap:extension:memory_kv");
        assert_eq!(long.short(), "extension:memory_kv");
    }

    #[test]
    fn malformed_type_names_are_rejected() {
        for bad in [
            "memory_kv",
            "ext:memory_kv",
            "extension:",
            "urn:otap:receiver:a b",
            "",
        ] {
            assert_eq!(
                ComponentUrn::parse(bad),
                Err(ConfigErrorKind::InvalidTypeName { value: bad.into() }),
                "{bad}"
            );
        }
    }
}
