//! Admission before work: room in the pipeline's queue for the payload, then room in the
//! core's budget of body bytes being read, each at once when there is some, else waited for
//! up to `admission_timeout` — backpressure through the open request, as the OpenTelemetry
//! Collector's receivers apply it. Refusing costs almost nothing, so an overloaded receiver
//! keeps its core for the requests it accepts.

use std::rc::Rc;
use std::time::Duration;

use otap_df_core::node::{OutputPermit, Outputs, ShutdownSignal, TrySendError};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::counters::{Counters, bump};
use super::{Reason, Refusal};

/// The room a receiver's requests take.
pub(crate) struct Admission {
    /// The node's outputs, shared by its protocols (`receiver:otlp` serves two).
    pub(crate) outputs: Rc<Outputs>,
    /// Requests waiting for room give up once the engine asks the pipeline to stop.
    pub(crate) shutdown: ShutdownSignal,
    pub(crate) timeout: Duration,
    /// Bytes of bodies being read, in KiB.
    pub(crate) body_budget: Semaphore,
}

impl Admission {
    /// Room for `max_body_bytes_in_flight` bytes of bodies being read at once.
    pub(crate) fn new(
        outputs: Rc<Outputs>,
        shutdown: ShutdownSignal,
        timeout: Duration,
        max_body_bytes_in_flight: usize,
    ) -> Self {
        Self {
            outputs,
            shutdown,
            timeout,
            body_budget: Semaphore::new(max_body_bytes_in_flight.div_ceil(1024)),
        }
    }

    fn closed() -> Refusal {
        Refusal::new(Reason::PipelineClosed, "the pipeline is stopping")
    }

    fn full(&self) -> Refusal {
        Refusal::new(
            Reason::PipelineFull,
            format!(
                "the pipeline is full and had no room within {:?}; retry later",
                self.timeout
            ),
        )
    }

    /// Room in the pipeline for one payload: at once when there is some, else after waiting
    /// up to the timeout; refused while stopping.
    ///
    /// The wait is boxed, here and in [`reserve_body`](Self::reserve_body): its timer and
    /// waiter then size only the requests that wait, not the future of every request (which
    /// each request writes, and moves, whole).
    pub(crate) async fn admit(&self, counters: &Counters) -> Result<OutputPermit<'_>, Refusal> {
        if self.shutdown.requested().is_some() {
            return Err(Self::closed());
        }
        match self.outputs.try_reserve() {
            Ok(permit) => return Ok(permit),
            Err(TrySendError::Closed) => return Err(Self::closed()),
            Err(TrySendError::Full) if self.timeout.is_zero() => return Err(self.full()),
            Err(TrySendError::Full) => bump(&counters.waited),
        }
        Box::pin(self.wait_for_room()).await
    }

    /// [`admit`](Self::admit) once the pipeline had no room.
    async fn wait_for_room(&self) -> Result<OutputPermit<'_>, Refusal> {
        tokio::select! {
            biased;
            _ = self.shutdown.wait() => Err(Self::closed()),
            reserved = tokio::time::timeout(self.timeout, self.outputs.reserve()) => {
                match reserved {
                    Ok(Some(permit)) => Ok(permit),
                    Ok(None) => Err(Self::closed()),
                    Err(_) => Err(self.full()),
                }
            }
        }
    }

    /// Room for a body of `bytes` in the core's budget: at once when there is some, else
    /// after waiting up to the timeout.
    pub(crate) async fn reserve_body(
        &self,
        bytes: u64,
        counters: &Counters,
    ) -> Result<SemaphorePermit<'_>, Refusal> {
        // Fits: validation keeps the budget, hence any body, under 2^30 KiB.
        let units = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        if let Ok(permit) = self.body_budget.try_acquire_many(units) {
            return Ok(permit);
        }
        if self.timeout.is_zero() {
            return Err(Self::no_room_for_bodies());
        }
        bump(&counters.waited);
        Box::pin(self.wait_for_body_room(units)).await
    }

    fn no_room_for_bodies() -> Refusal {
        Refusal::new(
            Reason::BytesInFlight,
            "too many request bytes are being read at once; retry later",
        )
    }

    /// [`reserve_body`](Self::reserve_body) once the budget had no room.
    async fn wait_for_body_room(&self, units: u32) -> Result<SemaphorePermit<'_>, Refusal> {
        tokio::select! {
            biased;
            _ = self.shutdown.wait() => Err(Self::closed()),
            acquired = tokio::time::timeout(self.timeout, self.body_budget.acquire_many(units)) => {
                match acquired {
                    Ok(Ok(permit)) => Ok(permit),
                    Ok(Err(_)) | Err(_) => Err(Self::no_room_for_bodies()),
                }
            }
        }
    }
}
