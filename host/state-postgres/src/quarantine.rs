//! The `quarantine` table. An email held in memory is stored in its row; a
//! spooled (big) one is streamed into `quarantine_chunks` and, when read
//! back, out of them into a spool file, so it is never held in memory
//! whole.

use std::io::{self, Read, Write};

use connector_email::{DEFAULT_SPILL_ABOVE, Email};
use postgres::ToStatement;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{RowIter, Transaction};

use crate::conversations::last_of_each;
use crate::{Fail, PostgresStore, Session, corrupt, to_i64, to_u64};
use connector_state::encoding;
use connector_state::{QuarantineEntry, QuarantineStore, RunId, StateError};

/// Bytes per stored chunk of a big email.
const CHUNK: usize = 1024 * 1024;

pub(crate) const CHUNKS_OF_ITEM: &str = "SELECT data FROM quarantine_chunks
     WHERE connector = $1 AND item_id = $2 ORDER BY seq";

impl QuarantineStore for PostgresStore {
    fn quarantine(&self, connector: &str) -> Result<Vec<QuarantineEntry>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                "SELECT item_id, message_id, email_len, sent_at_ms, unmapped::text, reason,
                    source_sha256, email
                 FROM quarantine WHERE connector = $1 ORDER BY sent_at_ms, item_id",
                &[&connector],
            )?;
            let chunks = c.statements.get(&mut c.client, CHUNKS_OF_ITEM)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let item_id: String = row.get(0);
                let message_id: String = row.get(1);
                let sent_at_ms: i64 = row.get(3);
                let unmapped = encoding::parse_unmapped(row.get::<_, &str>(4))?;
                let email = read_email(
                    &mut c.client,
                    &chunks,
                    (connector, &item_id),
                    &message_id,
                    sent_at_ms,
                    to_u64(row.get(2)),
                    row.get(7),
                )?;
                out.push(QuarantineEntry {
                    item_id,
                    message_id,
                    email,
                    sent_at_ms,
                    unmapped,
                    reason: row.get(5),
                    source_sha256: row.get(6),
                });
            }
            Ok(out)
        })
    }

    fn quarantine_count(&self, connector: &str) -> Result<u64, StateError> {
        self.with(|c| {
            let n: i64 = c
                .session()
                .query_one(
                    "SELECT COUNT(*) FROM quarantine WHERE connector = $1",
                    &[&connector],
                )?
                .get(0);
            Ok(to_u64(n))
        })
    }

    fn is_quarantined(&self, connector: &str, item_id: &str) -> Result<bool, StateError> {
        self.with(|c| {
            Ok(c.session()
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM quarantine WHERE connector = $1 AND item_id = $2)",
                    &[&connector, &item_id],
                )?
                .get(0))
        })
    }
}

/// A quarantined email read back: from its row (`in_row`), spooled when
/// big, or streamed out of its chunks (`chunks`, the [`CHUNKS_OF_ITEM`]
/// query or its prepared statement) into a spool file; checked against its
/// stored length.
pub(crate) fn read_email<S: ToStatement + ?Sized>(
    client: &mut impl postgres::GenericClient,
    chunks: &S,
    (connector, item_id): (&str, &str),
    message_id: &str,
    sent_at_ms: i64,
    len: u64,
    in_row: Option<Vec<u8>>,
) -> Result<Email, Fail> {
    let spool = |reader: &mut dyn Read| {
        Email::spool_from(
            message_id.to_string(),
            &mut { reader },
            &std::env::temp_dir(),
            sent_at_ms,
        )
        .map_err(|e| spool_error(message_id, e))
    };
    let email = match in_row {
        Some(bytes) if bytes.len() > DEFAULT_SPILL_ABOVE => spool(&mut &bytes[..])?,
        Some(bytes) => Email::from_bytes(message_id.to_string(), bytes, sent_at_ms),
        None => {
            let params: [&(dyn ToSql + Sync); 2] = [&connector, &item_id];
            let mut reader = ChunkReader {
                rows: client.query_raw(chunks, params)?,
                chunk: Vec::new(),
                at: 0,
                error: None,
            };
            let email = spool(&mut reader);
            if let Some(e) = reader.error {
                return Err(Fail::Pg(e));
            }
            email?
        }
    };
    if email.len() != len {
        return Err(corrupt(
            "quarantined email",
            format!("{message_id} has {} bytes of {len}", email.len()),
        ));
    }
    Ok(email)
}

fn spool_error(message_id: &str, e: io::Error) -> Fail {
    Fail::State(StateError::Io(format!(
        "cannot copy quarantined email {message_id} to a spool file in {}: {e}; check free space there",
        std::env::temp_dir().display()
    )))
}

/// A big email's chunks, read in order as one stream.
struct ChunkReader<'a> {
    rows: RowIter<'a>,
    chunk: Vec<u8>,
    at: usize,
    /// The database's error, when reading failed there.
    error: Option<postgres::Error>,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.chunk.len() {
            match self.rows.next() {
                Ok(Some(row)) => {
                    self.chunk = row.get(0);
                    self.at = 0;
                }
                Ok(None) => return Ok(0),
                Err(e) => {
                    let message = e.to_string();
                    self.error = Some(e);
                    return Err(io::Error::other(message));
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Quarantines the page's messages inside its transaction, replacing
/// earlier records of the same items (the last of a page's records of an
/// item wins); `unmapped` is [`connector_state::encoding::unmapped_lists`] of `entries`. Emails in
/// memory go in one statement; a spooled one is streamed in chunks.
pub(crate) fn insert(
    tx: &mut Session<'_, Transaction<'_>>,
    connector: &str,
    run: RunId,
    entries: &[QuarantineEntry],
    unmapped: &[String],
) -> Result<(), Fail> {
    if entries.is_empty() {
        return Ok(());
    }
    let pairs: Vec<(&QuarantineEntry, &String)> = entries.iter().zip(unmapped).collect();
    let kept = last_of_each(&pairs, |(q, _)| q.item_id.as_str());
    let ids: Vec<&str> = kept.iter().map(|(q, _)| q.item_id.as_str()).collect();
    // Replacing: the old rows go, with their chunks.
    tx.execute(
        "DELETE FROM quarantine WHERE connector = $1 AND item_id = ANY($2)",
        &[&connector, &ids],
    )?;
    let (memory, spooled): (Vec<&(&QuarantineEntry, &String)>, Vec<_>) = kept
        .into_iter()
        .partition(|(q, _)| q.email.in_memory().is_some());
    if !memory.is_empty() {
        let text = |f: fn(&QuarantineEntry) -> &str| -> Vec<&str> {
            memory.iter().map(|(q, _)| f(q)).collect()
        };
        tx.execute(
            "INSERT INTO quarantine (connector, item_id, message_id, sent_at_ms, unmapped,
                reason, run_id, source_sha256, email_len, email)
             SELECT $1, u.item_id, u.message_id, u.sent_at_ms, u.unmapped::jsonb, u.reason, $2,
                u.source_sha256, octet_length(u.email), u.email
             FROM UNNEST($3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[],
                         $8::text[], $9::bytea[])
                AS u(item_id, message_id, sent_at_ms, unmapped, reason, source_sha256, email)",
            &[
                &connector,
                &run.0,
                &text(|q| &q.item_id),
                &text(|q| &q.message_id),
                &memory
                    .iter()
                    .map(|(q, _)| q.sent_at_ms)
                    .collect::<Vec<i64>>(),
                &memory
                    .iter()
                    .map(|(_, u)| u.as_str())
                    .collect::<Vec<&str>>(),
                &text(|q| &q.reason),
                &text(|q| &q.source_sha256),
                &memory
                    .iter()
                    .map(|(q, _)| q.email.in_memory().unwrap_or_default())
                    .collect::<Vec<&[u8]>>(),
            ],
        )?;
    }
    for (q, unmapped) in spooled {
        tx.execute(
            "INSERT INTO quarantine (connector, item_id, message_id, sent_at_ms, unmapped,
                reason, run_id, source_sha256, email_len, email)
             VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7, $8, $9, NULL)",
            &[
                &connector,
                &q.item_id,
                &q.message_id,
                &q.sent_at_ms,
                unmapped,
                &q.reason,
                &run.0,
                &q.source_sha256,
                &to_i64(q.email.len()),
            ],
        )?;
        let mut chunks = ChunkWriter {
            tx,
            connector,
            item_id: &q.item_id,
            seq: 0,
            buf: Vec::with_capacity(CHUNK),
            error: None,
        };
        let written = q.email.write_to(&mut chunks).and_then(|()| chunks.flush());
        if let Some(e) = chunks.error {
            return Err(e);
        }
        written.map_err(|e| {
            Fail::State(StateError::Io(format!(
                "cannot copy email {} into the quarantine: {e}",
                q.message_id
            )))
        })?;
    }
    Ok(())
}

/// Writes a big email into `quarantine_chunks`, a chunk at a time.
struct ChunkWriter<'s, 'a, 't> {
    tx: &'s mut Session<'a, Transaction<'t>>,
    connector: &'s str,
    item_id: &'s str,
    seq: i32,
    buf: Vec<u8>,
    /// The database's error, when writing failed there.
    error: Option<Fail>,
}

impl ChunkWriter<'_, '_, '_> {
    fn store(&mut self, len: usize) -> io::Result<()> {
        let result = self.tx.execute(
            "INSERT INTO quarantine_chunks (connector, item_id, seq, data) VALUES ($1, $2, $3, $4)",
            &[&self.connector, &self.item_id, &self.seq, &&self.buf[..len]],
        );
        if let Err(e) = result {
            let message = match &e {
                Fail::Pg(e) => e.to_string(),
                Fail::State(e) => e.to_string(),
            };
            self.error = Some(e);
            return Err(io::Error::other(message));
        }
        self.buf.drain(..len);
        self.seq += 1;
        Ok(())
    }
}

impl Write for ChunkWriter<'_, '_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.store(CHUNK)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.store(self.buf.len())?;
        }
        Ok(())
    }
}

/// Removes items now delivered from the quarantine, inside the page's
/// transaction.
pub(crate) fn release(
    tx: &mut Session<'_, Transaction<'_>>,
    connector: &str,
    released: &[String],
) -> Result<(), Fail> {
    if released.is_empty() {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM quarantine WHERE connector = $1 AND item_id = ANY($2)",
        &[&connector, &released],
    )?;
    Ok(())
}
