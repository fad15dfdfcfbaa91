//! `extension:oidc_auth`: bearer tokens that are JWTs signed by an OIDC issuer, checked
//! against the keys it publishes; the caller's identity read from the token's claims.
//!
//! One instance serves every core (shared). The key set is fetched by the instance's task
//! (at start, every `keys_refresh_interval`, and soon after a token names a key it does not
//! hold) and read by `authorize` with one lock-free load. A signature check costs tens of
//! microseconds, and a sender presents the same token for its whole life (an hour is
//! usual): each core remembers the tokens it verified (`cache_size`), so a token seen again
//! costs a hash and a lookup in a table of that core's own, with no lock and no shared cache
//! line. A change of the key set forgets them all.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use otap_df_core::capability::{
    AuthorizeError, AuthzDecision, BearerTokenAuthorizer, CapabilityId, DenyReason, Identity,
    shared,
};
use otap_df_core::config::ComponentConfig;
use otap_df_core::extension::{
    ExtensionContext, ExtensionError, ExtensionFactory, Readiness, SharedExtension,
};
use otap_df_core::secret::{AuthHeader, Credential};
use serde_json::{Map, Value};
use tokio::sync::Notify;

mod keys;

use crate::config::OidcAuthConfig;
use crate::http;
use crate::jwt::{Algorithm, KeySet, Unverified};
pub use keys::KeyFetcher;
use keys::KeySource;

/// The default `startup_timeout`: the issuer's keys are fetched before the pipeline starts.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest token looked at; a longer one is refused unread.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// How many unknown key ids are remembered (then forgotten all at once): garbage `kid`s
/// cannot grow the table.
const MAX_UNKNOWN_KIDS: usize = 1024;

/// `extension:oidc_auth`.
pub static OIDC_AUTH: ExtensionFactory = ExtensionFactory::new("oidc_auth", env!("CARGO_PKG_NAME"))
    .description(
        "JWT bearer tokens checked against an OIDC issuer's published keys (issuer, audience, \
         expiry, algorithms); the caller's identity from the token's claims",
    )
    .provides(&[CapabilityId::BearerTokenAuthorizer])
    .default_startup_timeout(DEFAULT_STARTUP_TIMEOUT)
    .validate_config(|config| OidcAuthConfig::decode(config).map(drop))
    .shared(create)
    .build();

fn create(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<SharedExtension, ExtensionError> {
    let config = OidcAuthConfig::decode(config)?;
    let mut auth = OidcAuth::new(context.extension_id(), &config)?;
    auth.counters = Counters {
        fetches: context.counter("key_fetches"),
        failures: context.counter("key_fetch_failures"),
        keys: context.gauge("keys"),
    };
    let auth = Arc::new(auth);
    let authorizer: Arc<dyn shared::BearerTokenAuthorizer> = auth.clone();
    Ok(context
        .shared_builder()
        .provide::<BearerTokenAuthorizer>(authorizer)
        .active(Box::new(KeyFetcher::new(auth)), Readiness::Probe)?)
}

/// What a token must be to be accepted, and what is read from it.
#[derive(Debug)]
struct Checks {
    issuer: String,
    audience: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    subject_claim: String,
    attributes: Vec<(String, String)>,
    required: Vec<(String, Vec<String>)>,
    cache_size: usize,
}

/// The key set held, and which one it is.
#[derive(Debug)]
struct Keys {
    set: KeySet,
    /// Changes when the keys do: verified tokens remembered under another generation are
    /// verified again.
    generation: u64,
    fetched: Instant,
}

#[derive(Debug, Default)]
struct Counters {
    fetches: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    keys: Arc<AtomicI64>,
}

/// One `oidc_auth` instance.
#[derive(Debug)]
pub struct OidcAuth {
    id: String,
    /// Distinguishes this instance's remembered tokens from another's on the same thread.
    instance: u64,
    header: AuthHeader,
    checks: Checks,
    source: KeySource,
    keys: ArcSwapOption<Keys>,
    /// A token named a key the set does not hold: the task fetches the set again.
    wanted: Notify,
    /// Keys tokens named that the set lacked, and when each was first named.
    unknown: Mutex<HashMap<String, Instant>>,
    counters: Counters,
}

impl OidcAuth {
    /// Resolves the configuration; contacts nothing (the [`KeyFetcher`] fetches the keys).
    pub fn new(id: &str, config: &OidcAuthConfig) -> Result<Self, ExtensionError> {
        static INSTANCES: AtomicU64 = AtomicU64::new(1);
        config
            .validate()
            .map_err(|invalid| ExtensionError::typed(id, invalid))?;
        let client = http::client(&config.tls, config.request_timeout)
            .map_err(|error| ExtensionError::typed(id, error))?;
        let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
        live().insert(instance);
        Ok(Self {
            id: id.to_owned(),
            instance,
            header: AuthHeader::new(&config.header, &config.scheme),
            checks: Checks {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                algorithms: config.algorithms.clone(),
                leeway: config.leeway.as_secs(),
                subject_claim: config.subject_claim.clone(),
                attributes: config
                    .attributes
                    .iter()
                    .map(|(name, claim)| (name.clone(), claim.clone()))
                    .collect(),
                required: config
                    .required_claims
                    .iter()
                    .map(|(claim, values)| (claim.clone(), values.clone()))
                    .collect(),
                cache_size: config.cache_size,
            },
            source: KeySource {
                issuer: config.issuer.clone(),
                jwks_url: config.jwks_url.clone(),
                client,
                refresh_interval: config.keys_refresh_interval,
                min_interval: config.keys_min_interval,
            },
            keys: ArcSwapOption::empty(),
            wanted: Notify::new(),
            unknown: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        })
    }

    /// The extension id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many keys the set held has (0 before the first fetch).
    pub fn key_count(&self) -> usize {
        self.keys.load().as_ref().map_or(0, |keys| keys.set.len())
    }

    /// Takes `set` as the issuer's keys (what the task does after a fetch): tokens verified
    /// under the previous set are verified again when the keys differ.
    pub fn set_keys(&self, set: KeySet) {
        let previous = self.keys.load_full();
        let generation = match &previous {
            Some(previous) if previous.set == set => previous.generation,
            Some(previous) => previous.generation + 1,
            None => 1,
        };
        self.counters.keys.store(
            i64::try_from(set.len()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        self.keys.store(Some(Arc::new(Keys {
            set,
            generation,
            fetched: Instant::now(),
        })));
    }

    fn error(&self, message: impl Into<String>) -> AuthorizeError {
        AuthorizeError {
            authorizer: self.id.clone(),
            message: message.into(),
        }
    }

    /// Whether a token signed with `kid`, a key `keys` lacks, waits for the next fetch of the
    /// set: yes until a set fetched after `kid` was first seen lacks it too.
    fn awaits_key(&self, kid: &str, keys: &Keys) -> bool {
        let mut unknown = self.unknown.lock().unwrap_or_else(PoisonError::into_inner);
        if unknown.len() >= MAX_UNKNOWN_KIDS && !unknown.contains_key(kid) {
            unknown.clear();
        }
        let first_seen = *unknown.entry(kid.to_owned()).or_insert_with(Instant::now);
        keys.fetched < first_seen
    }

    /// The full check of a token not remembered: signature, then claims.
    fn verify(&self, token: &str, keys: &Keys, now: u64) -> Result<Verdict, AuthorizeError> {
        let Ok(unverified) = Unverified::parse(token) else {
            return Ok(Verdict::deny(DenyReason::Invalid));
        };
        if !self.checks.algorithms.contains(&unverified.alg) {
            return Ok(Verdict::deny(DenyReason::Invalid));
        }
        let kid = unverified.kid.as_deref();
        let mut candidates = keys.set.candidates(kid, unverified.alg).peekable();
        if candidates.peek().is_none() {
            if let Some(kid) = kid.filter(|kid| !keys.set.has_kid(kid))
                && self.awaits_key(kid, keys)
            {
                // A key the issuer may have published since the set was fetched: fetch it
                // again, and have the sender retry (503 / UNAVAILABLE) rather than refuse
                // it for good.
                self.wanted.notify_one();
                return Err(self.error(format!(
                    "the token is signed with key `{}` that the issuer's key set does not hold \
                     yet; fetching the set again",
                    kid.chars().take(64).collect::<String>()
                )));
            }
            return Ok(Verdict::deny(DenyReason::Invalid));
        }
        if !candidates.any(|key| unverified.verified_by(key)) {
            return Ok(Verdict::deny(DenyReason::Invalid));
        }
        let Ok(claims) = unverified.claims() else {
            return Ok(Verdict::deny(DenyReason::Invalid));
        };
        Ok(self.judge(&claims, now))
    }

    /// The claims of a token whose signature is good.
    fn judge(&self, claims: &Map<String, Value>, now: u64) -> Verdict {
        let checks = &self.checks;
        if claims.get("iss").and_then(Value::as_str) != Some(checks.issuer.as_str()) {
            return Verdict::deny(DenyReason::Invalid);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => checks.audience.iter().any(|a| a == aud),
            Some(Value::Array(auds)) => auds
                .iter()
                .filter_map(Value::as_str)
                .any(|aud| checks.audience.iter().any(|a| a == aud)),
            _ => false,
        };
        if !audience_ok {
            return Verdict::deny(DenyReason::Invalid);
        }
        let Some(exp) = claims.get("exp").and_then(Value::as_u64) else {
            return Verdict::deny(DenyReason::Invalid);
        };
        let until = exp.saturating_add(checks.leeway);
        if now >= until {
            return Verdict::deny(DenyReason::Expired);
        }
        for early in ["nbf", "iat"] {
            if let Some(at) = claims.get(early) {
                match at.as_u64() {
                    Some(at) if at <= now.saturating_add(checks.leeway) => {}
                    _ => return Verdict::deny(DenyReason::Invalid),
                }
            }
        }
        let Some(subject) = claims
            .get(&checks.subject_claim)
            .and_then(scalar)
            .filter(|subject| !subject.is_empty())
        else {
            return Verdict::deny(DenyReason::Invalid);
        };
        let mut attributes = Vec::new();
        for (name, claim) in &checks.attributes {
            for value in values(claims.get(claim)) {
                attributes.push((name.as_str(), value));
            }
        }
        let identity = Identity::with_attributes(subject, attributes);
        let permitted = checks.required.iter().all(|(claim, accepted)| {
            values(claims.get(claim))
                .iter()
                .flat_map(|value| {
                    // `scope` is one space-separated string (RFC 8693 §4.2).
                    if claim == "scope" {
                        value.split_whitespace().map(str::to_owned).collect()
                    } else {
                        vec![value.clone()]
                    }
                })
                .any(|value| accepted.contains(&value))
        });
        Verdict {
            decision: if permitted {
                AuthzDecision::Allow { identity }
            } else {
                AuthzDecision::Deny {
                    reason: DenyReason::Forbidden,
                }
            },
            until,
        }
    }
}

/// A claim's value as text: a string as is, a number or a boolean written out.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// A claim's values: one for a scalar, one per scalar element of an array.
fn values(claim: Option<&Value>) -> Vec<String> {
    match claim {
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(value) => scalar(value).into_iter().collect(),
        None => Vec::new(),
    }
}

/// A decision and until when (seconds since the epoch) it holds.
struct Verdict {
    decision: AuthzDecision,
    until: u64,
}

impl Verdict {
    /// A refusal, not remembered (`until` 0): a token refused for its signature or claims is
    /// checked again if presented again.
    fn deny(reason: DenyReason) -> Self {
        Self {
            decision: AuthzDecision::Deny { reason },
            until: 0,
        }
    }
}

/// The tokens one thread verified, for one instance.
struct Remembered {
    generation: u64,
    entries: HashMap<u64, Entry>,
}

struct Entry {
    token: Box<str>,
    decision: AuthzDecision,
    until: u64,
}

thread_local! {
    // By instance: one or two per thread (two across a reload), so a scan, not a hash.
    static REMEMBERED: RefCell<Vec<(u64, Remembered)>> = const { RefCell::new(Vec::new()) };
}

/// The instances alive: a thread forgets what it remembered for the others when it first
/// meets a new one (a reload's), so a replaced instance's tokens do not outlive it for long
/// in threads that go on serving.
fn live() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u64>> {
    static LIVE: Mutex<std::collections::BTreeSet<u64>> =
        Mutex::new(std::collections::BTreeSet::new());
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This thread's table of `instance`, made (and the tables of instances gone dropped) on
/// its first use here.
fn mine(threads: &mut Vec<(u64, Remembered)>, instance: u64, generation: u64) -> &mut Remembered {
    let at = match threads.iter().position(|(id, _)| *id == instance) {
        Some(at) => at,
        None => {
            let live = live();
            threads.retain(|(id, _)| live.contains(id));
            threads.push((
                instance,
                Remembered {
                    generation,
                    entries: HashMap::new(),
                },
            ));
            threads.len() - 1
        }
    };
    &mut threads[at].1
}

impl Drop for OidcAuth {
    fn drop(&mut self) {
        live().remove(&self.instance);
        // This thread's table at once; other threads' when they meet a new instance.
        let _ = REMEMBERED.try_with(|threads| {
            if let Ok(mut threads) = threads.try_borrow_mut() {
                threads.retain(|(id, _)| *id != self.instance);
            }
        });
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl shared::BearerTokenAuthorizer for OidcAuth {
    fn authorize(&self, credential: Credential<'_>) -> Result<AuthzDecision, AuthorizeError> {
        let token = credential.expose();
        if token.is_empty() {
            return Ok(AuthzDecision::Deny {
                reason: DenyReason::Missing,
            });
        }
        if token.len() > MAX_TOKEN_LEN {
            return Ok(AuthzDecision::Deny {
                reason: DenyReason::Invalid,
            });
        }
        let Some(keys) = self.keys.load_full() else {
            return Err(self.error("the issuer's keys have not been fetched yet"));
        };
        let now = now_seconds();
        let hash = xxhash(token);
        let remembered = REMEMBERED.with_borrow_mut(|threads| {
            let mine = mine(threads, self.instance, keys.generation);
            if mine.generation != keys.generation {
                mine.generation = keys.generation;
                mine.entries.clear();
            }
            let entry = mine.entries.get(&hash)?;
            if *entry.token != *token {
                return None;
            }
            if now >= entry.until {
                mine.entries.remove(&hash);
                return Some(AuthzDecision::Deny {
                    reason: DenyReason::Expired,
                });
            }
            Some(entry.decision.clone())
        });
        if let Some(decision) = remembered {
            return Ok(decision);
        }
        let verdict = self.verify(token, &keys, now)?;
        if verdict.until > now {
            REMEMBERED.with_borrow_mut(|threads| {
                let mine = mine(threads, self.instance, keys.generation);
                if mine.entries.len() >= self.checks.cache_size {
                    mine.entries.retain(|_, entry| entry.until > now);
                    if mine.entries.len() >= self.checks.cache_size {
                        mine.entries.clear();
                    }
                }
                mine.entries.insert(
                    hash,
                    Entry {
                        token: token.into(),
                        decision: verdict.decision.clone(),
                        until: verdict.until,
                    },
                );
            });
        }
        Ok(verdict.decision)
    }

    fn header(&self) -> &AuthHeader {
        &self.header
    }
}

fn xxhash(token: &str) -> u64 {
    // A per-process random seed: which tokens share a slot cannot be chosen by a sender.
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let mut bytes = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
        u64::from_le_bytes(bytes)
    });
    xxhash_rust::xxh3::xxh3_64_with_seed(token.as_bytes(), seed)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::jwt::SigningKey;

    fn signing_key() -> SigningKey {
        let random = ring::rand::SystemRandom::new();
        let der = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &random,
        )
        .expect("a key");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der.as_ref())
        );
        SigningKey::from_pem(pem.as_bytes(), None).expect("usable")
    }

    fn authorizer(key: &SigningKey) -> OidcAuth {
        let config = OidcAuthConfig::new("https://issuer.test", ["otap-df"])
            .with_algorithms([Algorithm::ES256]);
        let auth = OidcAuth::new("oidc", &config).expect("authorizer");
        let jwks = serde_json::json!({ "keys": [key.public_jwk(Some("k"))] }).to_string();
        auth.set_keys(KeySet::parse(jwks.as_bytes()).expect("keys"));
        auth
    }

    fn instances_here() -> Vec<u64> {
        let mut ids: Vec<u64> =
            REMEMBERED.with_borrow(|threads| threads.iter().map(|(id, _)| *id).collect());
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_replaced_instances_remembered_tokens_do_not_outlive_it() {
        let key = signing_key();
        let claims = serde_json::json!({
            "iss": "https://issuer.test", "aud": "otap-df", "sub": "svc",
            "exp": now_seconds() + 600,
        });
        let token = key.sign(Some("k"), &claims).expect("token");
        let decide = |auth: &OidcAuth| {
            shared::BearerTokenAuthorizer::authorize(auth, Credential::new(&token))
        };
        let (first, second) = (authorizer(&key), authorizer(&key));
        assert!(matches!(decide(&first), Ok(AuthzDecision::Allow { .. })));
        assert!(matches!(decide(&second), Ok(AuthzDecision::Allow { .. })));
        assert_eq!(instances_here(), [first.instance, second.instance]);
        // Dropped here: forgotten here at once.
        let first_id = first.instance;
        drop(first);
        assert_eq!(instances_here(), [second.instance]);
        // Dropped on another thread: forgotten here when a new instance is first used here.
        let third = authorizer(&key);
        let second_id = second.instance;
        std::thread::spawn(move || drop(second))
            .join()
            .expect("dropped");
        assert!(matches!(decide(&third), Ok(AuthzDecision::Allow { .. })));
        assert_eq!(instances_here(), [third.instance]);
        assert!(!live().contains(&first_id) && !live().contains(&second_id));
    }
}
