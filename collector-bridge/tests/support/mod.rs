//! The stand-in for the Go side's pump, shared by the test binaries that drive the C ABI.
#![allow(unsafe_code)]

use std::io::Read;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;

use otap_df_collector_bridge::ffi::{self, CEvent};

/// Takes the bridge's event socket and, on a thread of its own, waits on it, takes each
/// batch, hands every event to `on_event` (with its bytes) and gives the batch back.
///
/// # Panics
/// When the socket was taken already (once per process).
pub fn start_pump(on_event: impl Fn(&CEvent, &[u8]) + Send + 'static) {
    let fd = ffi::otapdf_events_fd();
    assert!(fd >= 0, "the event socket was taken already");
    // SAFETY: the bridge hands the socket over to its one caller.
    let mut socket = unsafe { UnixStream::from_raw_fd(fd) };
    std::thread::spawn(move || {
        let mut wake = [0u8; 256];
        while socket.read(&mut wake).is_ok_and(|n| n > 0) {
            let (mut events, mut count) = (std::ptr::null(), 0);
            // SAFETY: valid pointers for the call.
            let batch = unsafe { ffi::otapdf_events(&mut events, &mut count) };
            let taken = if count == 0 {
                &[][..]
            } else {
                // SAFETY: `count` events, valid until the batch is given back below.
                unsafe { std::slice::from_raw_parts(events, count) }
            };
            for event in taken {
                let bytes = if event.data.is_null() {
                    &[][..]
                } else {
                    // SAFETY: as above.
                    unsafe { std::slice::from_raw_parts(event.data, event.len) }
                };
                on_event(event, bytes);
            }
            // SAFETY: the batch `otapdf_events` returned, given back once.
            unsafe { ffi::otapdf_events_done(batch) };
        }
    });
}
