//! A request to stop long work at its next safe point (Ctrl-C in the Python
//! module, a caller giving up).
//!
//! The work polls the flag where stopping leaves nothing half-done (between
//! files, between steps) and returns [`Error::Cancelled`](crate::Error::Cancelled);
//! the one who asks never interrupts a thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A stop request shared between the work and whoever may ask it to stop;
/// clones share one flag. Reading it is one atomic load, cheap enough for
/// every buffer of a copy.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag nobody has set yet.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Asks the work to stop at its next safe point; it cannot be taken back.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether stopping was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let cancel = Cancel::new();
        let seen_by_the_work = cancel.clone();
        assert!(!seen_by_the_work.is_cancelled());
        cancel.cancel();
        assert!(seen_by_the_work.is_cancelled());
        assert!(!Cancel::default().is_cancelled(), "a new flag is not set");
    }
}
