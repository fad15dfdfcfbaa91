//! The Collector starts and stops components on every configuration change: a component's
//! start/stop cycle, with traffic through it, leaves no thread behind and no memory held.
//! Alone in its test binary: it counts the process's threads and live heap bytes.
#![allow(unsafe_code)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use otap_df::core::data::Signal;
use otap_df_collector_bridge::ffi;
use otap_df_collector_bridge::fragment::Role;
use otap_df_collector_bridge::host;

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

const DEDUP: &str = r#"{
  "extensions": { "seen": { "type": "extension:memory_kv" } },
  "nodes": { "dedup": { "type": "processor:dedup",
                        "capabilities": { "key_value_store": "seen" } } },
  "cores": 2
}"#;

fn cycle(batches: &[otap_df::core::data::OtlpPayload]) {
    let id = host::start(Role::Processor, DEDUP, 1).unwrap_or_else(|e| panic!("start: {e}"));
    for batch in batches {
        assert_eq!(host::consume(id, batch.clone()), Ok(()));
    }
    host::stop(id).unwrap_or_else(|e| panic!("stop: {e}"));
}

#[test]
fn start_stop_cycles_leave_no_thread_and_no_memory_behind() {
    // The stand-in for the Go side: every delivery accepted at once.
    support::start_pump(|event, _| {
        if event.kind == 0 {
            // SAFETY: a completion a delivery carried, answered once.
            unsafe {
                ffi::otapdf_complete(event.completion, ffi::ACCEPTED, std::ptr::null(), 0, 0)
            };
        }
    });
    let batches: Vec<_> = (0..20)
        .map(|i| otap_df::nodes::otlp::synthetic(Signal::Logs, 100, &format!("b{i}"), 1))
        .collect();
    // Warm-up: what is made once per process (the registry, lazily initialised statics).
    for _ in 0..3 {
        cycle(&batches);
    }
    let (threads_before, live_before) = (threads(), LIVE.load(Ordering::SeqCst));
    for _ in 0..30 {
        cycle(&batches);
    }
    let (threads_after, live_after) = (threads(), LIVE.load(Ordering::SeqCst));
    assert_eq!(host::running(), 0);
    assert_eq!(
        threads_after, threads_before,
        "threads left behind by 30 cycles"
    );
    // Thirty cycles each make megabytes (two cores' runtimes, queues, a key/value store):
    // what stays is at most what the allocator's bookkeeping of a few keys could be.
    let kept = live_after - live_before;
    assert!(
        kept < 64 * 1024,
        "30 start/stop cycles kept {kept} bytes (before {live_before}, after {live_after})"
    );
}
