//! Per-mailbox limits of a mail store (Exchange Online: 4 requests in
//! flight and 10,000 requests per 10 minutes, per app and mailbox) and the
//! budget that keeps them across every worker writing to the same
//! mailboxes.
//!
//! A sink asks a [`MailboxBudget`] for concurrency slots before it works
//! on a mailbox (holding them while it has work there, renewing them
//! every half [`SLOT_LEASE`], releasing them when done: a worker that dies
//! loses its slots when they expire) and reserves requests from the
//! mailbox's rate window in chunks, so that it pays a round trip to the
//! budget per chunk, not per request. The host gives sinks a budget kept
//! in its state store, shared by the fleet; without one a sink keeps its
//! limits in the process ([`LocalBudget`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use connector_model::budget::RequestGrant;

use crate::SinkError;

/// How long a slot stays taken without renewal: a worker that dies frees
/// its slots after this.
pub const SLOT_LEASE: Duration = Duration::from_secs(60);

/// A mail store's limits for one app (or login) and one mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxLimits {
    /// Most requests (or connections) at once, all workers together.
    pub concurrency: u32,
    /// Most requests in one [`MailboxLimits::window`], all workers together.
    pub requests: u32,
    /// The rate window.
    pub window: Duration,
}

/// Until when each mailbox is to be left alone, as the mail service asked
/// (`Retry-After`): the one record of such pauses, for a sink's own
/// requests and for the budgets that share them.
#[derive(Debug, Default)]
pub struct Pauses(Mutex<HashMap<String, Instant>>);

impl Pauses {
    /// Leaves `mailbox` alone for `pause` from now; a shorter pause never
    /// cuts a longer one short.
    pub fn hold(&self, mailbox: &str, pause: Duration) {
        let until = Instant::now() + pause;
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let slot = all.entry(mailbox.to_string()).or_insert(until);
        *slot = (*slot).max(until);
    }

    /// How long `mailbox` is still to be left alone, if it is.
    pub fn left(&self, mailbox: &str) -> Option<Duration> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.get(mailbox)?
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
    }
}

/// Where the mailboxes' slots and rate windows are kept. `mailbox` is the
/// sink's key for the mailbox: the store, the app and the address, so that
/// every sink writing to the same mailbox as the same app shares it.
/// Errors are [`SinkError::Unavailable`] (the budget's store cannot be
/// reached): the run retries later.
pub trait MailboxBudget: Send + Sync {
    /// Takes up to `want` free slots of the mailbox (at most
    /// `limits.concurrency` exist) for [`SLOT_LEASE`]; returns their
    /// numbers, possibly none while others hold them all.
    fn take_slots(
        &self,
        mailbox: &str,
        want: u32,
        limits: &MailboxLimits,
    ) -> Result<Vec<u32>, SinkError>;

    /// Extends the slots for another [`SLOT_LEASE`]; returns those still
    /// held (one that expired and was taken by another worker is lost).
    fn renew_slots(&self, mailbox: &str, slots: &[u32]) -> Result<Vec<u32>, SinkError>;

    /// Frees the slots.
    fn release_slots(&self, mailbox: &str, slots: &[u32]) -> Result<(), SinkError>;

    /// Reserves up to `want` requests from the mailbox's current rate
    /// window; nothing while the mailbox is throttled (`window_left` is
    /// then the pause left).
    fn reserve_requests(
        &self,
        mailbox: &str,
        want: u32,
        limits: &MailboxLimits,
    ) -> Result<RequestGrant, SinkError>;

    /// Leaves the mailbox alone for `pause`, as the mail service asked
    /// (`Retry-After`), for every sink sharing the budget: at once for the
    /// sinks of this process ([`MailboxBudget::paused_for`]), at their next
    /// reservation for other workers'.
    fn throttle(&self, mailbox: &str, pause: Duration) -> Result<(), SinkError>;

    /// How long the mailbox is still paused in this process, if it is;
    /// cheap enough to ask before every request.
    fn paused_for(&self, mailbox: &str) -> Option<Duration>;
}

/// A budget kept in this process: the limits hold for the sinks sharing
/// it, not for other processes.
#[derive(Debug, Default)]
pub struct LocalBudget {
    mailboxes: Mutex<HashMap<String, LocalMailbox>>,
    pauses: Pauses,
}

#[derive(Debug, Default)]
struct LocalMailbox {
    /// Slot → when it expires.
    slots: HashMap<u32, Instant>,
    /// When the rate window opened, and the requests reserved in it.
    window: Option<(Instant, u32)>,
}

impl LocalBudget {
    fn with<T>(&self, mailbox: &str, f: impl FnOnce(&mut LocalMailbox) -> T) -> T {
        let mut all = self.mailboxes.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(mailbox.to_string()).or_default())
    }
}

impl MailboxBudget for LocalBudget {
    fn take_slots(
        &self,
        mailbox: &str,
        want: u32,
        limits: &MailboxLimits,
    ) -> Result<Vec<u32>, SinkError> {
        let now = Instant::now();
        Ok(self.with(mailbox, |m| {
            let free: Vec<u32> = (0..limits.concurrency)
                .filter(|s| m.slots.get(s).is_none_or(|until| *until <= now))
                .take(want as usize)
                .collect();
            for s in &free {
                m.slots.insert(*s, now + SLOT_LEASE);
            }
            free
        }))
    }

    fn renew_slots(&self, mailbox: &str, slots: &[u32]) -> Result<Vec<u32>, SinkError> {
        let until = Instant::now() + SLOT_LEASE;
        Ok(self.with(mailbox, |m| {
            slots
                .iter()
                .filter_map(|s| m.slots.get_mut(s).map(|at| (*at = until, *s).1))
                .collect()
        }))
    }

    fn release_slots(&self, mailbox: &str, slots: &[u32]) -> Result<(), SinkError> {
        self.with(mailbox, |m| {
            for s in slots {
                m.slots.remove(s);
            }
        });
        Ok(())
    }

    fn reserve_requests(
        &self,
        mailbox: &str,
        want: u32,
        limits: &MailboxLimits,
    ) -> Result<RequestGrant, SinkError> {
        if let Some(left) = self.pauses.left(mailbox) {
            return Ok(RequestGrant {
                granted: 0,
                window_left: left,
            });
        }
        let now = Instant::now();
        Ok(self.with(mailbox, |m| {
            let (opened, used) = match m.window {
                Some((opened, used)) if opened + limits.window > now => (opened, used),
                _ => (now, 0),
            };
            let granted = want.min(limits.requests.saturating_sub(used));
            m.window = Some((opened, used + granted));
            RequestGrant {
                granted,
                window_left: (opened + limits.window).saturating_duration_since(now),
            }
        }))
    }

    fn throttle(&self, mailbox: &str, pause: Duration) -> Result<(), SinkError> {
        self.pauses.hold(mailbox, pause);
        Ok(())
    }

    fn paused_for(&self, mailbox: &str) -> Option<Duration> {
        self.pauses.left(mailbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: MailboxLimits = MailboxLimits {
        concurrency: 4,
        requests: 5,
        window: Duration::from_secs(600),
    };

    #[test]
    fn a_local_budget_hands_out_each_slot_once_until_released() {
        let budget = LocalBudget::default();
        assert_eq!(budget.take_slots("m", 3, &LIMITS).unwrap(), [0, 1, 2]);
        assert_eq!(budget.take_slots("m", 3, &LIMITS).unwrap(), [3]);
        assert!(budget.take_slots("m", 1, &LIMITS).unwrap().is_empty());
        assert_eq!(budget.renew_slots("m", &[1, 3]).unwrap(), [1, 3]);
        budget.release_slots("m", &[1]).unwrap();
        assert_eq!(budget.take_slots("m", 4, &LIMITS).unwrap(), [1]);
        assert_eq!(budget.take_slots("other", 1, &LIMITS).unwrap(), [0]);
    }

    #[test]
    fn a_local_budget_pauses_a_throttled_mailbox_alone_for_the_longest_pause() {
        let budget = LocalBudget::default();
        budget.throttle("m", Duration::from_secs(60)).unwrap();
        budget.throttle("m", Duration::from_secs(1)).unwrap();
        let left = budget.paused_for("m").unwrap();
        assert!(left > Duration::from_secs(59), "{left:?}");
        let grant = budget.reserve_requests("m", 3, &LIMITS).unwrap();
        assert_eq!(grant.granted, 0);
        assert!(grant.window_left > Duration::from_secs(59));
        assert_eq!(budget.paused_for("other"), None);
        assert_eq!(
            budget
                .reserve_requests("other", 3, &LIMITS)
                .unwrap()
                .granted,
            3
        );
    }

    #[test]
    fn a_local_budget_grants_no_more_requests_than_the_window_holds() {
        let budget = LocalBudget::default();
        assert_eq!(budget.reserve_requests("m", 3, &LIMITS).unwrap().granted, 3);
        assert_eq!(budget.reserve_requests("m", 3, &LIMITS).unwrap().granted, 2);
        let spent = budget.reserve_requests("m", 3, &LIMITS).unwrap();
        assert_eq!(spent.granted, 0);
        assert!(spent.window_left > Duration::from_secs(590));
    }
}
