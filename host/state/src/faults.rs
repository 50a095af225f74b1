//! Fault injection for the crash-safety and fleet tests, for the host's
//! pipeline and the state stores alike. When the environment variable `CONNECTOR_KILL_AT` is `POINT:N`, the process sends
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
//! * `in-commit` — the page's transaction wrote the ledger (and holds its
//!   locks: the lease row, a new month's partitions) and is not committed;
//! * `committed` — the page and its checkpoint were just committed;
//! * `transcript` — a transcript is in the mailboxes, its ledger entries
//!   not yet committed.
//!
//! The signal goes to the thread that reached the point, so that thread
//! stops (or dies) there and not a few statements later; a SIGSTOP stops
//! every other thread of the process too, wherever it is.
//!
//! Unset (the normal case) it costs one atomic load per point.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable that arms the crash point.
pub const KILL_AT_VAR: &str = "CONNECTOR_KILL_AT";

/// The variable that arms the freeze point.
pub const FREEZE_AT_VAR: &str = "CONNECTOR_FREEZE_AT";

/// Where in a run the process can be killed or frozen (see the module's
/// list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Fetch,
    Convert,
    Deliver,
    Commit,
    InCommit,
    Committed,
    Transcript,
}

impl Point {
    fn parse(s: &str) -> Option<Point> {
        Some(match s {
            "fetch" => Point::Fetch,
            "convert" => Point::Convert,
            "deliver" => Point::Deliver,
            "commit" => Point::Commit,
            "in-commit" => Point::InCommit,
            "committed" => Point::Committed,
            "transcript" => Point::Transcript,
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
pub fn reached(point: Point) {
    for armed in armed().iter().filter(|a| a.point == point) {
        if armed.reached.fetch_add(1, Ordering::SeqCst) + 1 == armed.at {
            // SAFETY: raise has no memory-safety preconditions.
            unsafe {
                libc::raise(armed.signal);
            }
        }
    }
}
