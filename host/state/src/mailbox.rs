//! Per-mailbox limits shared by every worker of a fleet: a mailbox's
//! concurrency slots, each held by one holder until released or until it
//! expires (so a worker that dies frees its slots), and a rate window of a
//! number of requests that workers reserve in chunks.
//!
//! A mailbox is named by a key its sink makes (the mail store, the app and
//! the address), so that connectors writing to the same mailbox as the same
//! app share its budget. Times are the state's clock; what a caller gets
//! back is relative to now, so workers need not agree on the time.

use std::time::Duration;

pub use connector_model::budget::RequestGrant;

use crate::error::StateError;

/// The mailboxes' shared concurrency slots and rate windows.
pub trait MailboxBudgets {
    /// Takes up to `want` of the mailbox's slots `0..limit` that no one
    /// holds (or whose holder let them expire) for `holder`, each for
    /// `ttl`; returns the slot numbers taken, possibly none.
    fn take_mailbox_slots(
        &mut self,
        mailbox: &str,
        holder: &str,
        want: u32,
        limit: u32,
        ttl: Duration,
    ) -> Result<Vec<u32>, StateError>;

    /// Extends `holder`'s `slots` of the mailbox by `ttl` from now;
    /// returns those it still held (an expired slot another holder took is
    /// lost).
    fn renew_mailbox_slots(
        &mut self,
        mailbox: &str,
        holder: &str,
        slots: &[u32],
        ttl: Duration,
    ) -> Result<Vec<u32>, StateError>;

    /// Frees `holder`'s `slots` of the mailbox (others' are left alone).
    fn release_mailbox_slots(
        &mut self,
        mailbox: &str,
        holder: &str,
        slots: &[u32],
    ) -> Result<(), StateError>;

    /// Leaves the mailbox alone for `pause` from now (the mail service
    /// answered a request for it with a `Retry-After`): until then every
    /// reservation, by any worker, is granted nothing and told to wait
    /// that long. A shorter pause never cuts a longer one short.
    fn throttle_mailbox(&mut self, mailbox: &str, pause: Duration) -> Result<(), StateError>;

    /// Reserves up to `want` requests in the mailbox's current window of
    /// `window` and `limit` requests. A window opens at the first
    /// reservation after the previous one ended. While the mailbox is
    /// throttled nothing is granted and `window_left` is the pause left.
    fn reserve_mailbox_requests(
        &mut self,
        mailbox: &str,
        want: u32,
        limit: u32,
        window: Duration,
    ) -> Result<RequestGrant, StateError>;
}

/// `d` in milliseconds, for the stores' columns.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
