//! Working every mailbox of a batch at once, each within its limits: per
//! mailbox as many lanes as the budget gives slots (never more than the
//! mailbox's limit, all workers together, nor than it has work for), each
//! lane doing one piece of work after another under its slot. A lane
//! renews its slot every half [`SLOT_LEASE`] and frees it when the
//! mailbox's work runs out (all of a mailbox's in one call, once its last
//! lane ends), so another worker can take them; a mailbox that got fewer
//! slots than it could use asks again, after [`SLOT_POLL`] at first and
//! twice as long each time it gets none, up to [`SLOT_POLL_MAX`] (each
//! asking is a round trip to the budget's database).
//!
//! Everything here runs as futures of the sink's `block_on`; the requests
//! themselves are driven by the runtime's threads.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::api::{Api, ApiError, blocking};
use connector_sink::Mailbox;
use connector_sink::budget::SLOT_LEASE;

/// How soon a mailbox short of slots first asks the budget again.
const SLOT_POLL: Duration = Duration::from_millis(25);
/// The longest a mailbox short of slots waits before asking again.
const SLOT_POLL_MAX: Duration = Duration::from_millis(400);

/// Runs `work` for each mailbox at once, each under one slot of its own
/// (waiting for one); a mailbox whose slot cannot be had (the budget
/// unreachable) gets the error instead.
pub(super) async fn each_mailbox<'a, W, T, Fut>(
    api: &Api,
    work: HashMap<&'a Mailbox, W>,
    f: impl Fn(&'a Mailbox, W) -> Fut,
) -> Vec<(&'a Mailbox, Result<T, ApiError>)>
where
    Fut: Future<Output = T>,
{
    let f = &f;
    work.into_iter()
        .map(|(mailbox, w)| async move {
            let key = api.budget_key(mailbox);
            let mut poll = SLOT_POLL;
            let slot = loop {
                match take(api, &key, 1).await {
                    Ok(slots) if slots.is_empty() => {
                        tokio::time::sleep(poll).await;
                        poll = (poll * 2).min(SLOT_POLL_MAX);
                    }
                    Ok(slots) => break slots[0],
                    Err(e) => return (mailbox, Err(e)),
                }
            };
            let done = f(mailbox, w).await;
            release(api, &key, &[slot]).await;
            (mailbox, Ok(done))
        })
        .collect::<FuturesUnordered<_>>()
        .collect()
        .await
}

/// What running jobs gave: the results, and the jobs that could not run
/// with why.
type Worked<J, R> = (Vec<R>, Vec<(J, ApiError)>);

/// Runs `f` on every job, each mailbox's jobs in as many lanes as it gets
/// slots, all mailboxes at once. Returns the results, and the jobs that
/// could not run (no slot could be had: the budget unreachable) with why.
pub(super) async fn each_job<'a, J, R, Fut>(
    api: &Api,
    jobs: HashMap<&'a Mailbox, Vec<J>>,
    f: impl Fn(&'a Mailbox, J) -> Fut,
) -> Worked<J, R>
where
    Fut: Future<Output = R>,
{
    let f = &f;
    let per_mailbox: Vec<Worked<J, R>> = jobs
        .into_iter()
        .map(|(mailbox, jobs)| mailbox_jobs(api, mailbox, jobs, f))
        .collect::<FuturesUnordered<_>>()
        .collect()
        .await;
    let mut done = Vec::new();
    let mut unrun = Vec::new();
    for (d, u) in per_mailbox {
        done.extend(d);
        unrun.extend(u);
    }
    (done, unrun)
}

/// One mailbox's jobs: lanes added as slots are had, each slot freed when
/// its lane finds no work left.
async fn mailbox_jobs<'a, J, R, Fut>(
    api: &Api,
    mailbox: &'a Mailbox,
    jobs: Vec<J>,
    f: &impl Fn(&'a Mailbox, J) -> Fut,
) -> Worked<J, R>
where
    Fut: Future<Output = R>,
{
    let key = api.budget_key(mailbox);
    let limit = api.settings.limits.concurrency as usize;
    let queue = RefCell::new(VecDeque::from(jobs));
    let results = RefCell::new(Vec::new());
    let mut lanes = FuturesUnordered::new();
    let mut ended = Vec::new();
    let mut poll = SLOT_POLL;
    let mut asked = None::<Instant>;
    loop {
        let waiting = queue.borrow().len();
        let want = waiting.min(limit.saturating_sub(lanes.len()));
        if want > 0 && asked.is_none_or(|at| at.elapsed() >= poll) {
            asked = Some(Instant::now());
            match take(api, &key, want as u32).await {
                Ok(slots) => {
                    poll = if slots.is_empty() {
                        (poll * 2).min(SLOT_POLL_MAX)
                    } else {
                        SLOT_POLL
                    };
                    for slot in slots {
                        lanes.push(lane(api, &key, slot, mailbox, &queue, &results, f));
                    }
                }
                Err(e) if lanes.is_empty() => {
                    release(api, &key, &ended).await;
                    let unrun = queue.take().into_iter().map(|j| (j, e.clone())).collect();
                    return (results.take(), unrun);
                }
                Err(e) => tracing::warn!(%mailbox, "cannot take more slots now: {e:?}"),
            }
        }
        if lanes.is_empty() {
            if queue.borrow().is_empty() {
                break;
            }
            tracing::debug!(%mailbox, "every slot of the mailbox is taken; waiting");
            tokio::time::sleep(poll).await;
            continue;
        }
        let short = queue.borrow().len() > lanes.len() && lanes.len() < limit;
        let next = if short {
            match tokio::time::timeout(poll, lanes.next()).await {
                Ok(next) => next,
                Err(_) => continue,
            }
        } else {
            lanes.next().await
        };
        if let Some((slot, true)) = next {
            ended.push(slot);
        }
    }
    release(api, &key, &ended).await;
    (results.take(), Vec::new())
}

/// Works jobs from `queue` under `slot` until none is left; returns the
/// slot and whether it is still this sink's (a renewal can find it lost).
async fn lane<'a, J, R, Fut>(
    api: &Api,
    key: &str,
    slot: u32,
    mailbox: &'a Mailbox,
    queue: &RefCell<VecDeque<J>>,
    results: &RefCell<Vec<R>>,
    f: &impl Fn(&'a Mailbox, J) -> Fut,
) -> (u32, bool)
where
    Fut: Future<Output = R>,
{
    let mut renewed = Instant::now();
    loop {
        if renewed.elapsed() >= SLOT_LEASE / 2 {
            let (budget, owned) = (api.budget(), key.to_string());
            match blocking(move || budget.renew_slots(&owned, &[slot])).await {
                Ok(held) if held.is_empty() => {
                    tracing::warn!(%mailbox, slot, "the mailbox slot expired and was taken; this lane stops");
                    return (slot, false);
                }
                Ok(_) => renewed = Instant::now(),
                Err(e) => tracing::warn!(%mailbox, "cannot renew a mailbox slot now: {e:?}"),
            }
        }
        let Some(job) = queue.borrow_mut().pop_front() else {
            return (slot, true);
        };
        let result = f(mailbox, job).await;
        results.borrow_mut().push(result);
    }
}

/// Takes up to `want` of the mailbox's free slots.
async fn take(api: &Api, key: &str, want: u32) -> Result<Vec<u32>, ApiError> {
    let (budget, key, limits) = (api.budget(), key.to_string(), api.settings.limits);
    blocking(move || budget.take_slots(&key, want, &limits)).await
}

/// Frees slots; those that cannot be freed now expire on their own.
async fn release(api: &Api, key: &str, slots: &[u32]) {
    if slots.is_empty() {
        return;
    }
    let (budget, owned, slots) = (api.budget(), key.to_string(), slots.to_vec());
    if let Err(e) = blocking(move || budget.release_slots(&owned, &slots)).await {
        tracing::warn!(
            key,
            "cannot free mailbox slots now, they expire on their own: {e:?}"
        );
    }
}
