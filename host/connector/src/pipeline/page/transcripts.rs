//! The transcript stage: each page's messages kept as lines of their
//! conversations' days (committed with the page), then, once a day is
//! closed (its end in the connector's time zone plus the grace period),
//! the day's lines sealed into a transcript and delivered to every
//! mailbox of the day, the delivery committed with its ledger entries.
//!
//! A transcript is sealed before it is delivered: after a crash between
//! delivery and commit, the next run builds the same email (same lines,
//! same bytes, same Message-ID) and finds it in the mailboxes, so each
//! transcript arrives once. Lines that come after their day was sealed
//! are sealed into the next part, an addendum.

use std::collections::BTreeSet;
use std::time::Duration;

use super::faults::{self, Point};
use super::{PageStage, Pending, Plan, RunError, lock};
use connector_email::{TranscriptDay, TranscriptEntry};
use connector_model::time::now_ms;
use connector_model::{Mailbox, Message};
use connector_runtime::PluginError;
use connector_sink::Sink;
use connector_state::{
    CheckpointSlot, PageCommit, RunCounts, RunId, SharedStore, TranscriptLine, TranscriptPart,
};

impl PageStage<'_> {
    /// The line `msg` adds to its day, for the transcript that goes to
    /// `mailboxes`.
    pub(super) fn transcript_line(
        &self,
        msg: &Message,
        mailboxes: &[Mailbox],
    ) -> Result<TranscriptLine, RunError> {
        let entry = TranscriptEntry::from_message(msg).map_err(|source| RunError::Convert {
            item: msg.id.clone(),
            source,
        })?;
        Ok(TranscriptLine {
            conversation_id: msg.conversation_id.clone(),
            day: self.zone.day_of(msg.sent_at),
            item_id: msg.id.clone(),
            sent_at_ms: msg.sent_at,
            mailboxes: mailboxes.iter().map(|m| m.to_string()).collect(),
            entry: entry.encode(),
            part: None,
        })
    }

    /// Seals the days closed `grace` ago or longer, then delivers every
    /// sealed transcript not delivered yet, each committed on its own with
    /// its ledger entries. Returns the counts of what it delivered.
    pub(in crate::pipeline) fn deliver_transcripts(
        &self,
        grace: Duration,
        sink: &mut dyn Sink,
        db: &SharedStore,
        run: RunId,
    ) -> Result<RunCounts, RunError> {
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let last_closed = self.zone.last_closed_day(now_ms(), grace_ms);
        let days = lock(db).days_to_seal(self.connector, &last_closed)?;
        for (conversation, day) in days {
            lock(db).seal_transcript(self.connector, &conversation, &day)?;
        }
        let mut total = RunCounts::default();
        // Bound first: the store's lock must not be held while delivering.
        let parts = lock(db).undelivered_transcripts(self.connector)?;
        for part in parts {
            total.add(&self.deliver_transcript(&part, sink, db, run)?);
        }
        Ok(total)
    }

    /// Builds one sealed transcript from its lines, imports it where the
    /// ledger lacks it, and commits the deliveries with the mark that the
    /// part went out.
    fn deliver_transcript(
        &self,
        part: &TranscriptPart,
        sink: &mut dyn Sink,
        db: &SharedStore,
        run: RunId,
    ) -> Result<RunCounts, RunError> {
        let lines = lock(db).transcript_lines(self.connector, part)?;
        let entries = lines
            .iter()
            .map(|l| TranscriptEntry::decode(&l.item_id, &l.entry))
            .collect::<Result<Vec<_>, _>>()?;
        let conv = lock(db)
            .conversations(self.connector, &[part.conversation_id.as_str()])?
            .into_iter()
            .next()
            .ok_or_else(|| {
                PluginError::Protocol(format!(
                    "the transcript of {} for conversation {} needs the conversation's description, which the state does not hold; the plugin must describe each conversation at least once",
                    part.day, part.conversation_id
                ))
            })?;
        let day = TranscriptDay {
            day: &part.day,
            zone: self.zone,
            part: part.part,
            entries: &entries,
        };
        let item_id = day.item_id(&conv.id);
        let email = self
            .converter
            .transcript(&day, &conv)
            .map_err(|source| RunError::Convert {
                item: item_id.clone(),
                source,
            })?;
        let mailboxes: BTreeSet<&str> = lines
            .iter()
            .flat_map(|l| &l.mailboxes)
            .map(String::as_str)
            .collect();
        let delivered = lock(db).delivered_set(self.connector, &[item_id.as_str()])?;
        let mut counts = RunCounts {
            items_for_import: mailboxes.len() as u64,
            ..RunCounts::default()
        };
        let mut needed = Vec::new();
        for mailbox in mailboxes {
            if delivered.contains(&(item_id.clone(), mailbox.to_string())) {
                counts.skipped_duplicates += 1;
            } else {
                needed.push(Mailbox::new_unchecked(mailbox));
            }
        }
        let pending = Pending {
            item_id,
            source_sha256: day.source_sha256(),
            email,
            mailboxes: needed,
            owners: Vec::new(),
        };
        let mut plan = Plan {
            pending: Vec::new(),
            commit: PageCommit {
                checkpoint_slot: CheckpointSlot::Keep,
                lease: Some(self.fence.connector().to_string()),
                transcripts_delivered: vec![part.clone()],
                ..PageCommit::default()
            },
            counts,
            fully_mapped: Vec::new(),
        };
        self.fence.ensure_live()?;
        self.import(
            std::slice::from_ref(&pending),
            &[],
            sink,
            &mut plan.commit,
            &mut plan.counts,
        )?;
        // A transcript is no seen item: its outcome is counted here.
        let failed = plan.counts.failed;
        plan.counts
            .count_item_outcome(plan.counts.items_for_import - failed, failed);
        faults::reached(Point::Transcript);
        self.commit(plan, db, run)
    }
}
