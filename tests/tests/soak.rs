//! A long soak, outside CI (`scripts/soak [MINUTES]`, 30 by default): one
//! daemon runs 20 connectors for that long while their sources and
//! mailboxes misbehave: 10 Symphony connectors over a pod that throttles
//! (429 and 400 with `Retry-After`), fails (503), drops connections and
//! expires sessions; 5 chat exports that keep growing, into Dovecot over
//! IMAP, which is restarted every few minutes; 5 more into the Graph test
//! server, which throttles every 40th request. The daemon's resident
//! memory and open file descriptors are sampled all along and must stay
//! flat, and in the end every connector has delivered its truth, each
//! email once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use connector_e2e::daemon_process::DaemonProcess;
use connector_e2e::dovecot::{Dovecot, DovecotOptions, MASTER_PASSWORD, master_sink_table};
use connector_e2e::graph_server::{GraphOptions, GraphServer};
use connector_e2e::ops::*;
use connector_e2e::symphony::symphony_maildir_connector;

const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");
const USERS: [&str; 3] = [
    "alice@example.test",
    "bob@example.test",
    "carol@example.test",
];
const GRAPH_CLIENT_ID: &str = "9d1f4c2a-7b3e-4a5d-8c6f-0e2b1a3d5f7c";
const GRAPH_SECRET: &str = "soak-graph-secret";
const SYMPHONY_FOLDER: &str = ".INBOX.Symphony";
const SYMPHONY_CONNECTORS: usize = 10;
const IMAP_CONNECTORS: usize = 5;
const GRAPH_CONNECTORS: usize = 5;

/// A pod of `messages` messages from `seed`, with `faults`.
fn pod(seed: u64, faults: &str) -> symphony_sim::BlockingSim {
    let mut config = symphony_sim::SimConfig::builder()
        .seed(seed)
        .messages(300)
        .large_attachment_bytes(0)
        .max_small_attachment_bytes(16 * 1024)
        .faults(faults.parse().unwrap())
        .build();
    config.datahose.redeliver_after = Duration::from_millis(200);
    symphony_sim::start_blocking(config).expect("the Symphony simulator starts")
}

fn symphony(dir: &Path, id: &str, base: &str) -> PathBuf {
    symphony_maildir_connector(dir, id, base, "20s", "")
}

/// Replaces a chat connector's Maildir sink by `sink`, its folder by
/// `folder`, and reads secrets from `secrets` (written here).
fn chat_into(setup: &ChatSetup, folder: &str, sink: &str, secrets: &str) {
    let dir = setup.root.join(format!("secrets-{folder}"));
    std::fs::create_dir_all(&dir).unwrap();
    let secrets = connector_e2e::write_secrets(&dir, secrets);
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let (head, _) = text.split_once("[sink]").unwrap();
    let head = head.replacen("folder = \"Chat\"", &format!("folder = \"{folder}\""), 1);
    std::fs::write(
        &setup.config,
        format!(
            "{head}[secrets]\nfrom = \"file\"\npath = \"{}\"\n\n{sink}",
            secrets.display()
        ),
    )
    .unwrap();
}

/// Resident memory (KiB) and open file descriptors of process `pid`.
fn usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

/// Whether `have` holds each of `want`'s Message-IDs once and nothing else;
/// a description of the difference otherwise.
fn differs(
    have: &BTreeMap<String, Vec<String>>,
    want: &BTreeMap<String, BTreeSet<String>>,
) -> Option<String> {
    let have_sets: BTreeMap<&String, BTreeSet<&String>> = have
        .iter()
        .map(|(m, ids)| (m, ids.iter().collect()))
        .collect();
    let duplicated = have
        .iter()
        .any(|(_, ids)| ids.len() != ids.iter().collect::<BTreeSet<_>>().len());
    let want_sets: BTreeMap<&String, BTreeSet<&String>> = want
        .iter()
        .map(|(m, ids)| (m, ids.iter().collect()))
        .collect();
    if duplicated {
        return Some("an email is there twice".into());
    }
    let have_count: usize = have.values().map(Vec::len).sum();
    let want_count: usize = want.values().map(BTreeSet::len).sum();
    (have_sets != want_sets).then(|| format!("{have_count} emails of {want_count}"))
}

fn graph_contents(graph: &GraphServer, folder: &str) -> BTreeMap<String, Vec<String>> {
    USERS
        .iter()
        .map(|user| {
            let mut ids: Vec<String> = graph
                .messages(user)
                .into_iter()
                .filter(|m| m.folder.ends_with(folder))
                .map(|m| m.internet_message_id.trim_matches(['<', '>']).to_string())
                .collect();
            ids.sort();
            (user.to_string(), ids)
        })
        .filter(|(_, ids)| !ids.is_empty())
        .collect()
}

#[test]
#[ignore = "a soak of 30 minutes by default: run it with scripts/soak [MINUTES]"]
fn twenty_connectors_through_faults_for_half_an_hour_keep_memory_and_descriptors_flat_and_deliver_everything_once()
 {
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30);
    let soak = Duration::from_secs(minutes * 60);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    // The truth of a Symphony connector: one run alone over a clean pod.
    let clean = pod(11, "");
    let reference = symphony(&root.join("reference"), "reference", &clean.base_url());
    connector_ok(
        Path::new(BIN),
        &root.join("reference-state"),
        &["run", "--once", reference.to_str().unwrap()],
    );
    let symphony_truth = mailbox_contents(&root.join("reference").join("mail"), SYMPHONY_FOLDER);

    let faulty = pod(
        11,
        "429:every=70:burst=2:retry=1,400:every=113:burst=1:retry=1,5xx:every=89:status=503,drop:p=0.01,expire:after=200",
    );
    let mut configs = Vec::new();
    for n in 0..SYMPHONY_CONNECTORS {
        configs.push(symphony(
            &root.join(format!("symphony-{n}")),
            &format!("symphony-{n}"),
            &faulty.base_url(),
        ));
    }
    let mut dovecot = Dovecot::start(DovecotOptions {
        users: USERS
            .iter()
            .map(|u| (u.to_string(), "userpass".into()))
            .collect(),
        ..DovecotOptions::default()
    });
    let graph = GraphServer::start(GraphOptions {
        throttle_every: 40,
        ..GraphOptions::new(&USERS, GRAPH_CLIENT_ID, GRAPH_SECRET)
    });
    let mut chats = Vec::new();
    for n in 0..IMAP_CONNECTORS + GRAPH_CONNECTORS {
        let setup = chat_setup(root, &format!("chat-{n}"), 200, 20, "5s");
        let folder = format!("Chat{n}");
        if n < IMAP_CONNECTORS {
            chat_into(
                &setup,
                &folder,
                &master_sink_table(dovecot.port(), 2, 20),
                &format!("imap-master-password = \"{MASTER_PASSWORD}\"\n"),
            );
        } else {
            let sink = format!(
                "[sink]\nkind = \"graph\"\ntenant = \"contoso.example\"\nclient-id = \"{GRAPH_CLIENT_ID}\"\n\
                 client-secret-secret = \"graph-client-secret\"\ngraph-url = \"{}\"\nlogin-url = \"{}\"\n",
                graph.graph_url(),
                graph.login_url()
            );
            chat_into(
                &setup,
                &folder,
                &sink,
                &format!("graph-client-secret = \"{GRAPH_SECRET}\"\n"),
            );
        }
        configs.push(setup.config.clone());
        chats.push((setup, folder));
    }

    let paths: Vec<&Path> = configs.iter().map(PathBuf::as_path).collect();
    let daemon = DaemonProcess::start(
        Path::new(BIN),
        &["--state-dir".into(), root.join("state").into_os_string()],
        &paths,
        &[],
        &root.join("daemon.log"),
    );
    let started = Instant::now();
    let mut samples: Vec<(u64, usize)> = Vec::new();
    let mut next_message = 200;
    let mut last_restart = Instant::now();
    while started.elapsed() < soak {
        std::thread::sleep(Duration::from_secs(10));
        for (setup, _) in &mut chats {
            append_messages(setup, next_message, 3);
        }
        next_message += 3;
        if last_restart.elapsed() > Duration::from_secs(180) {
            dovecot.restart();
            last_restart = Instant::now();
        }
        let (rss, fds) = usage(daemon.pid());
        eprintln!(
            "{:>5} s: RSS {} MiB, {fds} descriptors",
            started.elapsed().as_secs(),
            rss / 1024
        );
        samples.push((rss, fds));
    }

    // Let the connectors catch up with the last messages.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut pending;
    loop {
        pending = Vec::new();
        for n in 0..SYMPHONY_CONNECTORS {
            let have = mailbox_contents(
                &root.join(format!("symphony-{n}")).join("mail"),
                SYMPHONY_FOLDER,
            );
            if have != symphony_truth {
                pending.push(format!(
                    "symphony-{n}: {} of {} mailboxes equal",
                    have.iter()
                        .filter(|(m, ids)| symphony_truth.get(*m) == Some(ids))
                        .count(),
                    symphony_truth.len()
                ));
            }
        }
        for (n, (setup, folder)) in chats.iter().enumerate() {
            let have = if n < IMAP_CONNECTORS {
                mailbox_contents(&dovecot.dir().join("mail"), &format!(".INBOX.{folder}"))
                    .into_iter()
                    .filter(|(_, ids)| !ids.is_empty())
                    .collect()
            } else {
                graph_contents(&graph, folder)
            };
            if let Some(why) = differs(&have, &setup.truth.mailboxes) {
                pending.push(format!("chat-{n}: {why}"));
            }
        }
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    let (rss, fds) = usage(daemon.pid());
    daemon.terminate();
    assert!(
        pending.is_empty(),
        "not delivered as the truth: {pending:#?}"
    );

    // Flat: the second half grows no more than a quarter (and 32 MiB of
    // slack) over the first half after its warm-up, descriptors by 16.
    let half = samples.len() / 2;
    assert!(half >= 2, "the soak is long enough to compare its halves");
    let early = &samples[half / 2..half];
    let late = &samples[half..];
    let peak = |s: &[(u64, usize)]| s.iter().map(|x| x.0).max().unwrap();
    let fd_peak = |s: &[(u64, usize)]| s.iter().map(|x| x.1).max().unwrap();
    eprintln!(
        "RSS peak {} MiB early, {} MiB late, {} MiB at the end; descriptors {} early, {} late, {fds} at the end",
        peak(early) / 1024,
        peak(late) / 1024,
        rss / 1024,
        fd_peak(early),
        fd_peak(late)
    );
    assert!(
        peak(late) <= peak(early) * 5 / 4 + 32 * 1024,
        "memory grows: {samples:?}"
    );
    assert!(
        fd_peak(late) <= fd_peak(early) + 16,
        "descriptors leak: {samples:?}"
    );
}
