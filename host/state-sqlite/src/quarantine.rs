//! The `quarantine` table. Emails are the last column, so that big ones
//! stream into and out of blobs.

use connector_email::{DEFAULT_SPILL_ABOVE, Email};
use rusqlite::blob::ZeroBlob;
use rusqlite::{MAIN_DB, OptionalExtension, Transaction, params};

use crate::{SqliteStore, to_u64};
use connector_state::QuarantineStore;
use connector_state::StateError;
use connector_state::encoding;
use connector_state::{QuarantineEntry, RunId};

impl QuarantineStore for SqliteStore {
    fn quarantine(&self, connector: &str) -> Result<Vec<QuarantineEntry>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT item_id, message_id, rowid, length(email), sent_at_ms, unmapped, reason,
                source_sha256
             FROM quarantine WHERE connector = ?1 ORDER BY sent_at_ms, item_id",
        )?;
        let rows = stmt.query_map([connector], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (item_id, message_id, row, len, sent_at_ms, unmapped, reason, source_sha256) = row?;
            let unmapped = encoding::parse_unmapped(&unmapped)?;
            let email = read_email(&self.conn, row, len, &message_id, sent_at_ms)?;
            out.push(QuarantineEntry {
                email,
                item_id,
                message_id,
                sent_at_ms,
                unmapped,
                reason,
                source_sha256,
            });
        }
        Ok(out)
    }

    fn quarantine_count(&self, connector: &str) -> Result<u64, StateError> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM quarantine WHERE connector = ?1",
            [connector],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }

    fn is_quarantined(&self, connector: &str, item_id: &str) -> Result<bool, StateError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM quarantine WHERE connector = ?1 AND item_id = ?2",
                params![connector, item_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

/// The quarantined email in the row `row` of `len` bytes: in memory, or
/// copied to a spool file in the temporary folder when it is big.
pub(super) fn read_email(
    conn: &rusqlite::Connection,
    row: i64,
    len: i64,
    message_id: &str,
    sent_at_ms: i64,
) -> Result<Email, StateError> {
    let mut blob = conn.blob_open(MAIN_DB, c"quarantine", c"email", row, true)?;
    Ok(if len as u64 > DEFAULT_SPILL_ABOVE as u64 {
        Email::spool_from(message_id.to_string(), &mut blob, &std::env::temp_dir(), sent_at_ms)
            .map_err(|e| {
                StateError::Io(format!(
                    "cannot copy quarantined email {message_id} to a spool file in {}: {e}; check free space there",
                    std::env::temp_dir().display()
                ))
            })?
    } else {
        let mut bytes = Vec::with_capacity(len as usize);
        std::io::Read::read_to_end(&mut blob, &mut bytes).map_err(|e| {
            StateError::Io(format!("cannot read quarantined email {message_id}: {e}"))
        })?;
        Email::from_bytes(message_id.to_string(), bytes, sent_at_ms)
    })
}

/// Quarantines the page's messages, inside its transaction (replacing
/// earlier records of the same items); `unmapped` is
/// [`connector_state::encoding::unmapped_lists`] of `entries`.
pub(super) fn insert(
    tx: &Transaction<'_>,
    connector: &str,
    run: RunId,
    entries: &[QuarantineEntry],
    unmapped: &[String],
) -> Result<(), StateError> {
    let mut quarantine = tx.prepare_cached(
        "INSERT OR REPLACE INTO quarantine (connector, item_id, message_id, email,
            sent_at_ms, unmapped, reason, run_id, source_sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (q, unmapped) in entries.iter().zip(unmapped) {
        // A spooled (big) email is streamed into a blob of its size.
        let email: Box<dyn rusqlite::ToSql> = match q.email.in_memory() {
            Some(bytes) => Box::new(bytes),
            None => Box::new(ZeroBlob(i32::try_from(q.email.len()).map_err(|_| {
                StateError::Io(format!(
                    "email {} is {} bytes, too big for the quarantine (at most 2 GiB)",
                    q.message_id,
                    q.email.len()
                ))
            })?)),
        };
        quarantine.execute(params![
            connector,
            q.item_id,
            q.message_id,
            email,
            q.sent_at_ms,
            unmapped,
            q.reason,
            run.0,
            q.source_sha256
        ])?;
        if q.email.in_memory().is_none() {
            let row = tx.last_insert_rowid();
            let mut blob = tx.blob_open(MAIN_DB, c"quarantine", c"email", row, false)?;
            q.email.write_to(&mut blob).map_err(|e| {
                StateError::Io(format!(
                    "cannot copy email {} into the quarantine: {e}",
                    q.message_id
                ))
            })?;
        }
    }
    Ok(())
}

/// Removes items now delivered from the quarantine, inside the page's
/// transaction.
pub(super) fn release(
    tx: &Transaction<'_>,
    connector: &str,
    released: &[String],
) -> Result<(), StateError> {
    let mut release =
        tx.prepare_cached("DELETE FROM quarantine WHERE connector = ?1 AND item_id = ?2")?;
    for item_id in released {
        release.execute(params![connector, item_id])?;
    }
    Ok(())
}
