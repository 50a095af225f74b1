//! What the state store grants a sink from a mailbox's shared rate window
//! (the vocabulary both sides of that exchange use).

use std::time::Duration;

/// Requests granted from a mailbox's rate window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestGrant {
    /// Requests the caller may send (0 when the window is used up).
    pub granted: u32,
    /// How long the current window still runs: the grant is valid until
    /// then, and a used-up window has room again after it.
    pub window_left: Duration,
}
