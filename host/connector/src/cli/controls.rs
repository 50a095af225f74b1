//! `connector pause`, `connector resume` and `connector run-now`: what an
//! admin asks of a connector's runs, honoured by whichever daemon of the
//! fleet runs it, each recorded in the audit trail as done by
//! `cli:<OS user>` from `local`.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::state_args::StateArgs;
use connector_model::time::{iso, now_ms};
use connector_state::{AuditAction, AuditEntry, StateStore};

/// Who runs the command, as the audit trail names them: `cli:` and the
/// operating system's user (`$USER`, else `$LOGNAME`, else `uid-N`, the
/// owner of this process's `/proc` entry: its effective user id).
pub(super) fn cli_actor() -> String {
    use std::os::unix::fs::MetadataExt as _;
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| match std::fs::metadata("/proc/self") {
            Ok(m) => format!("uid-{}", m.uid()),
            Err(_) => "unknown".to_string(),
        });
    format!("cli:{user}")
}

/// Records what the command did; the action itself is already done.
fn record(
    db: &mut dyn StateStore,
    action: AuditAction,
    connector: &str,
    detail: String,
) -> Result<()> {
    let entry = AuditEntry {
        at_ms: now_ms(),
        actor: cli_actor(),
        source: "local".to_string(),
        action,
        target: connector.to_string(),
        detail,
    };
    db.append_audit(&entry).with_context(|| {
        format!(
            "connector `{connector}` was {action}, but the audit trail could not record it; fix the cause and record it by hand in your change log"
        )
    })?;
    Ok(())
}

/// Warns when the state has never seen `connector` (a typo, most likely).
fn warn_if_unknown(db: &dyn StateStore, connector: &str) -> Result<()> {
    if !db.connectors()?.iter().any(|c| c == connector) {
        eprintln!(
            "warning: connector `{connector}` has never run on this state; check its id (the `id` of its connector file, as `connector status` shows it)"
        );
    }
    Ok(())
}

/// `connector pause ID`.
pub(super) fn pause(state: &StateArgs, connector: &str) -> Result<ExitCode> {
    let mut db = state.open_db_creating()?;
    warn_if_unknown(db.as_ref(), connector)?;
    if let Some(p) = db.paused(connector)? {
        writeln!(
            std::io::stdout().lock(),
            "connector `{connector}` is already paused (by {} at {}); `connector resume {connector}` lets it run again",
            p.by,
            iso(p.at_ms)
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let p = db.pause(connector, &cli_actor())?;
    record(db.as_mut(), AuditAction::Paused, connector, String::new())?;
    writeln!(
        std::io::stdout().lock(),
        "connector `{connector}` paused by {} at {}: no daemon starts a run of it (a run under way stops after its current page) until `connector resume {connector}`",
        p.by,
        iso(p.at_ms)
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `connector resume ID`.
pub(super) fn resume(state: &StateArgs, connector: &str) -> Result<ExitCode> {
    let mut db = state.open_db_creating()?;
    let Some(p) = db.resume(connector)? else {
        writeln!(
            std::io::stdout().lock(),
            "connector `{connector}` is not paused; nothing to resume"
        )?;
        return Ok(ExitCode::SUCCESS);
    };
    let detail = format!("paused by {} at {}", p.by, iso(p.at_ms));
    record(db.as_mut(), AuditAction::Resumed, connector, detail)?;
    writeln!(
        std::io::stdout().lock(),
        "connector `{connector}` resumed (it was paused by {} at {}): it runs on its schedule again, at once if a run came due meanwhile",
        p.by,
        iso(p.at_ms)
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `connector run-now ID`.
pub(super) fn run_now(state: &StateArgs, connector: &str) -> Result<ExitCode> {
    let mut db = state.open_db_creating()?;
    warn_if_unknown(db.as_ref(), connector)?;
    if let Some(p) = db.paused(connector)? {
        bail!(
            "connector `{connector}` is paused (by {} at {}), so it would not run; `connector resume {connector}` first, then ask again",
            p.by,
            iso(p.at_ms)
        );
    }
    let r = db.request_run(connector, &cli_actor())?;
    record(
        db.as_mut(),
        AuditAction::RunStarted,
        connector,
        "run requested".to_string(),
    )?;
    writeln!(
        std::io::stdout().lock(),
        "run of connector `{connector}` requested by {} at {}: the daemon that runs it starts the run within a second (none does until a daemon with its connector file is running)",
        r.by,
        iso(r.at_ms)
    )?;
    Ok(ExitCode::SUCCESS)
}
