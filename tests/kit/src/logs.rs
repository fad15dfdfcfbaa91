//! Everything a process logs, captured for tests that check what never reaches the logs
//! (tokens, secrets).

use std::sync::{Arc, Mutex, PoisonError};

/// The captured output of every event, of every level and thread, since
/// [`capture_all`] installed it.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// What was logged so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a process-wide subscriber that records every event at TRACE level (the
/// libraries' included). Call it once per process: a test binary of its own, or a child
/// process.
///
/// # Panics
/// When the process already has a global subscriber.
pub fn capture_all() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        panic!("capture_all: this process already has a global subscriber");
    }
    captured
}

/// Installs, once per process, a subscriber that writes warnings and errors to standard
/// error as they happen (not captured by the test harness, which captures only the test's
/// own thread): what an engine in a test logs about data it could not deliver then shows in
/// the output of a test that failed on a count. Later calls, and a process that already has
/// a global subscriber, change nothing.
pub fn warnings_to_stderr() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}
