//! The hard cap on concurrent inference jobs: a semaphore taken with `try_acquire`, so a request
//! that finds every slot busy is refused at once (503) instead of waiting in a queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub struct JobSlots {
    semaphore: Arc<Semaphore>,
    capacity: u32,
}

/// One inference slot, held for as long as the job runs (moved into the blocking task, so a
/// client that disconnects does not free a slot whose CPU is still busy).
pub struct JobSlot {
    _permit: OwnedSemaphorePermit,
}

impl JobSlots {
    pub fn new(capacity: u32) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// A free slot, or `None` when all are busy. Never waits.
    pub fn try_take(&self) -> Option<JobSlot> {
        self.semaphore
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|permit| JobSlot { _permit: permit })
    }

    pub fn busy(&self) -> usize {
        self.capacity as usize - self.semaphore.available_permits()
    }

    /// Waits until every slot is free or `timeout` passes; returns whether all jobs finished.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.semaphore.acquire_many(self.capacity)).await,
            Ok(Ok(_))
        )
    }
}
