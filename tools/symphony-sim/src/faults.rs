//! Deterministic fault decisions (see [`crate::Faults`] for the options).

use std::sync::Mutex;
use std::time::Duration;

use crate::config::{Endpoint, Faults, RateLimitFault, Trigger};

/// What the fault engine decided for one request.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Plan {
    pub delay: Option<Duration>,
    pub reject: Option<Reject>,
    pub drop_connection: bool,
}

/// An early answer replacing the real one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reject {
    /// Status (429 or 400) with `Retry-After` seconds.
    Throttle {
        status: u16,
        retry_after: Option<u64>,
    },
    /// A 5xx.
    ServerError(u16),
}

#[derive(Debug, Default)]
struct State {
    slow: u64,
    r429: u64,
    r400: u64,
    burst429: u32,
    burst400: u32,
    s5xx: u64,
    drop: u64,
}

pub(crate) struct FaultEngine {
    faults: Faults,
    seed: u64,
    state: Mutex<State>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn applies(endpoints: &[Endpoint], ep: Endpoint, default: &[Endpoint]) -> bool {
    if endpoints.is_empty() {
        if default.is_empty() {
            ep != Endpoint::Login
        } else {
            default.contains(&ep)
        }
    } else {
        endpoints.contains(&ep)
    }
}

impl FaultEngine {
    pub(crate) fn new(faults: Faults, seed: u64) -> Self {
        FaultEngine {
            faults,
            seed,
            state: Mutex::new(State::default()),
        }
    }

    fn fires(&self, trigger: Trigger, salt: u64, n: u64) -> bool {
        match trigger {
            Trigger::EveryNth(k) => k > 0 && n.is_multiple_of(k),
            Trigger::Probability(p) => {
                let h = splitmix(self.seed ^ splitmix(salt) ^ n.wrapping_mul(0x2545_f491));
                ((h >> 11) as f64 / (1u64 << 53) as f64) < p
            }
        }
    }

    fn throttle(
        &self,
        f: &RateLimitFault,
        ep: Endpoint,
        counter: &mut u64,
        burst: &mut u32,
        salt: u64,
        status: u16,
    ) -> Option<Reject> {
        if !applies(&f.endpoints, ep, &[]) {
            return None;
        }
        *counter += 1;
        let reject = Reject::Throttle {
            status,
            retry_after: f.retry_after_secs,
        };
        if *burst > 0 {
            *burst -= 1;
            return Some(reject);
        }
        if self.fires(f.trigger, salt, *counter) {
            *burst = f.burst.saturating_sub(1);
            return Some(reject);
        }
        None
    }

    /// Decides the faults of one request to `ep`, before it is handled.
    pub(crate) fn before(&self, ep: Endpoint) -> Plan {
        let mut plan = Plan::default();
        if self.faults.is_empty() {
            return plan;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *st;
        if let Some(f) = &self.faults.slow
            && applies(&f.endpoints, ep, &[])
        {
            st.slow += 1;
            if self.fires(f.trigger, 1, st.slow) {
                plan.delay = Some(f.delay);
            }
        }
        if let Some(f) = &self.faults.rate_limit_429 {
            plan.reject = self.throttle(f, ep, &mut st.r429, &mut st.burst429, 2, 429);
        }
        if plan.reject.is_none()
            && let Some(f) = &self.faults.rate_limit_400
        {
            plan.reject = self.throttle(f, ep, &mut st.r400, &mut st.burst400, 3, 400);
        }
        if plan.reject.is_none()
            && let Some(f) = &self.faults.server_error
            && applies(&f.endpoints, ep, &[])
        {
            st.s5xx += 1;
            if self.fires(f.trigger, 4, st.s5xx) {
                plan.reject = Some(Reject::ServerError(f.status));
            }
        }
        plan
    }

    /// Decides whether a successful response with a body to `ep` loses its connection.
    pub(crate) fn drop_after(&self, ep: Endpoint) -> bool {
        let Some(f) = &self.faults.drop_connection else {
            return false;
        };
        if !applies(
            &f.endpoints,
            ep,
            &[Endpoint::Messages, Endpoint::Attachment],
        ) {
            return false;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.drop += 1;
        self.fires(f.trigger, 5, st.drop)
    }

    /// The configured session request budget.
    pub(crate) fn session_budget(&self) -> Option<u64> {
        self.faults.session_expires_after_requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_follow_the_trigger_and_probability_is_reproducible() {
        let faults: Faults = "429:every=3:burst=2:retry=7".parse().unwrap();
        let e = FaultEngine::new(faults.clone(), 1);
        let got: Vec<bool> = (0..8)
            .map(|_| e.before(Endpoint::Messages).reject.is_some())
            .collect();
        // Request 3 starts a burst of 2 (3, 4); request 6 starts the next (6, 7).
        assert_eq!(got, [false, false, true, true, false, true, true, false]);
        assert!(e.before(Endpoint::Login).reject.is_none());

        let p: Faults = "5xx:p=0.3".parse().unwrap();
        let run = || {
            let e = FaultEngine::new(p.clone(), 42);
            (0..200)
                .map(|_| e.before(Endpoint::Users).reject.is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let hits = a.iter().filter(|x| **x).count();
        assert!((30..90).contains(&hits), "{hits}");
    }
}
