//! The `transcript_lines` table: each message a conversation's day holds
//! for its transcripts, with the part that carries it once sealed and
//! whether that part was delivered.

use postgres::Transaction;

use crate::{Fail, PostgresStore, Session};
use connector_state::{
    StateError, TranscriptBacklog, TranscriptDays, TranscriptLine, TranscriptPart,
};

impl TranscriptDays for PostgresStore {
    fn days_to_seal(
        &self,
        connector: &str,
        last_closed_day: &str,
    ) -> Result<Vec<(String, String)>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                "SELECT DISTINCT conversation, day FROM transcript_lines
                 WHERE connector = $1 AND part IS NULL AND day <= $2
                 ORDER BY conversation, day",
                &[&connector, &last_closed_day],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn seal_transcript(
        &mut self,
        connector: &str,
        conversation: &str,
        day: &str,
    ) -> Result<Option<TranscriptPart>, StateError> {
        self.with(|c| {
            c.transaction(|tx| {
                let rows = tx.query(
                    "WITH next AS (
                         SELECT coalesce(max(part) + 1, 0) AS part FROM transcript_lines
                         WHERE connector = $1 AND conversation = $2 AND day = $3)
                     UPDATE transcript_lines t SET part = next.part FROM next
                     WHERE t.connector = $1 AND t.conversation = $2 AND t.day = $3
                       AND t.part IS NULL
                     RETURNING next.part",
                    &[&connector, &conversation, &day],
                )?;
                Ok(rows.first().map(|r| TranscriptPart {
                    conversation_id: conversation.to_string(),
                    day: day.to_string(),
                    part: r.get::<_, i32>(0) as u32,
                }))
            })
        })
    }

    fn undelivered_transcripts(&self, connector: &str) -> Result<Vec<TranscriptPart>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                "SELECT DISTINCT conversation, day, part FROM transcript_lines
                 WHERE connector = $1 AND part IS NOT NULL AND NOT delivered
                 ORDER BY conversation, day, part",
                &[&connector],
            )?;
            Ok(rows
                .iter()
                .map(|r| TranscriptPart {
                    conversation_id: r.get(0),
                    day: r.get(1),
                    part: r.get::<_, i32>(2) as u32,
                })
                .collect())
        })
    }

    fn transcript_backlog(&self, connector: &str) -> Result<TranscriptBacklog, StateError> {
        self.with(|c| {
            let row = c.session().query_one(
                "SELECT
                     (SELECT count(*) FROM (SELECT DISTINCT conversation, day FROM transcript_lines
                      WHERE connector = $1 AND part IS NULL) AS o),
                     (SELECT count(*) FROM (SELECT DISTINCT conversation, day, part
                      FROM transcript_lines
                      WHERE connector = $1 AND part IS NOT NULL AND NOT delivered) AS u)",
                &[&connector],
            )?;
            Ok(TranscriptBacklog {
                open_days: row.get::<_, i64>(0).unsigned_abs(),
                unsent: row.get::<_, i64>(1).unsigned_abs(),
            })
        })
    }

    fn transcript_lines(
        &self,
        connector: &str,
        part: &TranscriptPart,
    ) -> Result<Vec<TranscriptLine>, StateError> {
        let number = part.part as i32;
        self.with(|c| {
            let rows = c.session().query(
                "SELECT connector, conversation, day, item_id, sent_at_ms, mailboxes, entry, part,
                     delivered
                 FROM transcript_lines
                 WHERE connector = $1 AND conversation = $2 AND day = $3 AND part = $4
                 ORDER BY sent_at_ms, item_id",
                &[&connector, &part.conversation_id, &part.day, &number],
            )?;
            Ok(rows.iter().map(|r| line_of_row(r).1).collect())
        })
    }
}

/// The columns [`line_of_row`] reads, in its order.
pub(crate) const LINE_COLUMNS: &str =
    "connector, conversation, day, item_id, sent_at_ms, mailboxes, entry, part, delivered";

/// The connector, the line and whether its part was delivered, from a row
/// of [`LINE_COLUMNS`].
pub(crate) fn line_of_row(r: &postgres::Row) -> (String, TranscriptLine, bool) {
    let line = TranscriptLine {
        conversation_id: r.get(1),
        day: r.get(2),
        item_id: r.get(3),
        sent_at_ms: r.get(4),
        mailboxes: r.get(5),
        entry: r.get(6),
        part: r.get::<_, Option<i32>>(7).map(|p| p as u32),
    };
    (r.get(0), line, r.get(8))
}

/// Writes a line with its part and delivery (a line already kept stays as
/// it is).
pub(crate) fn insert(
    tx: &mut Session<'_, Transaction<'_>>,
    connector: &str,
    line: &TranscriptLine,
    delivered: bool,
) -> Result<(), Fail> {
    let part = line.part.map(|p| p as i32);
    tx.execute(
        "INSERT INTO transcript_lines (connector, conversation, day, item_id, sent_at_ms,
             mailboxes, entry, part, delivered)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (connector, conversation, day, item_id) DO NOTHING",
        &[
            &connector,
            &line.conversation_id,
            &line.day,
            &line.item_id,
            &line.sent_at_ms,
            &line.mailboxes,
            &line.entry,
            &part,
            &delivered,
        ],
    )?;
    Ok(())
}

/// Keeps the page's transcript lines and marks the transcripts it
/// delivered, inside the page's transaction.
pub(crate) fn store(
    tx: &mut Session<'_, Transaction<'_>>,
    connector: &str,
    lines: &[TranscriptLine],
    delivered: &[TranscriptPart],
) -> Result<(), Fail> {
    for line in lines {
        insert(tx, connector, line, false)?;
    }
    for part in delivered {
        let number = part.part as i32;
        tx.execute(
            "UPDATE transcript_lines SET delivered = true
             WHERE connector = $1 AND conversation = $2 AND day = $3 AND part = $4",
            &[&connector, &part.conversation_id, &part.day, &number],
        )?;
    }
    Ok(())
}
