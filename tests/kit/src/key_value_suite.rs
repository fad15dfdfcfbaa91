//! The `key_value_store` behaviour suite.
//!
//! [`run_local`] and [`run_shared`] take a function that returns a store (a fresh one, or the
//! same one: every case writes under its own unique keys, so a store shared with other tests,
//! such as one Redis server, works). Each runs every case and panics with the list of failed
//! cases and why.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use otap_df_core::capability::{local, shared};

/// How long an entry written with a short TTL may take to disappear before the suite calls
/// it a failure. Generous: it bounds a wait, it is not a measurement.
pub const TTL_DEADLINE: Duration = Duration::from_secs(10);

type Case<S> = fn(S, Keys) -> Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// Unique keys for one case.
#[derive(Clone)]
pub struct Keys(String);

static NONCE: AtomicU64 = AtomicU64::new(0);

impl Keys {
    fn new(case: &str) -> Self {
        let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Self(format!(
            "suite:{case}:{}:{started}:{nonce}:",
            std::process::id()
        ))
    }

    fn key(&self, name: &str) -> Vec<u8> {
        format!("{}{name}", self.0).into_bytes()
    }
}

/// How a value appears in a failure message: byte strings are summarized, not dumped.
trait Shown: PartialEq {
    fn shown(&self) -> String;
}

impl Shown for bool {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Shown for usize {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Shown for Option<Vec<u8>> {
    fn shown(&self) -> String {
        match self {
            None => "None".to_owned(),
            Some(bytes) if bytes.len() <= 32 => {
                format!("Some({:?})", String::from_utf8_lossy(bytes))
            }
            Some(bytes) => format!("Some({} bytes starting {:?})", bytes.len(), &bytes[..16]),
        }
    }
}

fn check<T: Shown>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what}: got {}, want {}",
            got.shown(),
            want.shown()
        ))
    }
}

fn ok<T, E: std::fmt::Display>(what: &str, result: Result<T, E>) -> Result<T, String> {
    result.map_err(|e| format!("{what}: unexpected error: {e}"))
}

// One body per case, written once against a store type `$S` and a method-call syntax that
// is the same for both variants; the macro instantiates it for local and shared stores.
macro_rules! cases {
    ($S:ty, $spawn_many:path) => {
        fn cases() -> Vec<(&'static str, Case<$S>)> {
            vec![
                ("get_of_a_missing_key_is_none", |s, k| {
                    Box::pin(async move {
                        check("get", ok("get", s.get(&k.key("missing")).await)?, None)
                    })
                }),
                ("set_then_get_returns_the_value", |s, k| {
                    Box::pin(async move {
                        ok("set", s.set(&k.key("a"), b"value-a", None).await)?;
                        check(
                            "get",
                            ok("get", s.get(&k.key("a")).await)?,
                            Some(b"value-a".to_vec()),
                        )
                    })
                }),
                ("set_replaces_the_previous_value", |s, k| {
                    Box::pin(async move {
                        ok("set", s.set(&k.key("a"), b"one", None).await)?;
                        ok("set", s.set(&k.key("a"), b"two", None).await)?;
                        check(
                            "get",
                            ok("get", s.get(&k.key("a")).await)?,
                            Some(b"two".to_vec()),
                        )
                    })
                }),
                ("keys_and_values_are_arbitrary_bytes", |s, k| {
                    Box::pin(async move {
                        let mut key = k.key("bin");
                        key.extend_from_slice(&[0, 255, 10, 13, 0]);
                        let value: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
                        ok("set", s.set(&key, &value, None).await)?;
                        check("get binary", ok("get", s.get(&key).await)?, Some(value))?;
                        ok("set empty", s.set(&k.key("empty"), b"", None).await)?;
                        check(
                            "get empty",
                            ok("get", s.get(&k.key("empty")).await)?,
                            Some(Vec::new()),
                        )
                    })
                }),
                ("keys_that_share_a_prefix_are_distinct", |s, k| {
                    Box::pin(async move {
                        ok("set", s.set(&k.key("ab"), b"1", None).await)?;
                        check("get prefix", ok("get", s.get(&k.key("a")).await)?, None)?;
                        check("get longer", ok("get", s.get(&k.key("abc")).await)?, None)
                    })
                }),
                ("delete_reports_whether_a_value_was_removed", |s, k| {
                    Box::pin(async move {
                        ok("set", s.set(&k.key("d"), b"v", None).await)?;
                        check(
                            "first delete",
                            ok("delete", s.delete(&k.key("d")).await)?,
                            true,
                        )?;
                        check(
                            "second delete",
                            ok("delete", s.delete(&k.key("d")).await)?,
                            false,
                        )?;
                        check("get", ok("get", s.get(&k.key("d")).await)?, None)
                    })
                }),
                ("set_if_absent_stores_only_the_first_value", |s, k| {
                    Box::pin(async move {
                        check(
                            "first",
                            ok(
                                "set_if_absent",
                                s.set_if_absent(&k.key("x"), b"first", None).await,
                            )?,
                            true,
                        )?;
                        check(
                            "second",
                            ok(
                                "set_if_absent",
                                s.set_if_absent(&k.key("x"), b"second", None).await,
                            )?,
                            false,
                        )?;
                        check(
                            "get",
                            ok("get", s.get(&k.key("x")).await)?,
                            Some(b"first".to_vec()),
                        )?;
                        ok("delete", s.delete(&k.key("x")).await)?;
                        check(
                            "after delete",
                            ok(
                                "set_if_absent",
                                s.set_if_absent(&k.key("x"), b"third", None).await,
                            )?,
                            true,
                        )
                    })
                }),
                ("entries_expire_after_their_ttl", |s, k| {
                    Box::pin(async move {
                        ok(
                            "set short",
                            s.set(&k.key("short"), b"v", Some(Duration::from_millis(100)))
                                .await,
                        )?;
                        ok(
                            "set long",
                            s.set(&k.key("long"), b"v", Some(Duration::from_secs(3600)))
                                .await,
                        )?;
                        ok("set none", s.set(&k.key("none"), b"v", None).await)?;
                        let deadline = Instant::now() + TTL_DEADLINE;
                        // Bounded polling: the entry must be gone within the deadline.
                        while ok("get short", s.get(&k.key("short")).await)?.is_some() {
                            if Instant::now() > deadline {
                                return Err(format!(
                                    "entry with a 100ms TTL still present after {TTL_DEADLINE:?}"
                                ));
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        check(
                            "long TTL",
                            ok("get", s.get(&k.key("long")).await)?,
                            Some(b"v".to_vec()),
                        )?;
                        check(
                            "no TTL",
                            ok("get", s.get(&k.key("none")).await)?,
                            Some(b"v".to_vec()),
                        )?;
                        check(
                            "set_if_absent after expiry",
                            ok(
                                "set_if_absent",
                                s.set_if_absent(&k.key("short"), b"w", None).await,
                            )?,
                            true,
                        )
                    })
                }),
                ("concurrent_set_if_absent_has_exactly_one_winner", |s, k| {
                    Box::pin(async move {
                        let winners = $spawn_many(s, k.key("race"), 64).await?;
                        check("winners", winners, 1)
                    })
                }),
            ]
        }
    };
}

fn report(implementation: &str, variant: &str, failures: Vec<String>, total: usize) {
    if !failures.is_empty() {
        panic!(
            "{implementation} ({variant}) failed {} of {total} key_value_store cases:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
}

mod local_cases {
    use super::*;

    pub(super) type Store = Rc<dyn local::KeyValueStore>;

    async fn race(store: Store, key: Vec<u8>, contenders: usize) -> Result<usize, String> {
        let attempts = (0..contenders).map(|i| {
            let store = store.clone();
            let key = key.clone();
            async move {
                store
                    .set_if_absent(&key, format!("{i}").as_bytes(), None)
                    .await
            }
        });
        let mut winners = 0;
        for result in futures_join_all(attempts).await {
            if ok("set_if_absent", result)? {
                winners += 1;
            }
        }
        Ok(winners)
    }

    cases!(Store, race);

    pub(super) fn all() -> Vec<(&'static str, Case<Store>)> {
        cases()
    }
}

mod shared_cases {
    use super::*;

    pub(super) type Store = Arc<dyn shared::KeyValueStore>;

    async fn race(store: Store, key: Vec<u8>, contenders: usize) -> Result<usize, String> {
        let mut tasks = Vec::new();
        for i in 0..contenders {
            let store = store.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .set_if_absent(&key, format!("{i}").as_bytes(), None)
                    .await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            let result = task.await.map_err(|e| format!("task failed: {e}"))?;
            if ok("set_if_absent", result)? {
                winners += 1;
            }
        }
        Ok(winners)
    }

    cases!(Store, race);

    pub(super) fn all() -> Vec<(&'static str, Case<Store>)> {
        cases()
    }
}

/// Polls every future to completion on the current task (the local variant's futures are not
/// `Send`, so they cannot be spawned).
async fn futures_join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// The names of the suite's cases, in order.
pub fn case_names() -> Vec<&'static str> {
    local_cases::all()
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// Runs every case against local stores from `make`, on a single-threaded runtime.
pub fn run_local(implementation: &str, make: impl Fn() -> Rc<dyn local::KeyValueStore>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    run_cases(implementation, "local", runtime, local_cases::all(), make);
}

/// Runs every case against shared stores from `make`, on a multi-threaded runtime (so the
/// concurrent cases really run in parallel).
pub fn run_shared(implementation: &str, make: impl Fn() -> Arc<dyn shared::KeyValueStore>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    run_cases(implementation, "shared", runtime, shared_cases::all(), make);
}

fn run_cases<S>(
    implementation: &str,
    variant: &str,
    runtime: std::io::Result<tokio::runtime::Runtime>,
    cases: Vec<(&'static str, Case<S>)>,
    make: impl Fn() -> S,
) {
    let runtime = runtime.unwrap_or_else(|e| panic!("cannot start a tokio runtime: {e}"));
    let total = cases.len();
    let failures = cases
        .into_iter()
        .filter_map(|(name, case)| {
            runtime
                .block_on(case(make(), Keys::new(name)))
                .err()
                .map(|why| format!("{name}: {why}"))
        })
        .collect();
    report(implementation, variant, failures, total);
}
