//! Sign-in attempts are limited: after [`MAX_FAILURES`] failures in
//! [`WINDOW`] from one address, or for one account name, further attempts
//! are refused until the oldest failure is out of the window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed in the window.
pub(crate) const MAX_FAILURES: usize = 5;
/// How far back failures count.
pub(crate) const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Recent failed sign-ins by key (an address or an account name).
#[derive(Default)]
pub(crate) struct SignInThrottle {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SignInThrottle {
    /// How long `keys` must wait before another attempt, if they must.
    pub(crate) fn wait(&self, keys: &[&str]) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| {
                let times = failures.get_mut(*k)?;
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= WINDOW)
                {
                    times.pop_front();
                }
                (times.len() >= MAX_FAILURES)
                    .then(|| WINDOW.saturating_sub(now.duration_since(times[0])))
            })
            .max()
    }

    /// Counts a failure against each of `keys`.
    pub(crate) fn failed(&self, keys: &[&str]) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|_, t| t.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        for k in keys {
            failures.entry((*k).to_string()).or_default().push_back(now);
        }
    }

    /// Forgets the failures of `keys` after a success.
    pub(crate) fn succeeded(&self, keys: &[&str]) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            failures.remove(*k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_attempt_after_five_failures_waits_and_a_success_clears_the_count() {
        let t = SignInThrottle::default();
        for _ in 0..MAX_FAILURES {
            assert_eq!(t.wait(&["1.2.3.4", "alice"]), None);
            t.failed(&["1.2.3.4", "alice"]);
        }
        assert!(
            t.wait(&["1.2.3.4"])
                .is_some_and(|w| w > Duration::from_secs(14 * 60))
        );
        assert!(
            t.wait(&["5.6.7.8", "alice"]).is_some(),
            "the account is held from anywhere"
        );
        assert_eq!(t.wait(&["5.6.7.8", "bob"]), None);
        t.succeeded(&["1.2.3.4", "alice"]);
        assert_eq!(t.wait(&["1.2.3.4", "alice"]), None);
    }
}
