//! Crash injection for the crash-safety tests: when the environment
//! variable `CONNECTOR_KILL_AT` is `POINT:N`, the process sends itself
//! SIGKILL (no unwinding, no destructors, no flushing: exactly `kill -9`)
//! the `N`th time (1-based) it reaches `POINT`:
//!
//! * `fetch` — a page came back from the plugin, nothing of it is done;
//! * `convert` — a message was converted (mid-page);
//! * `deliver` — a batch of emails is in the mailboxes, not yet recorded;
//! * `commit` — the page is about to be committed;
//! * `committed` — the page and its checkpoint were just committed.
//!
//! Unset (the normal case) it costs one relaxed atomic load per point.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable that arms the crash point.
pub const KILL_AT_VAR: &str = "CONNECTOR_KILL_AT";

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

static ARMED: OnceLock<Option<(Point, u64)>> = OnceLock::new();
static REACHED: AtomicU64 = AtomicU64::new(0);

fn armed() -> Option<(Point, u64)> {
    *ARMED.get_or_init(|| {
        let value = std::env::var(KILL_AT_VAR).ok()?;
        let (point, n) = value.split_once(':')?;
        let parsed = (Point::parse(point)?, n.parse().ok()?);
        tracing::warn!("{KILL_AT_VAR}={value}: this process will kill itself there (crash test)");
        Some(parsed)
    })
}

/// Marks that the run reached `point`; kills the process when armed for it.
pub(crate) fn reached(point: Point) {
    let Some((at, n)) = armed() else { return };
    if at != point {
        return;
    }
    if REACHED.fetch_add(1, Ordering::SeqCst) + 1 == n {
        // SAFETY: getpid and kill have no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
