//! Fault injection for the crash-safety and fleet tests. When the
//! environment variable `CONNECTOR_KILL_AT` is `POINT:N`, the process sends
//! itself SIGKILL (no unwinding, no destructors, no flushing: exactly
//! `kill -9`) the `N`th time (1-based) it reaches `POINT`; with
//! `CONNECTOR_FREEZE_AT` it sends itself SIGSTOP there instead, as a VM
//! freeze or a debugger would, and goes on where it stopped when someone
//! sends SIGCONT. The points:
//!
//! * `fetch` — a page came back from the plugin, nothing of it is done;
//! * `convert` — a message was converted (mid-page);
//! * `deliver` — a batch of emails is in the mailboxes, not yet recorded;
//! * `commit` — the page is about to be committed;
//! * `committed` — the page and its checkpoint were just committed.
//!
//! Unset (the normal case) it costs one atomic load per point.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable that arms the crash point.
pub const KILL_AT_VAR: &str = "CONNECTOR_KILL_AT";

/// The variable that arms the freeze point.
pub const FREEZE_AT_VAR: &str = "CONNECTOR_FREEZE_AT";

/// Where in a run the process can be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    Fetch,
    Convert,
    Deliver,
    Commit,
    Committed,
}

impl Point {
    fn parse(s: &str) -> Option<Point> {
        Some(match s {
            "fetch" => Point::Fetch,
            "convert" => Point::Convert,
            "deliver" => Point::Deliver,
            "commit" => Point::Commit,
            "committed" => Point::Committed,
            _ => return None,
        })
    }
}

/// A point armed by one variable, and how often it was reached.
struct Armed {
    point: Point,
    at: u64,
    signal: libc::c_int,
    reached: AtomicU64,
}

static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();

fn armed() -> &'static [Armed] {
    ARMED.get_or_init(|| {
        [(KILL_AT_VAR, libc::SIGKILL), (FREEZE_AT_VAR, libc::SIGSTOP)]
            .into_iter()
            .filter_map(|(var, signal)| {
                let value = std::env::var(var).ok()?;
                let (point, n) = value.split_once(':')?;
                let armed = Armed {
                    point: Point::parse(point)?,
                    at: n.parse().ok()?,
                    signal,
                    reached: AtomicU64::new(0),
                };
                tracing::warn!("{var}={value}: this process will signal itself there (fault test)");
                Some(armed)
            })
            .collect()
    })
}

/// Marks that the run reached `point`; signals the process when armed for it.
pub(crate) fn reached(point: Point) {
    for armed in armed().iter().filter(|a| a.point == point) {
        if armed.reached.fetch_add(1, Ordering::SeqCst) + 1 == armed.at {
            // SAFETY: getpid and kill have no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), armed.signal);
            }
        }
    }
}
