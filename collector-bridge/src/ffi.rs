//! The C ABI the Go module calls (`include/otapdf_bridge.h` declares it).
//!
//! Every function catches a panic at the boundary and reports it as an error: a Rust panic
//! never unwinds into Go. Strings handed out are freed with [`otapdf_free`].
//!
//! Go → Rust ([`otapdf_submit`]) queues the payload and returns; the outcome comes back as
//! an event, exactly once (the Go caller waits for it on a channel: no thread is held in a C
//! call meanwhile). The caller's bytes are borrowed (pinned by the Go side), not copied: the
//! outcome says whether they are still referenced (an exporter merging them), and a release
//! event names them once they are not. Rust → Go (the outlet) is asynchronous on the Rust
//! side: a delivery event hands the bytes over, the Go side copies them into the Collector's
//! data model (or recognises a request it lent, coming back unchanged) and answers later
//! through [`otapdf_complete`]. Events are queued (`src/events.rs`) and taken in batches
//! by the Go side's pump ([`otapdf_events_fd`], [`otapdf_events`], [`otapdf_events_done`]):
//! no Rust thread ever runs Go code.

use std::ffi::{CString, c_char};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use otap_df::core::capability::Identity;
use otap_df::core::data::{Encoding, OtlpPayload, Signal};

use crate::events::{self, Event};
use crate::fragment::Role;
use crate::host::{self, Refusal};

mod pump;

pub(crate) use pump::hand_over;
pub use pump::{
    CEvent, otapdf_complete, otapdf_events, otapdf_events_done, otapdf_events_fd, otapdf_wake,
};

/// Status codes of outcomes ([`otapdf_submit`], answer events, [`otapdf_complete`]): accepted.
pub const ACCEPTED: i32 = 0;
/// Send it again later.
pub const RETRYABLE: i32 = 1;
/// Sending it again cannot help.
pub const PERMANENT: i32 = 2;

fn signal_of(code: u32) -> Option<Signal> {
    Some(match code {
        0 => Signal::Logs,
        1 => Signal::Traces,
        2 => Signal::Metrics,
        _ => return None,
    })
}

fn signal_code(signal: Signal) -> u32 {
    match signal {
        Signal::Logs => 0,
        Signal::Traces => 1,
        Signal::Metrics => 2,
    }
}

/// A C string the caller frees with [`otapdf_free`].
fn c_string(text: impl Into<String>) -> *mut c_char {
    let text: String = text.into().replace('\0', " ");
    CString::new(text).map_or(std::ptr::null_mut(), CString::into_raw)
}

fn panicked(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    format!("otap-df panicked: {message}")
}

/// Runs `body`, a panic turned into its message.
fn guarded<T>(body: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|p| Err(panicked(&*p)))
}

/// `len` bytes at `data` (an empty slice for a null pointer).
///
/// # Safety
/// `data` points to `len` readable bytes that stay valid and unchanged while the slice is used.
unsafe fn bytes_at<'a>(data: *const u8, len: usize) -> &'a [u8] {
    if data.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(data, len) }
}

/// Checks a component's configuration (`role`: 0 extension, 1 receiver, 2 processor,
/// 3 exporter, 4 connector; `config`: JSON or YAML) without starting anything: null when
/// valid, else the errors, each at its path inside the component's configuration.
///
/// # Safety
/// `config` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn otapdf_validate(role: u32, config: *const u8, len: usize) -> *mut c_char {
    // SAFETY: the caller's contract, for the duration of the call.
    let config = unsafe { bytes_at(config, len) };
    let outcome = guarded(|| {
        let role = Role::from_code(role).ok_or_else(|| format!("unknown role {role}"))?;
        host::validate(role, &String::from_utf8_lossy(config))
    });
    match outcome {
        Ok(()) => std::ptr::null_mut(),
        Err(message) => c_string(message),
    }
}

/// Starts a component (see [`otapdf_validate`] for `role` and `config`); `go_handle` is what
/// its outlet names to the consume callback. Null once it runs, with its id in `*id`; else
/// why it did not start.
///
/// # Safety
/// `config` points to `len` readable bytes; `id` to a writable `u64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn otapdf_start(
    role: u32,
    config: *const u8,
    len: usize,
    go_handle: u64,
    id: *mut u64,
) -> *mut c_char {
    // SAFETY: the caller's contract, for the duration of the call.
    let config = unsafe { bytes_at(config, len) };
    let outcome = guarded(|| {
        let role = Role::from_code(role).ok_or_else(|| format!("unknown role {role}"))?;
        host::start(role, &String::from_utf8_lossy(config), go_handle)
    });
    match outcome {
        Ok(started) => {
            if !id.is_null() {
                // SAFETY: the caller's contract.
                unsafe { *id = started };
            }
            std::ptr::null_mut()
        }
        Err(message) => c_string(message),
    }
}

/// Stops component `id` and waits for its threads to end: null, or what went wrong.
#[unsafe(no_mangle)]
pub extern "C" fn otapdf_stop(id: u64) -> *mut c_char {
    match guarded(|| host::stop(id)) {
        Ok(()) => std::ptr::null_mut(),
        Err(message) => c_string(message),
    }
}

/// Component `id`'s metrics as JSON (see [`host::metrics`]), freed with [`otapdf_free`];
/// null when no such component runs.
#[unsafe(no_mangle)]
pub extern "C" fn otapdf_metrics(id: u64) -> *mut c_char {
    guarded(|| host::metrics(id)).map_or(std::ptr::null_mut(), c_string)
}

const BORROWED: u8 = 0;
const RELEASED: u8 = 1;
const ANSWERED: u8 = 2;

/// Go memory the payload borrows: released when the last reference to the payload's bytes
/// goes. If the payload was answered by then, the release callback tells the Go side to
/// unpin it; before, the answer says it.
struct Borrowed {
    data: *const u8,
    len: usize,
    token: u64,
    state: Arc<AtomicU8>,
}

// SAFETY: the bytes are read-only and pinned by the Go side until released.
unsafe impl Send for Borrowed {}
// SAFETY: as above: shared reads of immutable memory.
unsafe impl Sync for Borrowed {}

impl AsRef<[u8]> for Borrowed {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: pinned and unchanged until this owner is dropped (the Go side's contract).
        unsafe { bytes_at(self.data, self.len) }
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        // Decided under the event queue's lock, as the answer is: a release is queued after
        // the answer that said the bytes were still referenced, never before.
        events::push_with(|| {
            (self.state.swap(RELEASED, Ordering::AcqRel) == ANSWERED)
                .then_some(Event::Release { token: self.token })
        });
    }
}

fn status_of(outcome: Result<(), Refusal>) -> (i32, String) {
    match outcome {
        Ok(()) => (ACCEPTED, String::new()),
        Err(Refusal::Retryable(why)) => (RETRYABLE, why),
        Err(Refusal::Permanent(why)) => (PERMANENT, why),
    }
}

/// Hands component `id` an OTLP export request of `signal` (0 logs, 1 traces, 2 metrics;
/// protobuf) whose `len` bytes at `data` are borrowed, not copied, holding `records` log
/// records, spans or data points — `u64::MAX` when the caller does not know, and then the
/// bytes are checked as our receivers check them (the Go side knows: its data was just
/// marshalled from the Collector's own). Returns [`ACCEPTED`] once it is queued: the answer
/// callback then tells its outcome, with `token`, exactly once; `*wake` is then 0, or a
/// wake-up the caller owes the component's engine (asleep when it came), to give with
/// [`otapdf_wake`] once its other goroutines had a chance to queue theirs. Otherwise
/// it is refused now — [`RETRYABLE`] (a full queue, a component not running) or
/// [`PERMANENT`] (not OTLP) with why in `*message` — its bytes are released and no callback
/// names `token`.
///
/// # Safety
/// `data` points to `len` bytes that stay valid and unchanged until released (see above);
/// `wake` and `message` point to writable values.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn otapdf_submit(
    id: u64,
    signal: u32,
    data: *const u8,
    len: usize,
    records: u64,
    token: u64,
    wake: *mut u64,
    message: *mut *mut c_char,
) -> i32 {
    // SAFETY: the caller's contract, as this function's.
    unsafe { submit(id, signal, data, len, records, token, &[], wake, message) }
}

/// [`otapdf_submit`] with who sent it: `identity_len` bytes at `identity`, JSON as
/// `otapdf_authorize` gives it (`{"subject": ..., "attributes": [[k, v], ...]}`): the payload
/// carries that identity in the component (exporters' `headers_from_identity`,
/// `processor:identity_filter`). Unreadable: refused, permanent.
///
/// # Safety
/// As [`otapdf_submit`]; `identity` points to `identity_len` readable bytes for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn otapdf_submit_as(
    id: u64,
    signal: u32,
    data: *const u8,
    len: usize,
    records: u64,
    token: u64,
    identity: *const u8,
    identity_len: usize,
    wake: *mut u64,
    message: *mut *mut c_char,
) -> i32 {
    // SAFETY: the caller's contract, for the duration of the call.
    let identity = unsafe { bytes_at(identity, identity_len) };
    // SAFETY: the caller's contract, as this function's.
    unsafe {
        submit(
            id, signal, data, len, records, token, identity, wake, message,
        )
    }
}

/// Both submits; `identity` empty: none.
///
/// # Safety
/// As [`otapdf_submit`].
#[allow(clippy::too_many_arguments)]
unsafe fn submit(
    id: u64,
    signal: u32,
    data: *const u8,
    len: usize,
    records: u64,
    token: u64,
    identity: &[u8],
    wake: *mut u64,
    message: *mut *mut c_char,
) -> i32 {
    let state = Arc::new(AtomicU8::new(BORROWED));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let signal = signal_of(signal)
            .ok_or_else(|| Refusal::Permanent(format!("unknown signal code {signal}")))?;
        let identity = if identity.is_empty() {
            None
        } else {
            Some(identity_from(identity).map_err(Refusal::Permanent)?)
        };
        let bytes = if data.is_null() || len == 0 {
            Bytes::new()
        } else {
            Bytes::from_owner(Borrowed {
                data,
                len,
                token,
                state: state.clone(),
            })
        };
        let records = if records == u64::MAX {
            let shape = otap_df::nodes::otlp::wire::count(signal, &bytes).map_err(|e| {
                Refusal::Permanent(format!("not an OTLP {signal} export request: {e}"))
            })?;
            u64::try_from(shape.records).unwrap_or(u64::MAX)
        } else {
            records
        };
        let answered = state.clone();
        let payload = OtlpPayload::new(signal, Encoding::Protobuf, records, bytes);
        host::submit(
            id,
            match identity {
                Some(identity) => payload.with_identity(identity),
                None => payload,
            },
            move |outcome| {
                // Whoever comes second — this answer or the last reference's drop — tells
                // the Go side the bytes are free; decided under the event queue's lock.
                let (status, message) = status_of(outcome);
                events::push_with(|| {
                    let released = answered
                        .compare_exchange(BORROWED, ANSWERED, Ordering::AcqRel, Ordering::Acquire)
                        .is_err();
                    Some(Event::Answer {
                        token,
                        status,
                        message,
                        released,
                    })
                });
            },
        )
    }))
    .unwrap_or_else(|p| Err(Refusal::Retryable(panicked(&*p))));
    let (status, why) = match outcome {
        Ok(owed) => {
            if wake.is_null() {
                // Nowhere to hand the wake-up: given now.
                drop(owed);
            } else {
                // SAFETY: the caller's contract.
                unsafe { *wake = owed.into_ticket() };
            }
            return ACCEPTED;
        }
        Err(refusal) => status_of(Err(refusal)),
    };
    if !message.is_null() {
        // SAFETY: the caller's contract.
        unsafe { *message = c_string(why) };
    }
    status
}

/// An identity as the Go side reads it: `{"subject": "<name>", "attributes": [["tenant",
/// "acme"], ...]}`.
pub(crate) fn identity_json(identity: &Identity) -> String {
    let attributes: Vec<[&str; 2]> = identity.attributes().map(|(k, v)| [k, v]).collect();
    serde_json::json!({
        "subject": identity.as_str(),
        "attributes": attributes,
    })
    .to_string()
}

/// The identity the Go side handed over, in [`identity_json`]'s form.
fn identity_from(json: &[u8]) -> Result<Identity, String> {
    #[derive(serde::Deserialize)]
    struct Described {
        subject: String,
        #[serde(default)]
        attributes: Vec<(String, String)>,
    }
    let described: Described = serde_json::from_slice(json)
        .map_err(|e| format!("the caller's identity is not readable: {e}"))?;
    Ok(Identity::with_attributes(
        described.subject,
        described.attributes,
    ))
}

/// Decides on the value of an incoming credential header (`Bearer <token>`) with extension
/// component `id`'s authorizer: 0 accepted (`*detail`: the caller's identity as JSON,
/// `{"subject": "<name>", "attributes": [["tenant", "acme"], ...]}`), 1 refused (`*detail`:
/// why), 2 no decision — refuse (`*detail`: why).
///
/// # Safety
/// `value` points to `len` readable bytes; `detail` to a writable pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn otapdf_authorize(
    id: u64,
    value: *const u8,
    len: usize,
    detail: *mut *mut c_char,
) -> i32 {
    // SAFETY: the caller's contract, for the duration of the call.
    let value = unsafe { bytes_at(value, len) };
    let outcome = guarded(|| {
        let authorizer = host::granted(id)
            .ok_or_else(|| format!("otapdf extension {id} is not running"))?
            .authorizer
            .ok_or_else(|| "this otapdf extension is not an authorizer".to_owned())?;
        let value = std::str::from_utf8(value).map_err(|_| "not UTF-8".to_owned());
        let credential = match value {
            Ok(value) => authorizer.header().credential(value),
            Err(_) => return Ok((1, "invalid".to_owned())),
        };
        let Ok(credential) = credential else {
            return Ok((1, "invalid".to_owned()));
        };
        let decision = if authorizer.waits() {
            block_on(authorizer.authorize_waiting(credential))
        } else {
            authorizer.authorize(credential)
        };
        Ok(match decision {
            Ok(otap_df::node::AuthzDecision::Allow { identity }) => (0, identity_json(&identity)),
            Ok(otap_df::node::AuthzDecision::Deny { reason }) => (1, reason.to_string()),
            Err(error) => (2, error.to_string()),
        })
    });
    let (code, text) = outcome.unwrap_or_else(|message| (2, message));
    if !detail.is_null() {
        // SAFETY: the caller's contract.
        unsafe { *detail = c_string(text) };
    }
    code
}

/// Runs `future` to its end on the calling thread (a Go thread: no runtime of ours runs there).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// The header extension component `id`'s authorizer reads the credential from
/// (`authorization`), or null when it is not an authorizer.
#[unsafe(no_mangle)]
pub extern "C" fn otapdf_server_header(id: u64) -> *mut c_char {
    let outcome = guarded(|| {
        host::granted(id)
            .and_then(|g| g.authorizer)
            .map(|a| a.header().name().to_owned())
            .ok_or_else(String::new)
    });
    outcome.map_or(std::ptr::null_mut(), c_string)
}

/// The header a client sends with extension component `id`'s current token: 0 with its
/// name and value (`Bearer <token>`) in `*name` and `*value`; 1 with why in `*value` when
/// there is no usable token now (none yet, or expired).
///
/// # Safety
/// `name` and `value` point to writable pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn otapdf_client_header(
    id: u64,
    name: *mut *mut c_char,
    value: *mut *mut c_char,
) -> i32 {
    let outcome = guarded(|| {
        let provider = host::granted(id)
            .ok_or_else(|| format!("otapdf extension {id} is not running"))?
            .provider
            .ok_or_else(|| "this otapdf extension provides no token".to_owned())?;
        let token = provider
            .current_token()
            .ok_or_else(|| "the token provider has no token yet".to_owned())?;
        if !token.is_usable() {
            return Err("the token provider's token has expired".to_owned());
        }
        let rendered = provider.header().render(&token);
        Ok((
            provider.header().name().to_owned(),
            rendered.expose().to_owned(),
        ))
    });
    let (code, header, text) = match outcome {
        Ok((header, text)) => (0, Some(header), text),
        Err(message) => (1, None, message),
    };
    if !name.is_null() {
        // SAFETY: the caller's contract.
        unsafe { *name = header.map_or(std::ptr::null_mut(), c_string) };
    }
    if !value.is_null() {
        // SAFETY: the caller's contract.
        unsafe { *value = c_string(text) };
    }
    code
}

/// Frees a string the bridge handed out (null is fine).
///
/// # Safety
/// `text` is null or a string from this library, freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn otapdf_free(text: *mut c_char) {
    if !text.is_null() {
        // SAFETY: the caller's contract: made by `CString::into_raw` here.
        drop(unsafe { CString::from_raw(text) });
    }
}
