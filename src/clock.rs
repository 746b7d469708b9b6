//! Time, injected.
//!
//! Every protocol check takes `now` from a [`Clock`], in whole seconds since the Unix epoch.
//! Only [`SystemClock`] reads the operating system's clock; tests use [`ManualClock`] and never
//! sleep.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of the current time, in seconds since the Unix epoch (UTC).
pub trait Clock: Send + Sync + 'static {
    /// The current time, in whole seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        #[allow(clippy::disallowed_methods)]
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        since.as_secs() as i64
    }
}

/// A clock that only moves when told to. Cloning shares the same instant.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `now` (seconds since the epoch).
    pub fn new(now: i64) -> Self {
        Self(Arc::new(AtomicI64::new(now)))
    }

    /// Move the clock to `now`.
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Move the clock forward (or back, with a negative value) by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
