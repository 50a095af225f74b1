//! `connector`: runs source plugins into mailboxes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use connector_host::config::{ConnectorConfig, PluginManifest, manifest};
use connector_host::pipeline::{Host, RunOptions, now_ms};
use connector_host::state::RunOutcome;

/// Archives third-party communications into mailboxes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Folder for the state database and the compiled-plugin cache.
    #[arg(
        long,
        global = true,
        env = "CONNECTOR_STATE_DIR",
        default_value = "state"
    )]
    state_dir: PathBuf,
    /// Log filter, e.g. `info`, `debug`, `connector_host=debug,plugin=trace`.
    #[arg(long, global = true, env = "CONNECTOR_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs connectors: once with --once, else on their schedules.
    Run {
        /// Run each connector once and exit.
        #[arg(long)]
        once: bool,
        /// Stop each connector after this many pages.
        #[arg(long)]
        max_pages: Option<u64>,
        /// Connector configuration files.
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Checks connector files, their plugins' manifests and configurations.
    Validate {
        /// Connector configuration files.
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Shows each connector's last runs, deliveries and quarantine.
    Status {
        /// Connector configuration files.
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Writes an installable copy of a plugin: its wasm and its manifest with
    /// the wasm's SHA-256 pinned.
    Package {
        /// The plugin's source manifest.
        manifest: PathBuf,
        /// The built `.wasm` component.
        #[arg(long)]
        wasm: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            once,
            max_pages,
            configs,
        } => run(&cli.state_dir, &configs, once, max_pages),
        Command::Validate { configs } => validate(&cli.state_dir, &configs),
        Command::Status { configs } => status(&cli.state_dir, &configs),
        Command::Package {
            manifest: source,
            wasm,
            out,
        } => {
            let written = manifest::package(&source, &wasm, &out)?;
            println!("{}", written.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_all(configs: &[PathBuf]) -> Result<Vec<ConnectorConfig>> {
    configs
        .iter()
        .map(|p| ConnectorConfig::load(p).map_err(anyhow::Error::from))
        .collect()
}

fn run(
    state_dir: &Path,
    configs: &[PathBuf],
    once: bool,
    max_pages: Option<u64>,
) -> Result<ExitCode> {
    let connectors = load_all(configs)?;
    let host = Host::open(state_dir).context("opening the state folder")?;
    let options = RunOptions { max_pages };
    let mut next_due: Vec<i64> = vec![0; connectors.len()];
    loop {
        let mut failed = false;
        for (config, due) in connectors.iter().zip(next_due.iter_mut()) {
            if now_ms() < *due {
                continue;
            }
            match host.run_once(config, &options) {
                Ok(s) => println!(
                    "{}: {:?} — {} page(s), {} message(s) from source, {} for import, {} imported, {} duplicate(s) skipped, {} quarantined, {} failed",
                    config.id,
                    s.outcome,
                    s.counts.pages,
                    s.counts.items_from_source,
                    s.counts.items_for_import,
                    s.counts.imported,
                    s.counts.skipped_duplicates,
                    s.counts.quarantined,
                    s.counts.failed
                ),
                Err(e) => {
                    failed = true;
                    eprintln!("{}: run failed: {e}", config.id);
                }
            }
            *due = now_ms() + config.schedule.as_millis() as i64;
        }
        if once {
            return Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        let wake = next_due.iter().min().copied().unwrap_or(0);
        let pause = (wake - now_ms()).max(1000) as u64;
        std::thread::sleep(std::time::Duration::from_millis(pause));
    }
}

fn validate(state_dir: &Path, configs: &[PathBuf]) -> Result<ExitCode> {
    let host = Host::open(state_dir).context("opening the state folder")?;
    let mut ok = true;
    for path in configs {
        let result = ConnectorConfig::load(path)
            .map_err(anyhow::Error::from)
            .and_then(|c| host.validate(&c).map_err(anyhow::Error::from));
        match result {
            Ok(m) => println!("{}: ok (plugin {} {})", path.display(), m.id, m.version),
            Err(e) => {
                ok = false;
                eprintln!("{}: {e:#}", path.display());
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn status(state_dir: &Path, configs: &[PathBuf]) -> Result<ExitCode> {
    let connectors = load_all(configs)?;
    let host = Host::open(state_dir).context("opening the state folder")?;
    let db = host.db();
    for c in &connectors {
        let plugin = PluginManifest::load(&c.plugin)
            .map(|m| format!("{} {}", m.id, m.version))
            .unwrap_or_else(|e| format!("manifest unreadable: {e}"));
        println!("connector {} (plugin {plugin})", c.id);
        println!("  delivered: {}", db.delivered_count(&c.id)?);
        println!("  quarantined: {}", db.quarantine(&c.id)?.len());
        println!(
            "  checkpoint: {}",
            db.checkpoint(&c.id)?.map_or(
                "none (next run starts from the beginning)".to_string(),
                |c| format!("{} bytes", c.len())
            )
        );
        let runs = db.runs(&c.id, 5)?;
        if runs.is_empty() {
            println!("  no runs yet");
        }
        for r in runs {
            println!(
                "  run {}: started {} ms, {}, imported {}, duplicates {}, quarantined {}, failed {}{}",
                r.id.0,
                r.started_at_ms,
                match r.outcome {
                    Some(RunOutcome::Succeeded) => "succeeded",
                    Some(RunOutcome::Failed) => "failed",
                    Some(RunOutcome::Interrupted) => "stopped early",
                    None => "running or crashed",
                },
                r.counts.imported,
                r.counts.skipped_duplicates,
                r.counts.quarantined,
                r.counts.failed,
                r.error
                    .map(|e| format!("\n    error: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
