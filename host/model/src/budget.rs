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

impl RequestGrant {
    /// `granted` requests for the `left_ms` milliseconds a store computed
    /// (none when not positive).
    pub fn for_millis(granted: u32, left_ms: i64) -> RequestGrant {
        RequestGrant {
            granted,
            window_left: Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)),
        }
    }
}
