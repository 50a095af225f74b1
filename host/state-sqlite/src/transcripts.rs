//! The `transcript_lines` table: each message a conversation's day holds
//! for its transcripts, with the part that carries it once sealed and
//! whether that part was delivered.

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use crate::SqliteStore;
use connector_state::{
    StateError, TranscriptBacklog, TranscriptDays, TranscriptLine, TranscriptPart,
};

/// What separates the mailboxes in the `mailboxes` column (never part of
/// an address).
const MAILBOX_SEPARATOR: char = '\n';

impl TranscriptDays for SqliteStore {
    fn days_to_seal(
        &self,
        connector: &str,
        last_closed_day: &str,
    ) -> Result<Vec<(String, String)>, StateError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT conversation, day FROM transcript_lines
             WHERE connector = ?1 AND part IS NULL AND day <= ?2
             ORDER BY conversation, day",
        )?;
        let rows = stmt.query_map(params![connector, last_closed_day], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn seal_transcript(
        &mut self,
        connector: &str,
        conversation: &str,
        day: &str,
    ) -> Result<Option<TranscriptPart>, StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let open: i64 = tx.query_row(
            "SELECT count(*) FROM transcript_lines
             WHERE connector = ?1 AND conversation = ?2 AND day = ?3 AND part IS NULL",
            params![connector, conversation, day],
            |r| r.get(0),
        )?;
        if open == 0 {
            return Ok(None);
        }
        let last: Option<i64> = tx
            .query_row(
                "SELECT max(part) FROM transcript_lines
                 WHERE connector = ?1 AND conversation = ?2 AND day = ?3",
                params![connector, conversation, day],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let part = last.map_or(0, |p| p + 1);
        tx.execute(
            "UPDATE transcript_lines SET part = ?4
             WHERE connector = ?1 AND conversation = ?2 AND day = ?3 AND part IS NULL",
            params![connector, conversation, day, part],
        )?;
        tx.commit()?;
        Ok(Some(TranscriptPart {
            conversation_id: conversation.to_string(),
            day: day.to_string(),
            part: part as u32,
        }))
    }

    fn undelivered_transcripts(&self, connector: &str) -> Result<Vec<TranscriptPart>, StateError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT conversation, day, part FROM transcript_lines
             WHERE connector = ?1 AND part IS NOT NULL AND delivered = 0
             ORDER BY conversation, day, part",
        )?;
        let rows = stmt.query_map(params![connector], |r| {
            Ok(TranscriptPart {
                conversation_id: r.get(0)?,
                day: r.get(1)?,
                part: r.get::<_, i64>(2)? as u32,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn transcript_backlog(&self, connector: &str) -> Result<TranscriptBacklog, StateError> {
        let (open, unsent): (i64, i64) = self.conn.query_row(
            "SELECT
                 (SELECT count(*) FROM (SELECT DISTINCT conversation, day FROM transcript_lines
                  WHERE connector = ?1 AND part IS NULL)),
                 (SELECT count(*) FROM (SELECT DISTINCT conversation, day, part
                  FROM transcript_lines
                  WHERE connector = ?1 AND part IS NOT NULL AND delivered = 0))",
            params![connector],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(TranscriptBacklog {
            open_days: open.unsigned_abs(),
            unsent: unsent.unsigned_abs(),
        })
    }

    fn transcript_lines(
        &self,
        connector: &str,
        part: &TranscriptPart,
    ) -> Result<Vec<TranscriptLine>, StateError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LINE_COLUMNS} FROM transcript_lines
             WHERE connector = ?1 AND conversation = ?2 AND day = ?3 AND part = ?4
             ORDER BY sent_at_ms, item_id"
        ))?;
        let rows = stmt.query_map(
            params![connector, part.conversation_id, part.day, part.part],
            |r| line_of_row(r).map(|(_, line, _)| line),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The columns [`line_of_row`] reads, in its order.
pub(super) const LINE_COLUMNS: &str =
    "connector, conversation, day, item_id, sent_at_ms, mailboxes, entry, part, delivered";

/// The connector, the line and whether its part was delivered, from a row
/// of [`LINE_COLUMNS`].
pub(super) fn line_of_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, TranscriptLine, bool)> {
    let mailboxes: String = r.get(5)?;
    let line = TranscriptLine {
        conversation_id: r.get(1)?,
        day: r.get(2)?,
        item_id: r.get(3)?,
        sent_at_ms: r.get(4)?,
        mailboxes: mailboxes
            .split(MAILBOX_SEPARATOR)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect(),
        entry: r.get(6)?,
        part: r.get::<_, Option<i64>>(7)?.map(|p| p as u32),
    };
    Ok((r.get(0)?, line, r.get::<_, i64>(8)? != 0))
}

/// Writes a line with its part and delivery (a line already kept stays as
/// it is).
pub(super) fn insert(
    tx: &Transaction<'_>,
    connector: &str,
    line: &TranscriptLine,
    delivered: bool,
) -> Result<(), StateError> {
    tx.prepare_cached(&format!(
        "INSERT INTO transcript_lines ({LINE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (connector, conversation, day, item_id) DO NOTHING"
    ))?
    .execute(params![
        connector,
        line.conversation_id,
        line.day,
        line.item_id,
        line.sent_at_ms,
        line.mailboxes.join(&MAILBOX_SEPARATOR.to_string()),
        line.entry,
        line.part,
        delivered
    ])?;
    Ok(())
}

/// Keeps the page's transcript lines and marks the transcripts it
/// delivered, inside the page's transaction.
pub(super) fn store(
    tx: &Transaction<'_>,
    connector: &str,
    lines: &[TranscriptLine],
    delivered: &[TranscriptPart],
) -> Result<(), StateError> {
    for line in lines {
        insert(tx, connector, line, false)?;
    }
    let mut mark = tx.prepare_cached(
        "UPDATE transcript_lines SET delivered = 1
         WHERE connector = ?1 AND conversation = ?2 AND day = ?3 AND part = ?4",
    )?;
    for part in delivered {
        mark.execute(params![
            connector,
            part.conversation_id,
            part.day,
            part.part
        ])?;
    }
    Ok(())
}
