//! The guest ABI, version 1: what a module exports for each capability, what the host lets
//! it import, and how results come back. A plain core-module interface of 32-bit pointers
//! and lengths into the guest's memory, so that any language that targets WebAssembly can
//! implement it. The README documents it (with a WIT description of the same).

use otap_df_core::capability::CapabilityId;
use wasmtime::ValType;

/// The ABI version this host speaks; a module's `otap_abi_version` must return it.
pub const VERSION: i32 = 1;

/// The memory every module exports.
pub const MEMORY: &str = "memory";

/// The export that says the module's ABI version.
pub const ABI_VERSION: &str = "otap_abi_version";

/// The export that hands the host a buffer of at least the asked size for its input. The
/// buffer stays the host's until the next `otap_alloc`: the host asks once for a size and
/// reuses the buffer for every call whose input fits.
pub const ALLOC: &str = "otap_alloc";

/// The optional export called once per instance with the `config:` value as JSON; a
/// non-zero result refuses the start.
pub const START: &str = "otap_start";

/// The optional export a reactor runtime (Go's `GOOS=wasip1`, TinyGo) initialises itself
/// with; called first when present.
pub const INITIALIZE: &str = "_initialize";

/// `bearer_token_authorizer`'s export: `(credential pointer, length) -> i64`.
pub const AUTHORIZE: &str = "otap_authorize";

/// `bearer_token_provider`'s exports: the token now, and how long it stays valid.
pub const TOKEN: &str = "otap_token";
/// See [`TOKEN`].
pub const TOKEN_VALID_MS: &str = "otap_token_valid_ms";

/// `key_value_store`'s exports.
pub const KV_GET: &str = "otap_kv_get";
/// See [`KV_GET`].
pub const KV_SET: &str = "otap_kv_set";
/// See [`KV_GET`].
pub const KV_SET_IF_ABSENT: &str = "otap_kv_set_if_absent";
/// See [`KV_GET`].
pub const KV_DELETE: &str = "otap_kv_delete";

/// A function of the ABI: where it lives and its type.
pub struct Function {
    /// The import module (`otap`), or empty for an export.
    pub module: &'static str,
    /// Its name.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [ValType],
    /// Result types.
    pub results: &'static [ValType],
}

impl Function {
    /// `name(i32, i32) -> i64`, as errors show it.
    pub fn signature(&self) -> String {
        let types = |types: &[ValType]| {
            types
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let module = if self.module.is_empty() {
            String::new()
        } else {
            format!("{}.", self.module)
        };
        let results = match self.results {
            [] => String::new(),
            results => format!(" -> {}", types(results)),
        };
        format!("`{module}{}({}){results}`", self.name, types(self.params))
    }
}

const fn export(
    name: &'static str,
    params: &'static [ValType],
    results: &'static [ValType],
) -> Function {
    Function {
        module: "",
        name,
        params,
        results,
    }
}

/// What every module exports (besides `memory`).
pub const COMMON_EXPORTS: &[Function] = &[
    export(ABI_VERSION, &[], &[ValType::I32]),
    export(ALLOC, &[ValType::I32], &[ValType::I32]),
];

const AUTHORIZER_EXPORTS: &[Function] = &[export(
    AUTHORIZE,
    &[ValType::I32, ValType::I32],
    &[ValType::I64],
)];

const STORE_EXPORTS: &[Function] = &[
    export(KV_GET, &[ValType::I32, ValType::I32], &[ValType::I64]),
    export(KV_SET, WRITE, &[ValType::I32]),
    export(KV_SET_IF_ABSENT, WRITE, &[ValType::I32]),
    export(KV_DELETE, &[ValType::I32, ValType::I32], &[ValType::I32]),
];

const PROVIDER_EXPORTS: &[Function] = &[
    export(TOKEN, &[], &[ValType::I64]),
    export(TOKEN_VALID_MS, &[], &[ValType::I64]),
];

/// The exports `capability` needs; none for one a module cannot provide (a durable queue:
/// [`PROVIDABLE`](crate::config::PROVIDABLE) leaves it out, and a configuration naming it is
/// refused before a module is read).
pub fn exports_of(capability: CapabilityId) -> &'static [Function] {
    match capability {
        CapabilityId::BearerTokenAuthorizer => AUTHORIZER_EXPORTS,
        CapabilityId::KeyValueStore => STORE_EXPORTS,
        CapabilityId::BearerTokenProvider => PROVIDER_EXPORTS,
        CapabilityId::DurableQueue => &[],
    }
}

const fn import(
    name: &'static str,
    params: &'static [ValType],
    results: &'static [ValType],
) -> Function {
    Function {
        module: "otap",
        name,
        params,
        results,
    }
}

/// The host's own functions a module may import (module `otap`); besides them only the WASI
/// functions of [`crate::wasi::FUNCTIONS`].
pub const HOST_FUNCTIONS: &[Function] = &[
    import("log", &[ValType::I32, ValType::I32, ValType::I32], &[]),
    import("monotonic_ns", &[], &[ValType::I64]),
];

/// `(key, key length, value, value length, ttl ms or -1)`: a write's parameters, in the
/// store's exports and in the granted store's functions alike.
const WRITE: &[ValType] = &[
    ValType::I32,
    ValType::I32,
    ValType::I32,
    ValType::I32,
    ValType::I64,
];

/// The host functions that call the `key_value_store` granted to the guest (its
/// `capabilities:`); a module may import them only when one is bound. Callable while the
/// guest serves a `key_value_store` or `bearer_token_authorizer` call (the engine waits for
/// the store); in `otap_start` and `otap_token`, which the engine calls without waiting, they
/// answer [`status::NOT_HERE`].
pub const GRANTED_STORE_FUNCTIONS: &[Function] = &[
    // (key, key length, output, output capacity) -> value length, or a negative status; the
    // value is written at `output` when it fits, held for `kv_value` otherwise.
    import(
        "kv_get",
        &[ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        &[ValType::I64],
    ),
    // (output, capacity) -> the held value's length (written when it fits), or -1 if none.
    import("kv_value", &[ValType::I32, ValType::I32], &[ValType::I64]),
    // A write -> 0, or a negative status.
    import("kv_set", WRITE, &[ValType::I32]),
    // A write -> 1 set, 0 already present, or a negative status.
    import("kv_set_if_absent", WRITE, &[ValType::I32]),
    // (key, key length) -> 1 deleted, 0 absent, or a negative status.
    import("kv_delete", &[ValType::I32, ValType::I32], &[ValType::I32]),
];

/// A packed `(pointer, length)` result (`pointer << 32 | length`), when the value is not a
/// negative status.
pub fn unpack(value: i64) -> Option<(u32, u32)> {
    (value >= 0).then_some(((value >> 32) as u32, value as u32))
}

/// The ABI's negative statuses.
pub mod status {
    /// `otap_kv_get`: no value for the key.
    pub const ABSENT: i64 = -1;
    /// No credential: denied `missing`.
    pub const DENY_MISSING: i64 = -1;
    /// Not an accepted credential: denied `invalid`.
    pub const DENY_INVALID: i64 = -2;
    /// An accepted credential that has expired: denied `expired`.
    pub const DENY_EXPIRED: i64 = -3;
    /// `otap_authorize`: no decision now (the guest's store could not answer): the request is
    /// refused as unavailable (retry), not as unauthorized.
    pub const UNDECIDED: i64 = -4;

    /// A granted store's call: the store is unavailable or did not answer in time (transient).
    pub const STORE_UNAVAILABLE: i64 = -2;
    /// A granted store's call: the store refused it (permanent).
    pub const STORE_REFUSED: i64 = -3;
    /// A granted store's call made where the engine does not wait (`otap_authorize`,
    /// `otap_start`, `otap_token`).
    pub const NOT_HERE: i64 = -4;
    /// A granted store's call with arguments outside the guest's memory or a TTL out of range.
    pub const BAD_ARGUMENTS: i64 = -5;
}
