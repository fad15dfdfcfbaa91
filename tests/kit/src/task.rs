//! Running an extension's task in a test as the engine runs a shared extension's: on a
//! runtime of its own.

use std::future::Future;

use otap_df_core::extension::{ExtensionHandle, SharedTask, control_channel};
use tracing::instrument::WithSubscriber;

/// A shared extension's task on a one-worker runtime; the runtime is shut down (without
/// blocking, so it may be dropped inside another runtime) when this is dropped.
#[derive(Debug)]
pub struct TaskRuntime(Option<tokio::runtime::Runtime>);

impl TaskRuntime {
    /// Starts `task`, logging through the caller's subscriber; returns the runtime and the
    /// task's handle (readiness, health, messages).
    ///
    /// # Panics
    /// When the runtime cannot be built.
    pub fn spawn(task: Box<dyn SharedTask>) -> (Self, ExtensionHandle) {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => panic!("cannot build a runtime: {error}"),
        };
        let (control, handle) = control_channel();
        runtime.spawn(async move { task.run(control).await }.with_current_subscriber());
        (Self(Some(runtime)), handle)
    }

    /// Runs `future` to completion on the task's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match &self.0 {
            Some(runtime) => runtime.block_on(future),
            None => unreachable!("the runtime lives until drop"),
        }
    }
}

impl Drop for TaskRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs `future` to completion on a current-thread runtime of its own (timers and I/O on), as
/// a core runs a local extension: for calling a local capability in a test.
///
/// ```
/// assert_eq!(otap_df_tests::task::block_on(async { 1 + 1 }), 2);
/// ```
///
/// # Panics
/// When the runtime cannot be built.
pub fn block_on<F: Future>(future: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(error) => panic!("cannot build a runtime: {error}"),
    }
}
