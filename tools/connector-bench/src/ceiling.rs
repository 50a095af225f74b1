//! `mailbox-ceiling`: throughput where the mailbox service is the limit.
//! The Graph test server holds `--mailboxes` mailboxes (100), answers each
//! request after `--latency-ms` (250) and refuses a fifth concurrent
//! request per mailbox, as Exchange Online does; so no client can create
//! more than mailboxes × 4 / latency emails per second (1,600/s): the
//! ceiling. A chat export of `--messages` messages, each for one mailbox
//! (round robin), is archived by the chat-export plugin through the host
//! into Graph, first by one worker, then by two workers over one
//! PostgreSQL (two connectors, half the messages each, into the same
//! mailboxes, sharing each mailbox's slots through the state). Prints
//! emails per second, the ratio to the ceiling, and the share of requests
//! answered 429.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use connector_e2e::chat_fixture::{ChatFixture, Paging, connector_file};
use connector_e2e::graph_server::{GraphOptions, GraphServer};
use connector_e2e::postgres::{Postgres, PostgresOptions};
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, HostSettings, RunOptions, StateLocation};
use connector_state::{DEFAULT_LEASE, RunOutcome};
use connector_state_postgres::PostgresConfig;
use serde_json::json;

const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const SECRET: &str = "bench-secret";
/// Messages per plugin page (the host delivers up to 4 pages together).
const PAGE: u32 = 1_000;

/// What a run is set up with.
pub struct Ceiling {
    pub messages: usize,
    pub mailboxes: usize,
    pub latency: Duration,
}

pub fn mailbox_ceiling(tmp: tempfile::TempDir, setup: &Ceiling) -> Result<()> {
    let ceiling = setup.mailboxes as f64 * 4.0 / setup.latency.as_secs_f64();
    println!(
        "mailbox ceiling: {} mailboxes × 4 in flight / {} ms = {ceiling:.0} emails/s",
        setup.mailboxes,
        setup.latency.as_millis()
    );
    let manifest = connector_e2e::install_chat_export(&tmp.path().join("plugin"));
    let postgres = Postgres::start(PostgresOptions::default())?;
    for workers in [1, 2] {
        let server = GraphServer::start(GraphOptions {
            latency: setup.latency,
            ..GraphOptions::new(
                &users(setup.mailboxes)
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                CLIENT_ID,
                SECRET,
            )
        });
        let db = format!("ceiling{workers}");
        postgres.create_database(&db)?;
        let state = StateLocation::Postgres(Box::new(
            PostgresConfig::parse(&postgres.url(&db))?.with_password(postgres.password()),
        ));
        let run_dir = tmp.path().join(format!("workers-{workers}"));
        let mut runs = Vec::new();
        for w in 0..workers {
            let dir = run_dir.join(format!("worker-{w}"));
            std::fs::create_dir_all(&dir)?;
            let share = setup.messages / workers;
            let config = connector(&dir, &manifest, &server, w, share, setup.mailboxes)?;
            let settings = HostSettings {
                state: Some(state.clone()),
                lease_time: DEFAULT_LEASE,
            };
            let host = Host::open_with(&dir.join("state"), &settings)?;
            host.validate(&config)?;
            runs.push((host, config));
        }
        let started = Instant::now();
        let imported: Vec<Result<u64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = runs
                .iter()
                .map(|(host, config)| {
                    scope.spawn(move || -> Result<u64> {
                        let summary = host.run_once(config, &RunOptions::default())?;
                        if summary.outcome != RunOutcome::Succeeded {
                            bail!("the run ended {:?}: {:?}", summary.outcome, summary.counts);
                        }
                        Ok(summary.counts.imported)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a worker thread"))
                .collect()
        });
        let elapsed = started.elapsed();
        let emails: u64 = imported.into_iter().sum::<Result<u64>>()?;
        let rate = emails as f64 / elapsed.as_secs_f64();
        let counts = server.counts();
        let refused = counts.throttled + counts.over_limits;
        println!(
            "{workers} worker(s): {emails} emails into {} mailboxes in {:.2}s = {rate:.0} emails/s = {:.1}% of the ceiling; {} Graph requests, {refused} answered 429 ({:.2}%), most in flight for one mailbox {}, {} rule violations",
            setup.mailboxes,
            elapsed.as_secs_f64(),
            100.0 * rate / ceiling,
            counts.requests,
            100.0 * refused as f64 / counts.requests.max(1) as f64,
            server.max_in_flight_per_mailbox(),
            server.violations().len(),
        );
        let stored: usize = users(setup.mailboxes)
            .iter()
            .map(|u| server.messages(u).len())
            .sum();
        if stored as u64 != emails {
            bail!("the mailboxes hold {stored} emails, the runs imported {emails}");
        }
    }
    Ok(())
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i:03}@example.test")).collect()
}

/// Worker `w`'s connector: a chat export of `messages` messages, message
/// `i` in the conversation of mailbox `i % mailboxes` alone.
fn connector(
    dir: &Path,
    manifest: &Path,
    server: &GraphServer,
    w: usize,
    messages: usize,
    mailboxes: usize,
) -> Result<ConnectorConfig> {
    let export = dir.join("export");
    std::fs::create_dir_all(&export)?;
    let users = users(mailboxes);
    let person = |email: &str| json!({"id": format!("u-{email}"), "name": email, "email": email});
    let mut lines = Vec::with_capacity(messages + mailboxes);
    for (m, user) in users.iter().enumerate() {
        lines.push(
            json!({"type": "conversation", "id": format!("c{m}"), "kind": "room",
            "name": format!("Desk {m}"), "participants": [person(user)]}),
        );
    }
    for i in 0..messages {
        let m = i % mailboxes;
        lines.push(json!({"type": "message", "id": format!("w{w}-{i:07}"),
            "conversation": format!("c{m}"), "sender": person(&users[m]),
            "sent_at": 1_767_000_000_000i64 + i as i64,
            "text": format!("Message {i} of worker {w}: the desk's daily note.")}));
    }
    let text: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    std::fs::write(export.join("chat.jsonl"), text)?;
    let fixture = ChatFixture {
        manifest: manifest.to_path_buf(),
        export,
        expected: Default::default(),
        attachments: Default::default(),
        texts: Default::default(),
        senders: Default::default(),
    };
    let sink = format!(
        "[sink]\nkind = \"graph\"\ntenant = \"contoso.example\"\nclient-id = \"{CLIENT_ID}\"\nclient-secret-secret = \"graph-client-secret\"\ngraph-url = \"{}\"\nlogin-url = \"{}\"\n",
        server.graph_url(),
        server.login_url()
    );
    let path = connector_file(
        dir,
        &format!("ceiling-{w}"),
        &fixture,
        Paging {
            page_size: PAGE,
            retries: 3,
        },
        &sink,
        &format!("graph-client-secret = \"{SECRET}\"\n"),
    );
    ConnectorConfig::load(&path).with_context(|| format!("loading {}", path.display()))
}
