//! Who sent something: the identity an authorizer's decision names (a credential's holder,
//! never the credential), carried by the payloads a receiver accepts from it.

use std::fmt;
use std::sync::Arc;

/// Who a credential belongs to: a name for logs, metrics and routing, never the token.
///
/// Cloning one made from a `&'static str` ([`from_static`](Self::from_static),
/// [`interned`](Self::interned)) copies a pointer. One made from an `Arc<str>` or a `String`
/// counts a reference in the one allocation every core shares: with a decision per request on
/// every core, that cache line moves between the cores at each request (measured: ≈ 200 ns per
/// decision with two threads deciding at once, BENCHMARKS.md). An authorizer whose names are
/// known in advance (from its configuration) gives static ones.
#[derive(Clone)]
pub struct Identity(IdentityName);

#[derive(Clone)]
enum IdentityName {
    Static(&'static str),
    Shared(Arc<str>),
    Described(Arc<Described>),
}

/// A name and the attributes an authorizer read with it (a token's tenant, groups).
struct Described {
    name: Box<str>,
    attributes: Box<[(Box<str>, Box<str>)]>,
}

impl Identity {
    /// An identity named by a static string.
    pub const fn from_static(name: &'static str) -> Self {
        Self(IdentityName::Static(name))
    }

    /// An identity named `name`, kept once per distinct name for the life of the process: the
    /// second call with the same name allocates nothing, and clones copy a pointer. For names
    /// drawn from configuration (bounded by it), not from credentials (a token's subject),
    /// which would grow the set without bound.
    pub fn interned(name: &str) -> Self {
        static NAMES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
            std::sync::Mutex::new(std::collections::BTreeSet::new());
        let mut names = NAMES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = match names.get(name) {
            Some(&kept) => kept,
            None => {
                let kept: &'static str = Box::leak(name.into());
                names.insert(kept);
                kept
            }
        };
        Self::from_static(name)
    }

    /// An identity named `name` with `attributes` (name, value; a name may repeat: one
    /// value each, as for a token's groups), in the order given. Built by an authorizer
    /// that reads more than a name from a credential (a JWT's tenant and groups claims);
    /// exporters and processors read the attributes ([`attribute`](Self::attribute)).
    pub fn with_attributes<K, V>(
        name: impl Into<Box<str>>,
        attributes: impl IntoIterator<Item = (K, V)>,
    ) -> Self
    where
        K: Into<Box<str>>,
        V: Into<Box<str>>,
    {
        Self(IdentityName::Described(Arc::new(Described {
            name: name.into(),
            attributes: attributes
                .into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        })))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            IdentityName::Static(name) => name,
            IdentityName::Shared(name) => name,
            IdentityName::Described(described) => &described.name,
        }
    }

    /// The first value of attribute `name`, if the identity has it.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// Every value of attribute `name`, in order.
    pub fn attribute_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes()
            .filter(move |(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// Whether, for each attribute `rule` names, the identity has one of the values listed;
    /// the attribute `name` stands for the identity's name. What receivers' `permissions`
    /// and `processor:identity_filter` ask.
    pub fn matches<'r>(
        &self,
        rule: impl IntoIterator<Item = (&'r String, &'r Vec<String>)>,
    ) -> bool {
        rule.into_iter().all(|(attribute, accepted)| {
            if attribute == "name" {
                accepted.iter().any(|value| self.as_str() == value)
            } else {
                self.attribute_values(attribute)
                    .any(|value| accepted.iter().any(|a| a == value))
            }
        })
    }

    /// Every attribute (name, value), in order; none for an identity that is only a name.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        let attributes: &[(Box<str>, Box<str>)] = match &self.0 {
            IdentityName::Described(described) => &described.attributes,
            _ => &[],
        };
        attributes.iter().map(|(key, value)| (&**key, &**value))
    }
}

impl From<Arc<str>> for Identity {
    fn from(name: Arc<str>) -> Self {
        Self(IdentityName::Shared(name))
    }
}

impl From<String> for Identity {
    fn from(name: String) -> Self {
        Self(IdentityName::Shared(name.into()))
    }
}

impl From<&'static str> for Identity {
    fn from(name: &'static str) -> Self {
        Self::from_static(name)
    }
}

impl std::ops::Deref for Identity {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Two identities are equal when their names and attributes are, whatever holds them.
impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        // Clones of one identity (what an authorizer hands a caller request after request)
        // are equal without comparing their text.
        if let (IdentityName::Described(one), IdentityName::Described(other)) = (&self.0, &other.0)
            && Arc::ptr_eq(one, other)
        {
            return true;
        }
        self.as_str() == other.as_str() && self.attributes().eq(other.attributes())
    }
}

impl Eq for Identity {}

impl PartialEq<str> for Identity {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Identity {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::hash::Hash for Identity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)?;
        if let IdentityName::Described(described) = &self.0 {
            f.debug_map()
                .entries(described.attributes.iter().map(|(k, v)| (k, v)))
                .finish()?;
        }
        Ok(())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_compares_by_name_whatever_holds_it_and_interning_keeps_one_copy() {
        let shared = Identity::from(String::from("tokens:tokens[0]"));
        let interned = Identity::interned("tokens:tokens[0]");
        assert_eq!(shared, interned);
        assert_eq!(interned, "tokens:tokens[0]");
        assert_eq!(
            format!("{interned} {interned:?}"),
            "tokens:tokens[0] \"tokens:tokens[0]\""
        );
        // The same name interned twice is the same bytes: nothing was kept a second time.
        let again = Identity::interned(&String::from("tokens:tokens[0]"));
        assert!(std::ptr::eq(interned.as_str(), again.as_str()));
        assert!(!std::ptr::eq(
            interned.as_str(),
            Identity::interned("tokens:tokens[1]").as_str()
        ));
        assert_eq!(Identity::from_static("fixed").len(), 5);
    }

    #[test]
    fn an_identity_with_attributes_answers_each_and_compares_them_too() {
        let tenant = Identity::with_attributes(
            "client-a",
            [("tenant", "acme"), ("groups", "writers"), ("groups", "ops")],
        );
        assert_eq!(tenant, "client-a");
        assert_eq!(tenant.attribute("tenant"), Some("acme"));
        assert_eq!(tenant.attribute("region"), None);
        assert_eq!(
            tenant.attribute_values("groups").collect::<Vec<_>>(),
            ["writers", "ops"]
        );
        assert_eq!(
            format!("{tenant:?}"),
            r#""client-a"{"tenant": "acme", "groups": "writers", "groups": "ops"}"#
        );
        assert_ne!(tenant, Identity::from_static("client-a"));
        assert_eq!(tenant, tenant.clone());
        assert_eq!(Identity::from_static("x").attributes().count(), 0);
    }
}
