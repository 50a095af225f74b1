//! `connector audit verify` and `connector audit export`: the audit trail
//! of admin actions checked link by link, and written out for auditors.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};

use super::state_args::StateArgs;
use connector_model::time::iso;
use connector_state::{AuditRecord, ChainVerifier, StateStore};

/// Records read from the state at a time.
const PAGE: usize = 1000;

/// How `connector audit export` writes the trail.
#[derive(Clone, Copy, ValueEnum)]
pub(super) enum ExportFormat {
    /// A header row, then one row per record.
    Csv,
    /// One array of records.
    Json,
}

/// What `connector audit` does.
#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Checks the audit trail's hash chain from its first record to its
    /// last: prints how many records it holds, or names the first record
    /// changed, removed or out of place and exits with 1.
    Verify,
    /// Writes the whole audit trail to stdout, oldest first, with each
    /// record's number and SHA-256s (so that a copy can be checked later).
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
    },
}

/// Runs `connector audit …`.
pub(super) fn audit(state: &StateArgs, command: AuditCommand) -> Result<ExitCode> {
    let db = state.open_db()?;
    match command {
        AuditCommand::Verify => verify(db.as_ref()),
        AuditCommand::Export { format } => export(db.as_ref(), format),
    }
}

/// Calls `each` with every record of the trail, oldest first, a page at a
/// time.
fn each_record(
    db: &dyn StateStore,
    mut each: impl FnMut(&AuditRecord) -> Result<()>,
) -> Result<()> {
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

fn verify(db: &dyn StateStore) -> Result<ExitCode> {
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
    match result {
        Ok(n) => {
            let last = head.map_or_else(|| "none".to_string(), |h| h.sha256);
            writeln!(
                std::io::stdout().lock(),
                "audit trail OK: {n} record(s), each chained to the one before; last SHA-256 {last}"
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            eprintln!(
                "error: the audit trail is broken at record {seq}: {b}. It was changed outside the connector: keep this state as evidence (copy the state folder, or dump the database), compare it with a backup or an earlier `connector audit export` to see what changed, and tell your security officer; new records still chain on, so the break stays visible",
                seq = b.seq()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The CSV header of an export.
const COLUMNS: [&str; 10] = [
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

fn export(db: &dyn StateStore, format: ExportFormat) -> Result<ExitCode> {
    let stdout = std::io::stdout();
    match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(stdout.lock());
            w.write_record(COLUMNS)?;
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
            w.flush()?;
        }
        ExportFormat::Json => {
            // An array written a record at a time: the trail may be long.
            let mut out = std::io::BufWriter::new(stdout.lock());
            out.write_all(b"[")?;
            let mut first = true;
            each_record(db, |r| {
                out.write_all(if first { b"\n  " } else { b",\n  " })?;
                first = false;
                serde_json::to_writer(&mut out, r)?;
                Ok(())
            })?;
            out.write_all(if first { b"]\n" } else { b"\n]\n" })?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
