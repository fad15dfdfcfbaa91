//! The hot path allocates nothing: `current_token()` and `authorize()` are counted with a
//! counting global allocator, per thread: the test harness's own threads may allocate
//! meanwhile (a CI run once counted 4 allocations that were not the loop's).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use otap_df_core::capability::shared;
use otap_df_core::secret::BearerToken;

struct Counting;

thread_local! {
    /// This thread's allocations (a `const` initialiser: reading it never allocates).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// A global allocator can only be written with `unsafe`: it forwards to the system allocator
// and counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // A thread being torn down has no slot any more: not counted.
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn reading_the_token_and_authorizing_allocate_nothing() {
    let auth = support::auth("{ token: client-token, tokens: [a-token, b-token] }");
    let provider: &dyn shared::BearerTokenProvider = auth.as_ref();
    let authorizer: &dyn shared::BearerTokenAuthorizer = auth.as_ref();
    let allowed = BearerToken::new("b-token");
    let denied = BearerToken::new("c-token");
    // Warm up whatever is set up lazily (arc-swap's per-thread debt list).
    let _ = provider.current_token();
    let generation = provider.token_generation();
    let before = allocations();
    for _ in 0..1000 {
        let token = provider.current_token();
        assert!(token.is_some());
        assert_eq!(provider.token_generation(), generation);
        let allow = authorizer.authorize(allowed.credential()).unwrap();
        let deny = authorizer.authorize(denied.credential()).unwrap();
        std::hint::black_box((token, allow, deny));
    }
    assert_eq!(allocations() - before, 0);
}
