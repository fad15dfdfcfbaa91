//! The admin endpoint: the engine extension whose `bearer_token_authorizer` decides on its
//! token, checked like a node's binding (the extension exists at the engine's scope, provides
//! the capability, and runs shared: the endpoint has a thread of its own); and a warning when
//! it listens beyond this machine.

use super::plan::{ConfigWarning, Consumer, WarningKind};
use super::scope::OuterScope;
use crate::capability::CapabilityId;
use crate::config::error::closest;
use crate::config::{
    AdminConfig, CapabilityBinding, ConfigError, ConfigErrorKind, Source, TokenScope, YamlPath,
};

/// The pipeline and node names the admin endpoint binds as ([`Consumer`]): "bound by
/// `engine.admin`".
pub const ADMIN_CONSUMER: (&str, &str) = ("engine", "admin");

/// Checks the admin endpoint's bindings against the engine's extensions (`engine`), marks the
/// bound one as consumed, and warns when the endpoint listens beyond this machine.
pub(super) fn resolve(
    admin: &AdminConfig,
    engine: &mut OuterScope,
    source: &Source,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigWarning>,
) {
    let mut bound = false;
    for binding in &admin.capabilities {
        match bind(binding, engine) {
            Ok(held) => bound |= held,
            Err(message) => {
                let kind = ConfigErrorKind::InvalidValue { message };
                errors.push(source.error(&binding.path, kind));
            }
        }
    }
    warnings.extend(reach_warning(admin, bound, source));
}

/// One of the endpoint's bindings: whether it binds an authorizer (`false` where the
/// extension's declaration is already reported), or what is wrong with it.
fn bind(binding: &CapabilityBinding, engine: &mut OuterScope) -> Result<bool, String> {
    let capability = CapabilityId::BearerTokenAuthorizer;
    if binding.capability != capability.name() {
        let suggestion = closest(&binding.capability, [capability.name()])
            .map_or(String::new(), |s| format!(" (did you mean `{s}`?)"));
        return Err(format!(
            "the admin endpoint binds only `bearer_token_authorizer` (the extension that \
             decides on its token), not `{}`{suggestion}",
            binding.capability
        ));
    }
    if engine.broken.contains(&binding.extension) {
        return Ok(false);
    }
    let Some(extension) = engine
        .extensions
        .iter_mut()
        .find(|e| e.id == binding.extension)
    else {
        let known: Vec<&str> = engine.extensions.iter().map(|e| e.id.as_str()).collect();
        let suggestion = closest(&binding.extension, known.iter().copied())
            .map_or(String::new(), |s| format!(" (did you mean `{s}`?)"));
        let known = if known.is_empty() {
            "(none)".to_owned()
        } else {
            let quoted: Vec<String> = known.iter().map(|id| format!("`{id}`")).collect();
            quoted.join(", ")
        };
        return Err(format!(
            "the admin endpoint binds `bearer_token_authorizer` to extension `{}`, which \
             `engine.extensions` does not declare (the admin endpoint binds engine \
             extensions only); engine extensions: {known}{suggestion}",
            binding.extension,
        ));
    };
    if !extension.provides.contains(&capability) {
        let provided: Vec<String> = extension
            .provides
            .iter()
            .map(|c| format!("`{}`", c.name()))
            .collect();
        return Err(format!(
            "extension `{}` (type `{}`) does not provide `bearer_token_authorizer`; it \
             provides: {}",
            extension.id,
            extension.factory.name(),
            provided.join(", ")
        ));
    }
    // An engine extension runs shared (the outer scopes' rule), which is what the
    // endpoint's own thread needs.
    extension.consumers.push(Consumer {
        pipeline: ADMIN_CONSUMER.0.to_owned(),
        node: ADMIN_CONSUMER.1.to_owned(),
        capability,
        extension: false,
    });
    Ok(true)
}

/// The warning for an endpoint that listens beyond this machine, saying what anyone who
/// reaches it can do (`bound`: whether a token authorizer is bound). None on loopback, or
/// where every request needs the token.
fn reach_warning(admin: &AdminConfig, bound: bool, source: &Source) -> Option<ConfigWarning> {
    if admin.listen.ip().is_loopback() {
        return None;
    }
    let reach = match (bound, admin.require_token_for) {
        (false, _) => {
            "anyone who reaches it can read its status and metrics and reload the \
             configuration; keep it on loopback (the default, `127.0.0.1:8888`), or bind a \
             token: `capabilities: { bearer_token_authorizer: <engine extension> }` with \
             `require_token_for: all`"
        }
        (true, TokenScope::Mutating) => {
            "anyone who reaches it can read its status and metrics (a reload needs the \
             token); keep it on loopback, or set `require_token_for: all`"
        }
        (true, TokenScope::All) => return None,
    };
    let path = YamlPath::root().key("engine").key("admin").key("listen");
    Some(ConfigWarning {
        location: source.positions.locate(&path),
        path,
        kind: WarningKind::AdminReachable {
            listen: admin.listen,
            reach: reach.to_owned(),
        },
    })
}
