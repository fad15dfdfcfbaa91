//! The admin endpoint: the engine extension whose `bearer_token_authorizer` decides on its
//! token, checked like a node's binding (the extension exists at the engine's scope, provides
//! the capability, and runs shared: the endpoint has a thread of its own); and a warning when
//! it listens beyond this machine.

use super::plan::{ConfigWarning, Consumer, WarningKind};
use super::scope::OuterScope;
use crate::capability::CapabilityId;
use crate::config::error::closest;
use crate::config::{AdminConfig, ConfigError, ConfigErrorKind, Source, TokenScope, YamlPath};

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
    let mut error = |path: &YamlPath, message: String| {
        errors.push(source.error(path, ConfigErrorKind::InvalidValue { message }));
    };
    let mut bound = false;
    for binding in &admin.capabilities {
        if binding.capability != CapabilityId::BearerTokenAuthorizer.name() {
            let suggestion = closest(
                &binding.capability,
                [CapabilityId::BearerTokenAuthorizer.name()],
            )
            .map_or(String::new(), |s| format!(" (did you mean `{s}`?)"));
            error(
                &binding.path,
                format!(
                    "the admin endpoint binds only `bearer_token_authorizer` (the extension that \
                     decides on its token), not `{}`{suggestion}",
                    binding.capability
                ),
            );
            continue;
        }
        if engine.broken.contains(&binding.extension) {
            continue;
        }
        let Some(extension) = engine
            .extensions
            .iter_mut()
            .find(|e| e.id == binding.extension)
        else {
            let known: Vec<&str> = engine.extensions.iter().map(|e| e.id.as_str()).collect();
            let suggestion = closest(&binding.extension, known.iter().copied())
                .map_or(String::new(), |s| format!(" (did you mean `{s}`?)"));
            error(
                &binding.path,
                format!(
                    "the admin endpoint binds `bearer_token_authorizer` to extension `{}`, which \
                     `engine.extensions` does not declare (the admin endpoint binds engine \
                     extensions only); engine extensions: {}{suggestion}",
                    binding.extension,
                    if known.is_empty() {
                        "(none)".to_owned()
                    } else {
                        known
                            .iter()
                            .map(|id| format!("`{id}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            );
            continue;
        };
        let capability = CapabilityId::BearerTokenAuthorizer;
        if !extension.factory.provides_capability(capability) {
            let provided: Vec<String> = extension
                .factory
                .provided()
                .iter()
                .map(|c| format!("`{}`", c.name()))
                .collect();
            error(
                &binding.path,
                format!(
                    "extension `{}` (type `{}`) does not provide `bearer_token_authorizer`; it \
                     provides: {}",
                    extension.id,
                    extension.factory.name(),
                    provided.join(", ")
                ),
            );
            continue;
        }
        // An engine extension runs shared (the outer scopes' rule), which is what the
        // endpoint's own thread needs.
        extension.consumers.push(Consumer {
            pipeline: ADMIN_CONSUMER.0.to_owned(),
            node: ADMIN_CONSUMER.1.to_owned(),
            capability,
        });
        bound = true;
    }
    if !admin.listen.ip().is_loopback() {
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
            (true, TokenScope::All) => return,
        };
        let path = YamlPath::root().key("engine").key("admin").key("listen");
        warnings.push(ConfigWarning {
            location: source.positions.locate(&path),
            path,
            kind: WarningKind::AdminReachable {
                listen: admin.listen,
                reach: reach.to_owned(),
            },
        });
    }
}
