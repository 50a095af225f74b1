//! `connector console account`: adds a local account to the console's
//! accounts file, or sets its password and roles.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use connector_console::{LocalAccounts, Role};

#[derive(Subcommand)]
pub(super) enum ConsoleAction {
    /// Adds an account to an accounts file (or sets the password and roles
    /// of the one named so); reads the password from standard input.
    Account {
        /// The name typed at sign-in.
        name: String,
        /// The accounts file the console file names (created if missing).
        #[arg(long)]
        accounts: PathBuf,
        /// viewer, connector-admin or auditor; repeat for several.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
    },
}

fn parse_role(name: &str) -> Result<Role, String> {
    Role::parse(name)
        .ok_or_else(|| format!("`{name}` is not a role; use viewer, connector-admin or auditor"))
}

pub(super) fn run(action: ConsoleAction) -> Result<ExitCode> {
    match action {
        ConsoleAction::Account {
            name,
            accounts,
            roles,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.chars().count() < 12 {
                bail!(
                    "the password is shorter than 12 characters; give a longer one on standard input"
                );
            }
            let mut file = LocalAccounts::load(&accounts)?;
            file.set(&name, password, roles)?;
            file.save(&accounts)?;
            writeln!(
                std::io::stdout().lock(),
                "account {name} saved in {}",
                accounts.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
