//! How long to wait before trying again after throttling or a transient
//! failure.

use std::time::Duration;

use connector_runtime::PluginError;

/// Longest pause the host accepts from a `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Longest exponential backoff step.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Retry budget and pauses of one run.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    attempts: u32,
    base: Duration,
}

impl RetryPolicy {
    /// `attempts` retries with a backoff starting at one second.
    pub fn new(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base: Duration::from_secs(1),
        }
    }

    /// How many retries are allowed in a row.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The pause before retry number `failures` (0-based) after `error`: the
    /// source's retry-after when it gave one, else exponential backoff.
    pub fn pause(&self, failures: u32, error: &PluginError) -> Duration {
        match error {
            PluginError::RateLimited(Some(secs)) => {
                Duration::from_secs(u64::from(*secs)).min(MAX_RETRY_AFTER)
            }
            _ => self.backoff(failures),
        }
    }

    /// Exponential backoff for retry number `failures` (0-based).
    pub fn backoff(&self, failures: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << failures.min(16))
            .min(MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_up_to_a_cap() {
        let p = RetryPolicy::new(3);
        assert_eq!(
            p.pause(0, &PluginError::RateLimited(Some(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.pause(0, &PluginError::RateLimited(Some(99_999))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::new(3);
        let e = PluginError::Transient("x".into());
        assert_eq!(p.pause(0, &e), Duration::from_secs(1));
        assert_eq!(p.pause(3, &e), Duration::from_secs(8));
        assert_eq!(p.pause(30, &e), MAX_BACKOFF);
    }
}
