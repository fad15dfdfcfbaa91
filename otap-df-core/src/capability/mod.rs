//! Capabilities: the closed set of services extensions hand to pipeline nodes.
//!
//! Every capability is defined once, in the `define_capabilities!` invocation below, which
//! generates for each:
//! - a **local** trait in [`local`] (no `Send`/`Sync` bounds: `Rc`, `RefCell`, no locks), for
//!   nodes that run on one core;
//! - a **shared** trait in [`shared`] (`Send + Sync`), for nodes whose work crosses threads;
//! - the [`SharedAsLocal`] adapter, so a shared-only extension serves local consumers;
//! - a marker type implementing the sealed [`Capability`] trait, used to ask for it
//!   (`capabilities.require_local::<KeyValueStore>()`);
//! - its [`CapabilityId`], with the YAML name and a description.
//!
//! Third parties implement these traits; they cannot add capabilities (the set is sealed).
//! Async methods are written with [`async_trait`](crate::async_trait):
//! `#[async_trait(?Send)]` on local implementations, `#[async_trait]` on shared ones.

mod bearer;
pub mod key_value;
mod queue;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub use bearer::{
    AuthorizeError, AuthzDecision, DenyReason, Identity, TokenCell, TokenError, TokenSubscription,
};
pub use key_value::{CircuitBreaker, KvError};
pub use queue::{QueueEntry, QueueError, QueueStats};

/// A node's `capabilities: { <capability>: <extension id> }` entry, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The capability.
    pub capability: CapabilityId,
    /// The id of the extension instance that provides it.
    pub extension: String,
}

use crate::secret::{AuthHeader, BearerToken, Credential};

mod sealed {
    pub trait Sealed {}
}

/// A capability, as a type: links its id to its local and shared trait objects.
///
/// Sealed: implemented only by the marker types this module generates.
pub trait Capability: sealed::Sealed + 'static {
    /// The capability's id (and through it, its YAML name).
    const ID: CapabilityId;
    /// The local trait object, e.g. `dyn local::KeyValueStore`.
    type Local: ?Sized + 'static;
    /// The shared trait object, e.g. `dyn shared::KeyValueStore`.
    type Shared: ?Sized + Send + Sync + 'static;
    /// Wraps a shared implementation so that it serves a local consumer.
    fn shared_as_local(shared: Arc<Self::Shared>) -> Rc<Self::Local>;
}

/// Serves a shared capability implementation through the local trait.
///
/// Calls go straight to the shared object: the adapter adds one indirection and no lock.
pub struct SharedAsLocal<T: ?Sized>(pub Arc<T>);

macro_rules! define_capabilities {
    (
        $(
            $(#[$doc:meta])*
            $yaml_name:literal => $Cap:ident {
                description: $description:literal,
                sync {
                    $(
                        $(#[$sync_doc:meta])*
                        fn $sync_fn:ident(&self $(, $sync_arg:ident : $sync_ty:ty)*) -> $sync_ret:ty;
                    )*
                }
                async {
                    $(
                        $(#[$async_doc:meta])*
                        fn $async_fn:ident(&self $(, $async_arg:ident : $async_ty:ty)*) -> $async_ret:ty;
                    )*
                }
                $(
                    provided {
                        sync {
                            $(
                                $(#[$psync_doc:meta])*
                                fn $psync_fn:ident(&$psync_self:ident $(, $psync_arg:ident : $psync_ty:ty)*) -> $psync_ret:ty $psync_body:block
                            )*
                        }
                        async {
                            $(
                                $(#[$pasync_doc:meta])*
                                fn $pasync_fn:ident(&$pasync_self:ident $(, $pasync_arg:ident : $pasync_ty:ty)*) -> $pasync_ret:ty $pasync_body:block
                            )*
                        }
                    }
                )?
            }
        )+
    ) => {
        /// Identifies one capability of the closed set.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CapabilityId {
            $(
                $(#[$doc])*
                $Cap,
            )+
        }

        impl CapabilityId {
            /// Every capability, in definition order.
            pub const ALL: &'static [CapabilityId] = &[$(CapabilityId::$Cap),+];

            /// The name used in YAML `capabilities:` sections.
            pub const fn name(self) -> &'static str {
                match self {
                    $(CapabilityId::$Cap => $yaml_name,)+
                }
            }

            /// A one-line description.
            pub const fn description(self) -> &'static str {
                match self {
                    $(CapabilityId::$Cap => $description,)+
                }
            }

            /// Looks a capability up by its YAML name.
            pub fn from_name(name: &str) -> Option<CapabilityId> {
                Self::ALL.iter().copied().find(|id| id.name() == name)
            }
        }

        impl std::fmt::Display for CapabilityId {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        /// Local variants of the capabilities: no `Send`/`Sync` bounds, for single-core nodes.
        pub mod local {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$doc])*
                ///
                /// Local variant: implementations may use `Rc` and `RefCell`; futures need not be
                /// `Send`.
                #[crate::async_trait(?Send)]
                pub trait $Cap {
                    $( $(#[$sync_doc])* fn $sync_fn(&self $(, $sync_arg: $sync_ty)*) -> $sync_ret; )*
                    $( $(#[$async_doc])* async fn $async_fn(&self $(, $async_arg: $async_ty)*) -> $async_ret; )*
                    $(
                        $( $(#[$psync_doc])* fn $psync_fn(&$psync_self $(, $psync_arg: $psync_ty)*) -> $psync_ret $psync_body )*
                        $( $(#[$pasync_doc])* async fn $pasync_fn(&$pasync_self $(, $pasync_arg: $pasync_ty)*) -> $pasync_ret $pasync_body )*
                    )?
                }
            )+
        }

        /// Shared variants of the capabilities: `Send + Sync`, for nodes whose work crosses
        /// threads (HTTP servers keep them in an `Arc` shared by connection tasks).
        pub mod shared {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$doc])*
                ///
                /// Shared variant: `Send + Sync`; futures are `Send`.
                #[crate::async_trait]
                pub trait $Cap: Send + Sync {
                    $( $(#[$sync_doc])* fn $sync_fn(&self $(, $sync_arg: $sync_ty)*) -> $sync_ret; )*
                    $( $(#[$async_doc])* async fn $async_fn(&self $(, $async_arg: $async_ty)*) -> $async_ret; )*
                    $(
                        $( $(#[$psync_doc])* fn $psync_fn(&$psync_self $(, $psync_arg: $psync_ty)*) -> $psync_ret $psync_body )*
                        $( $(#[$pasync_doc])* async fn $pasync_fn(&$pasync_self $(, $pasync_arg: $pasync_ty)*) -> $pasync_ret $pasync_body )*
                    )?
                }
            )+
        }

        $(
            #[crate::async_trait(?Send)]
            impl local::$Cap for SharedAsLocal<dyn shared::$Cap> {
                $(
                    fn $sync_fn(&self $(, $sync_arg: $sync_ty)*) -> $sync_ret {
                        self.0.$sync_fn($($sync_arg),*)
                    }
                )*
                $(
                    async fn $async_fn(&self $(, $async_arg: $async_ty)*) -> $async_ret {
                        self.0.$async_fn($($async_arg),*).await
                    }
                )*
                $(
                    $(
                        fn $psync_fn(&$psync_self $(, $psync_arg: $psync_ty)*) -> $psync_ret {
                            $psync_self.0.$psync_fn($($psync_arg),*)
                        }
                    )*
                    $(
                        async fn $pasync_fn(&$pasync_self $(, $pasync_arg: $pasync_ty)*) -> $pasync_ret {
                            $pasync_self.0.$pasync_fn($($pasync_arg),*).await
                        }
                    )*
                )?
            }

            #[doc = concat!("The `", $yaml_name, "` capability, as a type parameter of ")]
            #[doc = "[`Capabilities`](crate::extension::Capabilities)' `require_*` methods."]
            #[doc = concat!("\n\nImplement [`local::", stringify!($Cap), "`] or [`shared::",
                stringify!($Cap), "`] to provide it.")]
            #[derive(Debug)]
            pub enum $Cap {}

            impl sealed::Sealed for $Cap {}

            impl Capability for $Cap {
                const ID: CapabilityId = CapabilityId::$Cap;
                type Local = dyn local::$Cap;
                type Shared = dyn shared::$Cap;

                fn shared_as_local(shared: Arc<dyn shared::$Cap>) -> Rc<dyn local::$Cap> {
                    Rc::new(SharedAsLocal(shared))
                }
            }
        )+
    };
}

define_capabilities! {
    /// Client side of bearer authentication: the token an exporter sends.
    "bearer_token_provider" => BearerTokenProvider {
        description: "the bearer token a client sends (cached; refreshed by the extension)",
        sync {
            /// The current token, or `None` while the provider has none yet (before its first
            /// successful fetch). Cheap: no I/O, no lock, never blocks; call it per request.
            /// The token may carry an expiry: check
            /// [`BearerToken::is_usable`](crate::secret::BearerToken::is_usable) before sending.
            fn current_token(&self) -> Option<BearerToken>;
            /// A number that changes every time the token [`current_token`] returns changes
            /// (a withdrawal included), and only then. One atomic read: a consumer that keeps
            /// what it derived from the token (a rendered header) compares it per request
            /// instead of reading the token. Read it *before* `current_token`; a provider
            /// advances it *after* storing the new token ([`TokenCell`] does
            /// both), so a consumer never keeps an old token under a new generation.
            ///
            /// [`current_token`]: Self::current_token
            fn token_generation(&self) -> u64;
            /// A subscription that yields the current token at once (as soon as there is one),
            /// then every refreshed token after it, and ends when the provider is shut down.
            fn subscribe(&self) -> TokenSubscription;
            /// The header that carries the token and its scheme (`Authorization: Bearer` unless
            /// configured otherwise).
            fn header(&self) -> &AuthHeader;
        }
        async {
            /// The freshest token the source can give: re-reads a file, or asks the token
            /// service again, when the source allows it (use after a server rejected the
            /// current token). An error means no usable token could be had; the caller must
            /// not send the request with an expired token.
            fn fresh_token(&self) -> Result<BearerToken, TokenError>;
        }
    }

    /// Server side of bearer authentication: decides on an incoming credential.
    "bearer_token_authorizer" => BearerTokenAuthorizer {
        description: "decides whether an incoming bearer token is accepted",
        sync {
            /// Decides on `credential`, borrowed from the request
            /// ([`AuthHeader::credential`](crate::secret::AuthHeader::credential)) so that
            /// authorizing costs no allocation; a caller holding a [`BearerToken`] passes
            /// [`token.credential()`](BearerToken::credential). Cheap and non-blocking:
            /// implementations that validate remotely keep a cache maintained by their own
            /// task. `Ok(Deny)` is a decision; `Err` means *no decision* could be made, and
            /// callers must refuse the request (fail closed).
            fn authorize(&self, credential: Credential<'_>) -> Result<AuthzDecision, AuthorizeError>;
            /// The header the credential is read from and its scheme.
            fn header(&self) -> &AuthHeader;
        }
        async {}
        provided {
            sync {
                /// Whether a decision needs [`authorize_waiting`](Self::authorize_waiting): an
                /// authorizer that asks something it must wait for (a WebAssembly guest that
                /// reads its tokens from a granted store). Asked once, when a consumer is
                /// built; `false` (the default): [`authorize`](Self::authorize) decides.
                fn waits(&self) -> bool {
                    false
                }
            }
            async {
                /// Decides on `credential`, waiting for what the decision needs; what callers
                /// use when [`waits`](Self::waits) says so (the same meaning as `authorize`).
                /// The default decides at once with `authorize`.
                fn authorize_waiting(
                    &self,
                    credential: Credential<'_>
                ) -> Result<AuthzDecision, AuthorizeError> {
                    self.authorize(credential)
                }
            }
        }
    }

    /// Shared state for processors (deduplication, caches): byte keys and byte values.
    "key_value_store" => KeyValueStore {
        description: "byte keys and values with optional time-to-live (dedup, caches)",
        sync {}
        async {
            /// The value stored under `key`, or `None` when there is none or it expired.
            /// An error means the store could not answer; the caller decides what that means
            /// for its data (the dedup processor forwards it).
            fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
            /// Stores `value` under `key`, replacing any previous value. `ttl: None` uses the
            /// store's configured default (no expiry when it has none).
            fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError>;
            /// Stores `value` under `key` only if no live value is there, atomically with
            /// respect to every other caller of the same store. `Ok(true)`: this call stored
            /// it; `Ok(false)`: a value was already there and is unchanged.
            fn set_if_absent(
                &self,
                key: &[u8],
                value: &[u8],
                ttl: Option<Duration>
            ) -> Result<bool, KvError>;
            /// Removes `key`. `Ok(true)` when a live value was removed.
            fn delete(&self, key: &[u8]) -> Result<bool, KvError>;
        }
    }

    /// What an exporter keeps on disk until it is delivered: named queues of byte entries,
    /// appended durably, claimed in order, removed once acknowledged. A key/value store
    /// cannot be one: it has no order to read in and no way to wait for the next entry, and
    /// a queue reclaims the space of what was delivered by dropping whole files, without a
    /// compaction.
    "durable_queue" => DurableQueue {
        description: "ordered queues of entries kept on disk until acknowledged (exporter queues)",
        sync {
            /// Claims the oldest entry of `queue` that no one holds, without waiting: `None`
            /// when there is none. A claimed entry is held until it is acknowledged or
            /// released (or the process ends: on the next start every entry not
            /// acknowledged is claimable again, in order).
            fn try_claim(&self, queue: &str) -> Result<Option<QueueEntry>, QueueError>;
            /// Removes claimed entry `id` of `queue` for good (delivered, or given up on and
            /// dead-lettered); its space is reclaimed without a manual step.
            fn acknowledge(&self, queue: &str, id: u64) -> Result<(), QueueError>;
            /// Gives claimed entry `id` of `queue` back, not delivered: it is claimed again
            /// before any newer one. `false` when it was not claimed.
            fn release(&self, queue: &str, id: u64) -> bool;
            /// What `queue` holds now.
            fn stats(&self, queue: &str) -> QueueStats;
        }
        async {
            /// Appends `entry` to `queue`; returns once it is durable as the store's commit
            /// policy says (on disk and `fsync`ed, alone or with the appends that came
            /// together). [`QueueError::Full`] at the store's byte cap.
            fn append(&self, queue: &str, entry: bytes::Bytes) -> Result<(), QueueError>;
            /// Waits for the oldest entry of `queue` that no one holds, and claims it (see
            /// [`try_claim`](Self::try_claim)).
            fn claim(&self, queue: &str) -> Result<QueueEntry, QueueError>;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_names() {
        for id in CapabilityId::ALL {
            assert_eq!(CapabilityId::from_name(id.name()), Some(*id));
            assert!(!id.description().is_empty());
        }
        assert_eq!(
            CapabilityId::ALL
                .iter()
                .map(|id| id.name())
                .collect::<Vec<_>>(),
            [
                "bearer_token_provider",
                "bearer_token_authorizer",
                "key_value_store",
                "durable_queue"
            ]
        );
        assert_eq!(CapabilityId::from_name("kv"), None);
    }
}
