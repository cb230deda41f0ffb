//! Fail points for fault-injection tests: each makes one component stop dead at one step, as a
//! crash would, or (`hold`) stand still until released. Production never arms them; disarmed they
//! cost one atomic load.
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Faults {
    /// The relay publishes a batch, then dies before marking the rows published.
    pub relay_dies_after_publish: AtomicBool,
    /// A consumer commits a handler's transaction, then dies before acknowledging.
    pub consumer_dies_after_commit: AtomicBool,
    /// Whether any consumer is held (the one load when none is).
    any_held: AtomicBool,
    /// Durable consumers holding every message they receive, unhandled, until released (a lane
    /// stuck behind a backlog, or a handler that hangs).
    held: Mutex<HashSet<String>>,
    released: Notify,
}

impl Faults {
    /// Takes (and disarms) a fail point: true once after it was armed.
    pub fn trip(flag: &AtomicBool) -> bool {
        flag.swap(false, Ordering::SeqCst)
    }
    pub fn arm(flag: &AtomicBool) {
        flag.store(true, Ordering::SeqCst)
    }

    /// Makes the durable consumer `consumer` hold what it receives from now on, until
    /// [`Faults::release_all`]; held messages are handled after release (in no set order).
    pub fn hold(&self, consumer: &str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(consumer.to_string());
        self.any_held.store(true, Ordering::SeqCst);
    }

    /// Releases every held consumer.
    pub fn release_all(&self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.any_held.store(false, Ordering::SeqCst);
        self.released.notify_waiters();
    }

    /// Whether `consumer` holds what it receives now.
    pub fn is_held(&self, consumer: &str) -> bool {
        self.any_held.load(Ordering::SeqCst)
            && self
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(consumer)
    }

    /// Waits until `consumer` is not held.
    pub async fn released(&self, consumer: &str) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.is_held(consumer) {
                return;
            }
            released.await;
        }
    }
}
