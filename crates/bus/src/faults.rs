//! Fail points for fault-injection tests: each makes one component stop dead at one step, as a
//! crash would. Production never arms them; disarmed they cost one atomic load.
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Faults {
    /// The relay publishes a batch, then dies before marking the rows published.
    pub relay_dies_after_publish: AtomicBool,
    /// A consumer commits a handler's transaction, then dies before acknowledging.
    pub consumer_dies_after_commit: AtomicBool,
}

impl Faults {
    /// Takes (and disarms) a fail point: true once after it was armed.
    pub fn trip(flag: &AtomicBool) -> bool {
        flag.swap(false, Ordering::SeqCst)
    }
    pub fn arm(flag: &AtomicBool) {
        flag.store(true, Ordering::SeqCst)
    }
}
