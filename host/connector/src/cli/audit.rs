//! `connector audit verify` and `connector audit export`: the audit trail
//! of admin actions checked link by link, and written out for auditors.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};

use super::state_args::StateArgs;
use crate::report::audit::{
    BROKEN_TRAIL_ADVICE, TrailCheck, verify_trail, write_audit_csv, write_audit_json,
};
use connector_state::StateStore;

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

fn verify(db: &dyn StateStore) -> Result<ExitCode> {
    match verify_trail(db)? {
        TrailCheck::Intact {
            records,
            last_sha256,
        } => {
            let last = last_sha256.unwrap_or_else(|| "none".to_string());
            writeln!(
                std::io::stdout().lock(),
                "audit trail OK: {records} record(s), each chained to the one before; last SHA-256 {last}"
            )?;
            Ok(ExitCode::SUCCESS)
        }
        TrailCheck::Broken(b) => {
            eprintln!(
                "error: the audit trail is broken at record {seq}: {b}. {BROKEN_TRAIL_ADVICE}",
                seq = b.seq()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn export(db: &dyn StateStore, format: ExportFormat) -> Result<ExitCode> {
    let stdout = std::io::stdout().lock();
    match format {
        ExportFormat::Csv => write_audit_csv(db, stdout)?,
        ExportFormat::Json => write_audit_json(db, stdout)?,
    }
    Ok(ExitCode::SUCCESS)
}
