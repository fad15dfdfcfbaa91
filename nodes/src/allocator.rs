//! Giving the system back the memory a burst left free.
//!
//! glibc keeps what a thread freed in that thread's arena and returns pages only from the top
//! of its heap: after a flood of connections is gone, the megabytes they used stay resident,
//! free but held. [`release_free_memory`] asks it for them back; nodes call it once after a
//! burst, never on the data path (glibc walks and locks every arena while it runs).

/// Asks the C allocator to return the pages it holds free to the system (glibc's
/// `malloc_trim`); elsewhere it does nothing: musl and the other systems' allocators either
/// return memory themselves or have no such call. Whether anything came back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
// The one call into C outside linkme's registration: glibc has no safe entry point for it.
#[allow(unsafe_code)]
pub fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and touches no live allocation; glibc serialises
    // it with every other allocator call.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Asks the C allocator to return the pages it holds free to the system (glibc's
/// `malloc_trim`); elsewhere it does nothing. Whether anything came back.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}
