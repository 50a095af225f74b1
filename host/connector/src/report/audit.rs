//! The audit trail as auditors get it: checked link by link from its first
//! record to its head ([`verify_trail`]), and written out as CSV or JSON
//! with each record's number and SHA-256s, so that a copy can be checked
//! later. The CLI and the console both use these.

use std::io::Write;

use connector_model::time::iso;
use connector_state::{AuditRecord, ChainBreak, ChainVerifier, StateStore};

use super::ReportError;

/// Records read from the state at a time.
const PAGE: usize = 1000;

/// The CSV header of an export.
pub const AUDIT_COLUMNS: [&str; 10] = [
    "Seq",
    "Time",
    "Time (ms)",
    "Actor",
    "Source",
    "Action",
    "Target",
    "Detail",
    "Previous SHA-256",
    "SHA-256",
];

/// What to do when the chain is broken, after the break itself.
pub const BROKEN_TRAIL_ADVICE: &str = "It was changed outside the connector: keep this state as evidence (copy the state folder, or dump the database), compare it with a backup or an earlier `connector audit export` to see what changed, and tell your security officer; new records still chain on, so the break stays visible";

/// Calls `each` with every record of the trail, oldest first, a page at a
/// time.
fn each_record(
    db: &dyn StateStore,
    mut each: impl FnMut(&AuditRecord) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let mut after = 0;
    loop {
        let page = db.audit_records(after, PAGE)?;
        for record in &page {
            each(record)?;
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.seq,
            _ => return Ok(()),
        }
    }
}

/// How a check of the whole trail came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrailCheck {
    /// Every record chains to the one before and the head matches the
    /// last: how many records, and the last SHA-256 (`None` when empty).
    Intact {
        /// Records checked.
        records: u64,
        /// The head's SHA-256.
        last_sha256: Option<String>,
    },
    /// The first break found.
    Broken(ChainBreak),
}

/// Checks the whole trail against its head.
pub fn verify_trail(db: &dyn StateStore) -> Result<TrailCheck, ReportError> {
    let mut verifier = ChainVerifier::default();
    let mut broken = None;
    each_record(db, |record| {
        if broken.is_none()
            && let Err(b) = verifier.check(record)
        {
            broken = Some(b);
        }
        Ok(())
    })?;
    let head = db.audit_head()?;
    let result = match broken {
        Some(b) => Err(b),
        None => verifier.finish(head.as_ref()),
    };
    Ok(match result {
        Ok(records) => TrailCheck::Intact {
            records,
            last_sha256: head.map(|h| h.sha256),
        },
        Err(b) => TrailCheck::Broken(b),
    })
}

/// Writes the whole trail as CSV, oldest first.
pub fn write_audit_csv(db: &dyn StateStore, out: impl Write) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(AUDIT_COLUMNS)?;
    each_record(db, |r| {
        let e = &r.entry;
        w.write_record([
            r.seq.to_string().as_str(),
            &iso(e.at_ms),
            &e.at_ms.to_string(),
            &e.actor,
            &e.source,
            e.action.as_str(),
            &e.target,
            &e.detail,
            &r.prev_sha256,
            &r.sha256,
        ])?;
        Ok(())
    })?;
    w.flush().map_err(ReportError::Write)
}

/// Writes the whole trail as one JSON array, oldest first, a record at a
/// time (the trail may be long).
pub fn write_audit_json(db: &dyn StateStore, out: impl Write) -> Result<(), ReportError> {
    let mut out = std::io::BufWriter::new(out);
    out.write_all(b"[").map_err(ReportError::Write)?;
    let mut first = true;
    each_record(db, |r| {
        out.write_all(if first { b"\n  " } else { b",\n  " })
            .map_err(ReportError::Write)?;
        first = false;
        serde_json::to_writer(&mut out, r).map_err(|e| ReportError::Write(e.into()))
    })?;
    out.write_all(if first { b"]\n" } else { b"\n]\n" })
        .map_err(ReportError::Write)?;
    out.flush().map_err(ReportError::Write)
}
