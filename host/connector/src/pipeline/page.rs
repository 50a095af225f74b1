//! Delivering one page: convert, map, import, then commit ledger entries,
//! quarantine records, the page's transcript lines and the checkpoint in
//! one transaction.

mod transcripts;

use std::collections::HashMap;

use super::RunError;
use super::faults::{self, Point};
use super::retry::RetryPolicy;
use crate::config::Delivery as DeliveryMode;
use crate::map::UserMap;
use connector_email::{Email, EmailConverter, Quote};
use connector_model::time::{DayZone, now_ms};
use connector_model::{Conversation, Mailbox, Message, Person};
use connector_runtime::{Page, PluginError};
use connector_sink::{Delivery, Sink, SinkError};
use connector_state::{
    CheckpointSlot, FailureKind, Fence, LedgerEntry, PageCommit, QuarantineEntry, RunCounts,
    RunFailure, RunId, SeenItem, SharedStore, StateStore,
};

/// The per-run settings a page is delivered with.
pub(super) struct PageStage<'a> {
    pub connector: &'a str,
    pub folder: String,
    pub converter: EmailConverter,
    pub users: &'a UserMap,
    pub retry: RetryPolicy,
    pub checkpoint_slot: CheckpointSlot,
    /// The run's lease: checked before importing, carried by the commit.
    pub fence: Fence,
    /// Whether messages go out as emails of their own, in their days'
    /// transcripts, or both.
    pub delivery: DeliveryMode,
    /// The time zone transcript days are cut in.
    pub zone: DayZone,
    /// What replies quote of the messages planned before them.
    pub earlier: Earlier,
}

/// The sender, time and first line of each message this stage planned
/// (by source id), for the emails of later messages that reply to them.
/// Only the planner uses it; it forgets everything past
/// [`Earlier::MOST`] messages, so a long run stays small.
#[derive(Default)]
pub(super) struct Earlier(std::sync::Mutex<HashMap<String, Quote>>);

impl Earlier {
    /// Most messages remembered.
    const MOST: usize = 100_000;

    /// What is known of message `id`: from `page` (the messages planned
    /// with it), else from the pages planned before.
    fn quote(&self, page: &HashMap<&str, &Message>, id: &str) -> Option<Quote> {
        match page.get(id) {
            Some(msg) => Some(Quote::of(msg)),
            None => locked(&self.0).get(id).cloned(),
        }
    }

    /// Remembers the messages of a planned page.
    fn remember(&self, messages: &[Message]) {
        let mut known = locked(&self.0);
        if known.len() + messages.len() > Self::MOST {
            known.clear();
        }
        for msg in messages {
            known.insert(msg.id.clone(), Quote::of(msg));
        }
    }
}

/// A message's email and who still needs it.
struct Pending {
    item_id: String,
    source_sha256: String,
    email: Email,
    mailboxes: Vec<Mailbox>,
    /// The first participant id of each mapped mailbox, for failure records.
    owners: Vec<(Mailbox, String)>,
}

/// What a page will do, worked out before anything is imported.
struct Plan {
    /// Emails to import and the mailboxes that still need them.
    pending: Vec<Pending>,
    /// What the page's commit will record; imports add to it.
    commit: PageCommit,
    /// The page's counts so far.
    counts: RunCounts,
    /// Items that reach every participant's mailbox (unless a mailbox
    /// refuses them): released from the quarantine if they were in it.
    fully_mapped: Vec<String>,
}

/// What the pages planned but not yet committed will import: (item,
/// mailbox) pairs. A page planned while earlier ones are still being
/// imported or committed leaves these out (the ledger does not have them
/// yet); a pair leaves the set only after its page's commit, so a planner
/// that looks here first and in the ledger second never misses one.
#[derive(Default)]
pub(super) struct InFlight(std::sync::Mutex<std::collections::HashSet<(String, Mailbox)>>);

impl InFlight {
    /// The pairs of `items` in flight now.
    fn of(&self, items: &[&str]) -> std::collections::HashSet<(String, Mailbox)> {
        let ids: std::collections::HashSet<&str> = items.iter().copied().collect();
        locked(&self.0)
            .iter()
            .filter(|(item, _)| ids.contains(item.as_str()))
            .cloned()
            .collect()
    }

    fn add(&self, pending: &[Pending]) {
        let mut set = locked(&self.0);
        for p in pending {
            for m in &p.mailboxes {
                set.insert((p.item_id.clone(), m.clone()));
            }
        }
    }

    fn remove(&self, pending: &[Pending]) {
        let mut set = locked(&self.0);
        for p in pending {
            for m in &p.mailboxes {
                set.remove(&(p.item_id.clone(), m.clone()));
            }
        }
    }
}

/// A page (or a few merged), planned: converted, mapped and checked
/// against the ledger, ready to import and then commit.
pub(super) struct Planned(Plan);

impl PageStage<'_> {
    /// Delivers every message of `page` and commits the page: plan
    /// (convert, map, check the ledger), import, commit. Returns the page's
    /// counts.
    #[cfg(test)]
    pub fn deliver(
        &self,
        page: Page,
        conversations: &mut HashMap<String, Conversation>,
        sink: &mut dyn Sink,
        db: &SharedStore,
        run: RunId,
    ) -> Result<RunCounts, RunError> {
        let in_flight = InFlight::default();
        let mut planned = self.prepare(page, conversations, db, &in_flight)?;
        self.import_planned(&mut planned, None, sink)?;
        self.commit_planned(planned, db, run, &in_flight)
    }

    /// Plans `page`: stores new conversation descriptions with it,
    /// converts and maps each message, and leaves out what the ledger or
    /// an earlier page still `in_flight` has; adds what is left to
    /// `in_flight`.
    pub(super) fn prepare(
        &self,
        page: Page,
        conversations: &mut HashMap<String, Conversation>,
        db: &SharedStore,
        in_flight: &InFlight,
    ) -> Result<Planned, RunError> {
        // Only new or changed descriptions are stored: a plugin may repeat
        // a conversation on every page.
        let mut described = Vec::new();
        for c in page.conversations {
            if conversations.get(&c.id) != Some(&c) {
                described.push(c.clone());
                conversations.insert(c.id.clone(), c);
            }
        }
        self.recall_conversations(&page.messages, conversations, db)?;
        let commit = PageCommit {
            checkpoint: page.checkpoint,
            checkpoint_slot: self.checkpoint_slot.clone(),
            lease: Some(self.fence.connector().to_string()),
            conversations: described,
            unreadable: page.unreadable,
            ..PageCommit::default()
        };
        let plan = self.plan(&page.messages, conversations, commit, db, in_flight)?;
        in_flight.add(&plan.pending);
        Ok(Planned(plan))
    }

    /// Imports a planned page: every email is confirmed by the mail store
    /// (or refused, or found already there) when this returns. `next`, the
    /// page to be imported after it, may be started on meanwhile (see
    /// [`Sink::deliver_before`]).
    pub(super) fn import_planned(
        &self,
        planned: &mut Planned,
        next: Option<&Planned>,
        sink: &mut dyn Sink,
    ) -> Result<(), RunError> {
        // A worker whose lease lapsed (paused, or cut off from the state)
        // must not import: another may already deliver these messages.
        self.fence.ensure_live()?;
        let plan = &mut planned.0;
        let next = next.map_or(&[][..], |n| n.0.pending.as_slice());
        self.import(
            &plan.pending,
            next,
            sink,
            &mut plan.commit,
            &mut plan.counts,
        )
    }

    /// Commits an imported page and takes its pairs out of `in_flight`;
    /// returns its counts.
    pub(super) fn commit_planned(
        &self,
        planned: Planned,
        db: &SharedStore,
        run: RunId,
        in_flight: &InFlight,
    ) -> Result<RunCounts, RunError> {
        let Planned(mut plan) = planned;
        let pending = std::mem::take(&mut plan.pending);
        let counts = self.commit(plan, db, run)?;
        in_flight.remove(&pending);
        Ok(counts)
    }

    /// Adds to `conversations` those the messages belong to that the plugin
    /// described in an earlier session or run (the host remembers them, so
    /// a plugin need describe a conversation only once).
    fn recall_conversations(
        &self,
        messages: &[Message],
        conversations: &mut HashMap<String, Conversation>,
        db: &SharedStore,
    ) -> Result<(), RunError> {
        let mut missing: Vec<&str> = messages
            .iter()
            .map(|m| m.conversation_id.as_str())
            .filter(|id| !conversations.contains_key(*id))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        for c in lock(db).conversations(self.connector, &missing)? {
            conversations.insert(c.id.clone(), c);
        }
        Ok(())
    }

    /// Converts each message, maps its participants, and leaves out the
    /// mailboxes the ledger (or a page still in flight) says already have
    /// it.
    fn plan(
        &self,
        messages: &[Message],
        conversations: &HashMap<String, Conversation>,
        commit: PageCommit,
        db: &SharedStore,
        in_flight: &InFlight,
    ) -> Result<Plan, RunError> {
        let mut plan = Plan {
            pending: Vec::with_capacity(messages.len()),
            commit,
            counts: RunCounts {
                pages: 1,
                items_from_source: messages.len() as u64,
                ..RunCounts::default()
            },
            fully_mapped: Vec::new(),
        };
        // What the ledger already has of this page's items: one query per
        // page, not per message (nothing is recorded before the page's
        // commit, so the answer holds for the whole page).
        let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
        // In flight first, the ledger second: a pair leaves the set only
        // once its page is committed.
        let flying = in_flight.of(&ids);
        let delivered = lock(db).delivered_set(self.connector, &ids)?;
        let by_id: HashMap<&str, &Message> = messages.iter().map(|m| (m.id.as_str(), m)).collect();
        for msg in messages {
            let conv = conversations.get(&msg.conversation_id).ok_or_else(|| {
                PluginError::Protocol(format!(
                    "message {} refers to conversation {}, which no page of this or an earlier run described; the plugin must describe each conversation at least once",
                    msg.id, msg.conversation_id
                ))
            })?;
            let email = self
                .converter
                .convert_quoting(msg, conv, &|id| self.earlier.quote(&by_id, id))
                .map_err(|source| RunError::Convert {
                    item: msg.id.clone(),
                    source,
                })?;
            faults::reached(Point::Convert);
            let fan = self.users.fan_out_message(msg, &conv.participants);
            if self.delivery.transcripts() {
                plan.commit
                    .transcript_lines
                    .push(self.transcript_line(msg, &fan.mailboxes)?);
            }
            // Without emails of their own, messages reach mailboxes only
            // inside transcripts, which the ledger knows by their own ids.
            let own_emails: &[Mailbox] = if self.delivery.messages() {
                &fan.mailboxes
            } else {
                &[]
            };
            // A participant without a mailbox is a pair for import that
            // fails (its failure row is written below).
            let unmapped = fan.unmapped.len() as u64;
            plan.counts.items_for_import += own_emails.len() as u64 + unmapped;
            plan.counts.failed += unmapped;
            plan.commit.seen.push(SeenItem {
                item_id: msg.id.clone(),
                source_sha256: msg.source_sha256.clone(),
                sent_at_ms: msg.sent_at,
                mailboxes: own_emails.iter().map(|m| m.to_string()).collect(),
                unmapped: fan.unmapped.iter().map(|p| p.id.clone()).collect(),
            });
            name_external(msg, &fan.external, &mut plan.commit);
            if fan.unmapped.is_empty() {
                plan.fully_mapped.push(msg.id.clone());
            } else {
                quarantine_unmapped(msg, &email, &fan.unmapped, &mut plan.commit);
            }
            let mut needed = Vec::new();
            for mailbox in own_emails {
                if flying.contains(&(msg.id.clone(), mailbox.clone()))
                    || delivered.contains(&(msg.id.clone(), mailbox.to_string()))
                {
                    plan.counts.skipped_duplicates += 1;
                } else {
                    needed.push(mailbox.clone());
                }
            }
            if !needed.is_empty() {
                let mut owners = Vec::new();
                for person in std::iter::once(&msg.sender).chain(&conv.participants) {
                    if let Some(mailbox) = self.users.resolve(person)
                        && !owners.iter().any(|(m, _)| *m == mailbox)
                    {
                        owners.push((mailbox, person.id.clone()));
                    }
                }
                plan.pending.push(Pending {
                    item_id: msg.id.clone(),
                    source_sha256: msg.source_sha256.clone(),
                    email,
                    mailboxes: needed,
                    owners,
                });
            }
        }
        self.earlier.remember(messages);
        Ok(plan)
    }

    /// Releases quarantined items now delivered everywhere, then records
    /// the page in one transaction.
    fn commit(&self, plan: Plan, db: &SharedStore, run: RunId) -> Result<RunCounts, RunError> {
        let Plan {
            mut commit,
            counts,
            mut fully_mapped,
            ..
        } = plan;
        let mut db = lock(db);
        // Most connectors have nothing in the quarantine: then no item
        // needs looking up.
        if db.quarantine_count(self.connector)? == 0 {
            fully_mapped.clear();
        }
        for item in fully_mapped {
            let refused = commit
                .failures
                .iter()
                .any(|f| f.item_id == item && f.kind == FailureKind::Refused);
            if !refused && db.is_quarantined(self.connector, &item)? {
                commit.released.push(item);
            }
        }
        let mut counts = counts;
        count_item_outcomes(&commit, &mut counts);
        commit.counts = counts.clone();
        faults::reached(Point::Commit);
        db.commit_page(self.connector, run, self.fence.token(), &commit)?;
        Ok(counts)
    }

    /// Imports what the ledger does not have, skipping what the mailbox
    /// already holds (a crash between import and commit leaves such items);
    /// `next` is what the caller imports after.
    fn import(
        &self,
        pending: &[Pending],
        next: &[Pending],
        sink: &mut dyn Sink,
        commit: &mut PageCommit,
        counts: &mut RunCounts,
    ) -> Result<(), RunError> {
        // Every mailbox is asked at once (a sink reads the folders it does
        // not know yet concurrently); what could not be answered is asked
        // again after a pause.
        let mut asking = each_mailbox(pending);
        let mut batch: Vec<(&Pending, &Mailbox)> = Vec::new();
        let mut failures = 0;
        while !asking.is_empty() {
            let queries: Vec<(&Mailbox, &str, &str)> = asking
                .iter()
                .map(|(p, m)| (*m, self.folder.as_str(), p.email.message_id.as_str()))
                .collect();
            let answers = sink.contains_each(&queries);
            let mut again = Vec::new();
            let mut last_error = None;
            for ((p, mailbox), answer) in asking.into_iter().zip(answers) {
                match answer {
                    Ok(true) => {
                        counts.skipped_duplicates += 1;
                        commit
                            .ledger
                            .push(self.entry(p, mailbox, "already in mailbox".into()));
                    }
                    Ok(false) => batch.push((p, mailbox)),
                    Err(e) if e.is_retryable() => {
                        again.push((p, mailbox));
                        last_error = Some(e);
                    }
                    Err(e) => return Err(RunError::Sink(e)),
                }
            }
            asking = again;
            if let Some(e) = last_error {
                self.pause_to_retry(&mut failures, e, asking.len())?;
            }
        }
        // Only the first call looks ahead: a retry follows a failure.
        let mut next: Option<Vec<Delivery<'_>>> = Some(
            each_mailbox(next)
                .into_iter()
                .map(|(p, mailbox)| self.delivery(p, mailbox))
                .collect(),
        );
        let mut failures = 0;
        while !batch.is_empty() {
            let deliveries: Vec<Delivery<'_>> = batch
                .iter()
                .map(|(p, mailbox)| self.delivery(p, mailbox))
                .collect();
            // The mailboxes were asked for these Message-IDs before: a worker
            // paused since then must not deliver what its successor did.
            self.fence.ensure_live()?;
            let results = match next.take() {
                Some(next) => sink.deliver_before(&deliveries, &next),
                None => sink.deliver(&deliveries),
            };
            faults::reached(Point::Deliver);
            let mut retry_batch = Vec::new();
            let mut last_error = None;
            for ((p, mailbox), result) in batch.into_iter().zip(results) {
                match result {
                    Ok(receipt) => {
                        counts.imported += 1;
                        commit.ledger.push(self.entry(p, mailbox, receipt.0));
                    }
                    Err(e) if e.is_retryable() => {
                        retry_batch.push((p, mailbox));
                        last_error = Some(e);
                    }
                    Err(e) if e.is_fatal() => return Err(RunError::Sink(e)),
                    Err(e) => {
                        counts.failed += 1;
                        tracing::warn!(item = %p.item_id, %mailbox, "mailbox refused the item: {e}");
                        self.quarantine_refused(p, mailbox, &e, commit);
                    }
                }
            }
            batch = retry_batch;
            if let Some(e) = last_error {
                self.pause_to_retry(&mut failures, e, batch.len())?;
            }
        }
        Ok(())
    }

    /// Waits before asking the mail store about `items` again after it
    /// was unavailable (`e`), or gives up with `e` once the retries are
    /// used up; `failures` counts the tries so far.
    fn pause_to_retry(
        &self,
        failures: &mut u32,
        e: SinkError,
        items: usize,
    ) -> Result<(), RunError> {
        if *failures >= self.retry.attempts() {
            return Err(RunError::Sink(e));
        }
        let pause = self.retry.backoff(*failures);
        *failures += 1;
        tracing::warn!("mailbox store unavailable: {e}; retrying {items} item(s) in {pause:?}");
        std::thread::sleep(pause);
        Ok(())
    }

    /// `p`'s email for `mailbox`, into the stage's folder.
    fn delivery<'a>(&'a self, p: &'a Pending, mailbox: &'a Mailbox) -> Delivery<'a> {
        Delivery {
            mailbox,
            folder: &self.folder,
            email: &p.email,
        }
    }

    fn entry(&self, p: &Pending, mailbox: &Mailbox, receipt: String) -> LedgerEntry {
        LedgerEntry {
            item_id: p.item_id.clone(),
            mailbox: mailbox.as_str().to_string(),
            message_id: p.email.message_id.clone(),
            email_sha256: p.email.sha256.clone(),
            source_sha256: p.source_sha256.clone(),
            receipt,
            delivered_at_ms: now_ms(),
        }
    }

    /// Keeps a refused item in the quarantine so it can be redelivered.
    fn quarantine_refused(
        &self,
        p: &Pending,
        mailbox: &Mailbox,
        error: &SinkError,
        commit: &mut PageCommit,
    ) {
        let reason = format!("mailbox {mailbox} refused it: {error}");
        commit.failures.push(RunFailure {
            item_id: p.item_id.clone(),
            source_user_id: p
                .owners
                .iter()
                .find(|(m, _)| m == mailbox)
                .map(|(_, id)| id.clone())
                .unwrap_or_default(),
            mailbox: mailbox.to_string(),
            kind: FailureKind::Refused,
            reason: format!(
                "{error}; the item is kept in the quarantine: fix the mailbox, then run `connector quarantine redeliver`"
            ),
        });
        if let Some(q) = commit
            .quarantine
            .iter_mut()
            .find(|q| q.item_id == p.item_id)
        {
            q.reason.push_str("; ");
            q.reason.push_str(&reason);
        } else {
            commit.quarantine.push(QuarantineEntry {
                item_id: p.item_id.clone(),
                message_id: p.email.message_id.clone(),
                email: p.email.clone(),
                sent_at_ms: p.email.sent_at,
                unmapped: Vec::new(),
                reason,
                source_sha256: p.source_sha256.clone(),
            });
        }
    }
}

/// A person as the admin log names them: `id <email>`, or the id alone.
/// Each pending email with each mailbox it goes to, in order.
fn each_mailbox(pending: &[Pending]) -> Vec<(&Pending, &Mailbox)> {
    pending
        .iter()
        .flat_map(|p| p.mailboxes.iter().map(move |m| (p, m)))
        .collect()
}

fn named(person: &Person) -> String {
    match &person.email {
        Some(email) => format!("{} <{email}>", person.id),
        None => person.id.clone(),
    }
}

/// Names each external participant without a mailbox in the admin log:
/// the message is complete without them.
fn name_external(msg: &Message, external: &[Person], commit: &mut PageCommit) {
    for person in external {
        commit.failures.push(RunFailure {
            item_id: msg.id.clone(),
            source_user_id: person.id.clone(),
            mailbox: String::new(),
            kind: FailureKind::External,
            reason: format!(
                "participant {} belongs to another organisation and has no mailbox here: named in the email, not quarantined (`[mapping] external = \"name\"`); to archive a copy for them, add `{},<mailbox>` to the mapping CSV, or set `external = \"quarantine\"` to hold such messages until they are mapped",
                named(person),
                person.id
            ),
        });
    }
}

/// Counts each item the page saw by how its pairs ended (see
/// [`RunCounts::count_item_outcome`]): every pair of a seen item (its
/// mailboxes and participants without one) was imported, skipped as a
/// duplicate or failed, and each failed pair has a failure row.
fn count_item_outcomes(commit: &PageCommit, counts: &mut RunCounts) {
    let mut failed: HashMap<&str, u64> = HashMap::new();
    for f in commit.failures.iter().filter(|f| f.kind.is_failure()) {
        *failed.entry(f.item_id.as_str()).or_default() += 1;
    }
    for item in &commit.seen {
        let pairs = (item.mailboxes.len() + item.unmapped.len()) as u64;
        let failed = failed.get(item.item_id.as_str()).copied().unwrap_or(0);
        counts.count_item_outcome(pairs.saturating_sub(failed), failed);
    }
}

/// Keeps a message with participants that have no mailbox in the
/// quarantine, with one failure record per such participant.
fn quarantine_unmapped(msg: &Message, email: &Email, unmapped: &[Person], commit: &mut PageCommit) {
    for person in unmapped {
        commit.failures.push(RunFailure {
            item_id: msg.id.clone(),
            source_user_id: person.id.clone(),
            mailbox: String::new(),
            kind: FailureKind::Unmapped,
            reason: format!(
                "no mailbox is mapped for participant {}; the item is kept in the quarantine: add `{},<mailbox>` to the mapping CSV, then run `connector quarantine redeliver`",
                named(person),
                person.id
            ),
        });
    }
    let names: Vec<&str> = unmapped.iter().map(|p| p.id.as_str()).collect();
    commit.quarantine.push(QuarantineEntry {
        item_id: msg.id.clone(),
        message_id: email.message_id.clone(),
        email: email.clone(),
        sent_at_ms: msg.sent_at,
        unmapped: unmapped.to_vec(),
        reason: format!(
            "no mailbox is mapped for participant(s) {}; add them to the mapping CSV, then run `connector quarantine redeliver`",
            names.join(", ")
        ),
        source_sha256: msg.source_sha256.clone(),
    });
}

/// The value behind `m`, also after a thread panicked holding it.
pub(super) fn locked<T: ?Sized>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The state database, also after a thread panicked holding it.
pub(super) fn lock(db: &SharedStore) -> std::sync::MutexGuard<'_, dyn StateStore + 'static> {
    locked(db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use connector_model::{ConversationKind, Message, MessageKind, Person};
    use connector_sink::Receipt;
    use connector_state::{DEFAULT_LEASE, LeaseRequest, LockOutcome};
    use connector_state_sqlite::SqliteStore;

    /// Refuses one mailbox, stores everything else in memory.
    struct PickySink {
        refuse: &'static str,
        stored: Vec<(String, String)>,
    }

    impl Sink for PickySink {
        fn describe(&self) -> String {
            "picky".into()
        }
        fn contains(&mut self, m: &Mailbox, _: &str, id: &str) -> Result<bool, SinkError> {
            Ok(self.stored.contains(&(m.to_string(), id.to_string())))
        }
        fn deliver(&mut self, batch: &[Delivery<'_>]) -> Vec<Result<Receipt, SinkError>> {
            batch
                .iter()
                .map(|d| {
                    if d.mailbox.as_str() == self.refuse {
                        return Err(SinkError::Refused {
                            target: "picky".into(),
                            mailbox: d.mailbox.to_string(),
                            message_id: d.email.message_id.clone(),
                            reason: "over quota".into(),
                        });
                    }
                    self.stored
                        .push((d.mailbox.to_string(), d.email.message_id.clone()));
                    Ok(Receipt(format!("{}/{}", d.mailbox, d.email.message_id)))
                })
                .collect()
        }
    }

    fn person(id: &str, email: Option<&str>) -> Person {
        Person {
            id: id.into(),
            display_name: None,
            email: email.map(String::from),
        }
    }

    /// A stage for connector `t`, holding its lease in `db`.
    fn stage<'a>(users: &'a UserMap, db: &SharedStore) -> PageStage<'a> {
        let request = LeaseRequest {
            owner: "test".into(),
            ttl: DEFAULT_LEASE,
            fingerprint: Default::default(),
        };
        let LockOutcome::Taken(lease) = lock(db).lock_runs("t", &request).unwrap() else {
            panic!("lease refused");
        };
        PageStage {
            connector: "t",
            folder: "INBOX/T".into(),
            converter: EmailConverter::new("t", "T"),
            users,
            retry: RetryPolicy::new(0),
            checkpoint_slot: CheckpointSlot::Connector,
            fence: lease.fence(),
            delivery: DeliveryMode::Messages,
            zone: DayZone::default(),
            earlier: Default::default(),
        }
    }

    /// Room `c1`, whose one participant is `u-a`.
    fn notes() -> Conversation {
        Conversation {
            id: "c1".into(),
            kind: ConversationKind::Room,
            name: Some("Notes".into()),
            participants: vec![person("u-a", Some("a@x.test"))],
        }
    }

    fn chat(id: &str, conversation: &str) -> Message {
        Message {
            id: id.into(),
            conversation_id: conversation.into(),
            sender: person("u-a", Some("a@x.test")),
            sent_at: 1_000,
            kind: MessageKind::Chat,
            relations: Vec::new(),
            text: Some("hello".into()),
            html: None,
            attachments: Vec::new(),
            source_sha256: "ab".repeat(32),
            properties: Vec::new(),
        }
    }

    #[test]
    fn a_conversation_described_once_serves_later_sessions() {
        let users = UserMap::from_pairs([("u-b", "b@x.test")], vec!["x.test".into()]).unwrap();
        let db: SharedStore = Arc::new(Mutex::new(SqliteStore::open_in_memory().unwrap()));
        let stage = stage(&users, &db);
        let conv = Conversation {
            id: "c1".into(),
            kind: ConversationKind::Direct,
            name: None,
            participants: vec![person("u-a", Some("a@x.test")), person("u-b", None)],
        };
        let run = lock(&db).begin_run("t", 0).unwrap();
        let mut sink = PickySink {
            refuse: "",
            stored: Vec::new(),
        };
        let first = Page {
            conversations: vec![conv],
            messages: vec![chat("m1", "c1")],
            checkpoint: b"1".to_vec(),
            complete: false,
            unreadable: Vec::new(),
        };
        stage
            .deliver(first, &mut HashMap::new(), &mut sink, &db, run)
            .unwrap();
        // A new session (empty map): the plugin does not describe c1 again.
        let later = Page {
            conversations: Vec::new(),
            messages: vec![chat("m2", "c1")],
            checkpoint: b"2".to_vec(),
            complete: true,
            unreadable: Vec::new(),
        };
        let counts = stage
            .deliver(later, &mut HashMap::new(), &mut sink, &db, run)
            .unwrap();
        assert_eq!(counts.imported, 2, "both participants of c1 get m2");
        let never = Page {
            conversations: Vec::new(),
            messages: vec![chat("m3", "c-unknown")],
            checkpoint: b"3".to_vec(),
            complete: true,
            unreadable: Vec::new(),
        };
        let err = stage
            .deliver(never, &mut HashMap::new(), &mut sink, &db, run)
            .unwrap_err();
        assert!(err.to_string().contains("c-unknown"), "{err}");
    }

    #[test]
    fn the_sink_importing_a_page_is_told_the_emails_of_the_page_planned_after_it() {
        let users = UserMap::load(None, vec!["x.test".into()]).unwrap();
        let db: SharedStore = Arc::new(Mutex::new(SqliteStore::open_in_memory().unwrap()));
        let stage = stage(&users, &db);
        let conv = notes();
        /// Records each call: its emails and those it was told come next.
        #[derive(Default)]
        struct Told(Vec<(Vec<String>, Vec<String>)>);
        impl Sink for Told {
            fn describe(&self) -> String {
                "told".into()
            }
            fn contains(&mut self, _: &Mailbox, _: &str, _: &str) -> Result<bool, SinkError> {
                Ok(false)
            }
            fn deliver(&mut self, batch: &[Delivery<'_>]) -> Vec<Result<Receipt, SinkError>> {
                self.deliver_before(batch, &[])
            }
            fn deliver_before(
                &mut self,
                batch: &[Delivery<'_>],
                next: &[Delivery<'_>],
            ) -> Vec<Result<Receipt, SinkError>> {
                let ids = |d: &[Delivery<'_>]| -> Vec<String> {
                    d.iter().map(|d| d.email.message_id.clone()).collect()
                };
                self.0.push((ids(batch), ids(next)));
                batch
                    .iter()
                    .map(|d| Ok(Receipt(d.email.message_id.clone())))
                    .collect()
            }
        }
        let page = |ids: &[&str]| Page {
            conversations: vec![conv.clone()],
            messages: ids.iter().map(|id| chat(id, "c1")).collect(),
            checkpoint: b"1".to_vec(),
            complete: false,
            unreadable: Vec::new(),
        };
        let in_flight = InFlight::default();
        let mut conversations = HashMap::new();
        let mut planned: Vec<Planned> = [&["m1", "m2"][..], &["m3"][..]]
            .into_iter()
            .map(|ids| {
                stage
                    .prepare(page(ids), &mut conversations, &db, &in_flight)
                    .unwrap()
            })
            .collect();
        let mut sink = Told::default();
        let (first, second) = planned.split_at_mut(1);
        stage
            .import_planned(&mut first[0], Some(&second[0]), &mut sink)
            .unwrap();
        stage
            .import_planned(&mut second[0], None, &mut sink)
            .unwrap();
        let id = |m: &str| -> String {
            stage
                .converter
                .convert(&chat(m, "c1"), &conv)
                .unwrap()
                .message_id
        };
        assert_eq!(
            sink.0,
            [
                (vec![id("m1"), id("m2")], vec![id("m3")]),
                (vec![id("m3")], vec![])
            ]
        );
    }

    #[test]
    fn a_message_repeated_by_the_next_page_before_the_first_is_committed_is_imported_once() {
        let users = UserMap::load(None, vec!["x.test".into()]).unwrap();
        let db: SharedStore = Arc::new(Mutex::new(SqliteStore::open_in_memory().unwrap()));
        let stage = stage(&users, &db);
        let conv = notes();
        let run = lock(&db).begin_run("t", 1).unwrap();
        // Answers "not there" whatever it holds: only the host's own
        // record can keep the repeat out.
        struct Forgetful(Vec<String>);
        impl Sink for Forgetful {
            fn describe(&self) -> String {
                "forgetful".into()
            }
            fn contains(&mut self, _: &Mailbox, _: &str, _: &str) -> Result<bool, SinkError> {
                Ok(false)
            }
            fn deliver(&mut self, batch: &[Delivery<'_>]) -> Vec<Result<Receipt, SinkError>> {
                batch
                    .iter()
                    .map(|d| {
                        self.0.push(d.email.message_id.clone());
                        Ok(Receipt(d.email.message_id.clone()))
                    })
                    .collect()
            }
        }
        let mut sink = Forgetful(Vec::new());
        let page = |ids: &[&str], checkpoint: &[u8]| Page {
            conversations: vec![conv.clone()],
            messages: ids.iter().map(|id| chat(id, "c1")).collect(),
            checkpoint: checkpoint.to_vec(),
            complete: false,
            unreadable: Vec::new(),
        };
        let in_flight = InFlight::default();
        let mut conversations = HashMap::new();
        // The second page is planned while the first is being imported.
        let mut first = stage
            .prepare(
                page(&["m1", "m2"], b"1"),
                &mut conversations,
                &db,
                &in_flight,
            )
            .unwrap();
        let mut second = stage
            .prepare(
                page(&["m2", "m3"], b"2"),
                &mut conversations,
                &db,
                &in_flight,
            )
            .unwrap();
        stage.import_planned(&mut first, None, &mut sink).unwrap();
        stage.import_planned(&mut second, None, &mut sink).unwrap();
        let one = stage.commit_planned(first, &db, run, &in_flight).unwrap();
        let two = stage.commit_planned(second, &db, run, &in_flight).unwrap();
        assert_eq!(sink.0.len(), 3, "m2 once: {:?}", sink.0);
        assert_eq!((one.imported, two.imported), (2, 1));
        assert_eq!(two.skipped_duplicates, 1);
        // Once committed, the ledger answers for it.
        let third = stage
            .prepare(page(&["m2"], b"3"), &mut conversations, &db, &in_flight)
            .unwrap();
        assert!(third.0.pending.is_empty());
    }

    #[test]
    fn refused_mailboxes_and_unmapped_people_are_recorded_as_failures_with_the_page() {
        let users = UserMap::from_pairs([("u-c", "c@x.test")], vec!["x.test".into()]).unwrap();
        let db: SharedStore = Arc::new(Mutex::new(SqliteStore::open_in_memory().unwrap()));
        let stage = stage(&users, &db);
        let conv = Conversation {
            id: "c1".into(),
            kind: ConversationKind::Room,
            name: Some("Room".into()),
            participants: vec![
                person("u-a", Some("a@x.test")),
                person("u-c", None),
                person("u-ext", Some("e@elsewhere.test")),
            ],
        };
        let page = Page {
            conversations: vec![conv],
            messages: vec![chat("m1", "c1")],
            checkpoint: b"1".to_vec(),
            complete: true,
            unreadable: Vec::new(),
        };
        let run = lock(&db).begin_run("t", 0).unwrap();
        let mut sink = PickySink {
            refuse: "c@x.test",
            stored: Vec::new(),
        };
        let counts = stage
            .deliver(page, &mut HashMap::new(), &mut sink, &db, run)
            .unwrap();
        // Three pairs: a imported, c refused, u-ext without a mailbox; one
        // item, quarantined once and partially imported.
        assert_eq!(counts.items_for_import, 3);
        assert_eq!(counts.imported, 1);
        assert_eq!(counts.failed, 2);
        assert_eq!(counts.quarantined, 1);
        assert_eq!(counts.partially_imported, 1);
        let db = lock(&db);
        let failures = db.run_failures(run).unwrap();
        let summary: Vec<(&str, &str, FailureKind)> = failures
            .iter()
            .map(|f| (f.source_user_id.as_str(), f.mailbox.as_str(), f.kind))
            .collect();
        assert_eq!(
            summary,
            [
                ("u-ext", "", FailureKind::Unmapped),
                ("u-c", "c@x.test", FailureKind::Refused)
            ]
        );
        let seen = db.run_items(run).unwrap();
        assert_eq!(seen[0].mailboxes, ["a@x.test", "c@x.test"]);
        assert_eq!(seen[0].unmapped, ["u-ext"]);
        let q = db.quarantine("t").unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].source_sha256, "ab".repeat(32));
        assert!(
            q[0].reason.contains("c@x.test refused it"),
            "{}",
            q[0].reason
        );
        assert_eq!(
            db.refused_mailboxes("t", "m1").unwrap(),
            [("c@x.test".to_string(), "u-c".to_string())]
        );
    }

    #[test]
    fn external_participants_are_named_not_quarantined_and_unreadable_conversations_are_kept_with_the_run()
     {
        let users = UserMap::load(None, vec!["x.test".into()]).unwrap();
        let db: SharedStore = Arc::new(Mutex::new(SqliteStore::open_in_memory().unwrap()));
        let stage = stage(&users, &db);
        let conv = Conversation {
            id: "c1".into(),
            kind: ConversationKind::Room,
            name: None,
            participants: vec![
                person("u-a", Some("a@x.test")),
                person("u-ext", Some("e@partner.test")),
            ],
        };
        let mut message = chat("m1", "c1");
        message.properties.push((
            connector_model::EXTERNAL_PARTICIPANTS_PROPERTY.into(),
            "u-ext".into(),
        ));
        let report = connector_model::Unreadable {
            conversation_id: "c2".into(),
            reason: "HTTP 403".into(),
            fix: "add the account".into(),
        };
        let page = Page {
            conversations: vec![conv],
            messages: vec![message],
            checkpoint: b"1".to_vec(),
            complete: true,
            unreadable: vec![report.clone()],
        };
        let run = lock(&db).begin_run("t", 0).unwrap();
        let mut sink = PickySink {
            refuse: "",
            stored: Vec::new(),
        };
        let counts = stage
            .deliver(page, &mut HashMap::new(), &mut sink, &db, run)
            .unwrap();
        assert_eq!((counts.imported, counts.quarantined), (1, 0));
        let db = lock(&db);
        assert_eq!(db.quarantine_count("t").unwrap(), 0);
        let failures = db.run_failures(run).unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].kind, FailureKind::External);
        assert!(
            failures[0].reason.contains("u-ext <e@partner.test>"),
            "{}",
            failures[0].reason
        );
        assert!(db.run_items(run).unwrap()[0].unmapped.is_empty());
        let kept = db.run_unreadable(run).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].report, report);
    }
}
