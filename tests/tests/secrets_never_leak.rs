//! Secrets never leak: connectors over every kind of credential (a
//! Symphony service account's private key the host signs with, an IMAP
//! master password, a Graph app's client secret, and a wrong client secret
//! that fails its run) run, fail, are reported on and served by a daemon
//! with logs at trace level; then everything an operator or a plugin can
//! see (every command's output, the daemon's log and status pages, every
//! file of the state folder and the mail) is searched for each secret, as
//! text and base64-encoded at any alignment. None may be found.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use connector_e2e::daemon_process::DaemonProcess;
use connector_e2e::dovecot::{Dovecot, DovecotOptions, MASTER_PASSWORD, master_sink_table};
use connector_e2e::graph_server::{GraphOptions, GraphServer};
use connector_e2e::ops::*;
use connector_e2e::symphony::{SymphonyConnector, symphony_connector_file};

const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");

/// Everything at trace level but the compiler of the plugins' wasm, whose
/// trace (the machine code of every function) is large and holds nothing
/// of the connectors.
const TRACE: &str = "trace,cranelift_codegen=info,cranelift_frontend=info,regalloc2=info,wasmtime_internal_cranelift=info,wasmtime_internal_cache=info,wasmtime_environ=info,wasmtime=info";

const GRAPH_CLIENT_ID: &str = "5b8d2f1e-0c4a-4f7e-9a31-6d2c8e1b7a90";
const GRAPH_SECRET: &str = "graph-SECRET-5fa1c0de~9b7e.41d2";
const WRONG_GRAPH_SECRET: &str = "graph-WRONG-77c1e2~aa04.e9f3";

/// What a search looks for: a secret's name and the byte strings that
/// betray it.
struct Needle {
    name: String,
    forms: Vec<Vec<u8>>,
}

impl Needle {
    /// `secret` as it is, and the part of its base64 encoding that does not
    /// depend on the bytes around it, at each of the three alignments.
    fn new(name: &str, secret: &str) -> Needle {
        let mut forms = vec![secret.as_bytes().to_vec()];
        for skip in 0..3usize {
            let mut bytes = vec![0u8; skip];
            bytes.extend_from_slice(secret.as_bytes());
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let start = if skip == 0 { 0 } else { 4 };
            forms.push(encoded.as_bytes()[start..encoded.len() - 4].to_vec());
        }
        Needle {
            name: name.to_string(),
            forms,
        }
    }
}

/// Where each needle was found in `haystack`, named `what`.
fn search(what: &str, haystack: &[u8], needles: &[Needle], found: &mut Vec<String>) {
    for needle in needles {
        for form in &needle.forms {
            if haystack.windows(form.len()).any(|w| w == form.as_slice()) {
                found.push(format!("{} in {what}", needle.name));
                break;
            }
        }
    }
}

/// Searches every regular file under `root` (symbolic links are not
/// followed, and there should be none). A file a running server removes
/// meanwhile is passed over.
fn search_tree(root: &Path, needles: &[Needle], found: &mut Vec<String>) -> usize {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut files = 0;
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Err(e) if gone(&e) && folder != root => continue,
            entries => entries.unwrap(),
        };
        for entry in entries {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            let path = entry.path();
            if kind.is_dir() {
                folders.push(path);
            } else if kind.is_file() {
                let bytes = match std::fs::read(&path) {
                    Err(e) if gone(&e) => continue,
                    bytes => bytes.unwrap(),
                };
                files += 1;
                search(&path.display().to_string(), &bytes, needles, found);
            } else {
                found.push(format!(
                    "a symbolic link or special file at {}",
                    path.display()
                ));
            }
        }
    }
    files
}

/// Runs `connector ARGS` with the shared state at trace level; returns
/// its stdout and stderr together.
fn traced(state: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("CONNECTOR_LOG", TRACE)
        .output()
        .expect("running the connector binary");
    [out.stdout, out.stderr].concat()
}

/// Replaces chat-export's Maildir `[sink]` table in `config` by `sink`,
/// and reads secrets from `secrets`.
fn with_sink(config: &Path, sink: &str, secrets: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let (head, _) = text.split_once("[sink]").unwrap();
    std::fs::write(
        config,
        format!(
            "{head}[secrets]\nfrom = \"file\"\npath = \"{}\"\n\n{sink}",
            secrets.display()
        ),
    )
    .unwrap();
}

/// A secrets file `dir/NAME/secrets.toml` holding `text`.
fn secrets_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    connector_e2e::write_secrets(&dir.join(name), text)
}

fn graph_sink(server: &GraphServer) -> String {
    format!(
        "[sink]\nkind = \"graph\"\ntenant = \"contoso.example\"\nclient-id = \"{GRAPH_CLIENT_ID}\"\n\
         client-secret-secret = \"graph-client-secret\"\ngraph-url = \"{}\"\nlogin-url = \"{}\"\n",
        server.graph_url(),
        server.login_url()
    )
}

#[test]
fn no_secret_shows_in_logs_outputs_status_pages_the_state_or_the_mail() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let state = root.join("state");
    let users = [
        "alice@example.test",
        "bob@example.test",
        "carol@example.test",
    ];

    // Symphony: the host signs the login with the service account's key.
    let pod = symphony_sim::start_blocking(
        symphony_sim::SimConfig::builder()
            .seed(7)
            .messages(60)
            .large_attachment_bytes(0)
            .build(),
    )
    .expect("the Symphony simulator starts");
    let base = pod.base_url();
    let symphony = symphony_connector_file(
        &root.join("symphony"),
        &SymphonyConnector {
            id: "symphony",
            base: &base,
            retries: 1,
            page_size: 20,
            domain: "acme-capital.example",
            sink: "[sink]\nkind = \"maildir\"\npath = \"mail\"\nfsync = false\n",
            extra_secrets: "",
        },
    );

    // IMAP through Dovecot's master user.
    let dovecot = Dovecot::start(DovecotOptions {
        users: users
            .iter()
            .map(|u| (u.to_string(), "userpass".to_string()))
            .collect(),
        ..DovecotOptions::default()
    });
    let imap = chat_setup(root, "chat-imap", 30, 10, "1h");
    let imap_secrets = secrets_file(
        root,
        "imap-secrets",
        &format!("imap-master-password = \"{MASTER_PASSWORD}\"\n"),
    );
    with_sink(
        &imap.config,
        &master_sink_table(dovecot.port(), 2, 10),
        &imap_secrets,
    );

    // Graph with the right client secret, and with a wrong one.
    let graph = GraphServer::start(GraphOptions::new(&users, GRAPH_CLIENT_ID, GRAPH_SECRET));
    let good = chat_setup(root, "chat-graph", 30, 10, "1h");
    let good_secrets = secrets_file(
        root,
        "graph-secrets",
        &format!("graph-client-secret = \"{GRAPH_SECRET}\"\n"),
    );
    with_sink(&good.config, &graph_sink(&graph), &good_secrets);
    let wrong = chat_setup(root, "chat-graph-wrong", 10, 10, "1h");
    let wrong_secrets = secrets_file(
        root,
        "wrong-secrets",
        &format!("graph-client-secret = \"{WRONG_GRAPH_SECRET}\"\n"),
    );
    with_sink(&wrong.config, &graph_sink(&graph), &wrong_secrets);

    let pem_lines: Vec<&str> = symphony_sim::TEST_PRIVATE_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
        .collect();
    assert!(pem_lines.len() > 10, "the key has a body");
    let mut needles = vec![
        Needle::new("the IMAP master password", MASTER_PASSWORD),
        Needle::new("the Graph client secret", GRAPH_SECRET),
        Needle::new("the wrong Graph client secret", WRONG_GRAPH_SECRET),
    ];
    for (n, line) in pem_lines.iter().enumerate() {
        needles.push(Needle::new(&format!("line {n} of the private key"), line));
    }

    let configs = [&symphony, &imap.config, &good.config, &wrong.config];
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    for config in configs {
        let config = config.to_str().unwrap();
        for args in [vec!["validate", config], vec!["run", "--once", config]] {
            let started = std::time::Instant::now();
            let out = traced(&state, &args);
            eprintln!(
                "connector {args:?}: {} bytes of output in {:?}",
                out.len(),
                started.elapsed()
            );
            outputs.push((format!("connector {args:?}"), out));
        }
    }
    assert!(
        !graph.messages("alice@example.test").is_empty(),
        "the Graph connector delivered"
    );
    assert!(
        dovecot.count_on_disk("alice@example.test", "INBOX/Chat") > 0,
        "the IMAP connector delivered"
    );
    let failed = &outputs.last().unwrap().1;
    assert!(
        String::from_utf8_lossy(failed).contains("graph-client-secret"),
        "the wrong secret's run failed naming the secret, not its value:\n{}",
        String::from_utf8_lossy(failed)
    );
    for (id, config) in [
        ("symphony", &symphony),
        ("chat-imap", &imap.config),
        ("chat-graph", &good.config),
        ("chat-graph-wrong", &wrong.config),
    ] {
        let config = config.to_str().unwrap();
        for args in [
            vec!["status", config],
            vec!["status", "--json", config],
            vec!["log", "--connector", id],
            vec!["reconcile", "--connector", id, "--last"],
            vec!["quarantine", "list", "--connector", id],
        ] {
            outputs.push((format!("connector {args:?}"), traced(&state, &args)));
        }
    }

    let config_paths: Vec<&Path> = configs.iter().map(|p| p.as_path()).collect();
    let daemon_log = root.join("daemon.log");
    let daemon = DaemonProcess::start(
        Path::new(BIN),
        &["--state-dir".into(), state.clone().into_os_string()],
        &config_paths,
        &[("CONNECTOR_LOG", TRACE)],
        &daemon_log,
    );
    for page in ["/", "/status.json", "/metrics"] {
        let (_, body) = http_get(daemon.addr(), page).unwrap();
        outputs.push((format!("the daemon's {page}"), body.into_bytes()));
    }
    daemon.terminate();
    outputs.push((
        "the daemon's log".into(),
        std::fs::read(&daemon_log).unwrap(),
    ));

    assert!(
        outputs
            .iter()
            .any(|(_, o)| String::from_utf8_lossy(o).contains("TRACE")),
        "the commands logged at trace level"
    );
    let mut found = Vec::new();
    for (what, bytes) in &outputs {
        search(what, bytes, &needles, &mut found);
    }
    let state_files = search_tree(&state, &needles, &mut found);
    let mail_files = search_tree(&root.join("symphony").join("mail"), &needles, &mut found);
    let mut graph_mail = Vec::new();
    for user in users {
        for m in graph.messages(user) {
            graph_mail.extend(m.json.to_string().into_bytes());
            for a in &m.attachments {
                graph_mail.extend_from_slice(&a.bytes);
            }
        }
    }
    search("the Graph mailboxes", &graph_mail, &needles, &mut found);
    search_tree(&dovecot.dir().join("mail"), &needles, &mut found);
    assert!(
        state_files > 0 && mail_files > 0,
        "{state_files} state and {mail_files} mail files searched"
    );
    assert!(found.is_empty(), "secrets found: {found:#?}");

    // The search finds a secret where there is one.
    let mut planted = Vec::new();
    search(
        "a planted line",
        format!("x{MASTER_PASSWORD}y").as_bytes(),
        &needles,
        &mut planted,
    );
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("\0admin\0{MASTER_PASSWORD}"));
    search(
        "a planted AUTH PLAIN",
        encoded.as_bytes(),
        &needles,
        &mut planted,
    );
    assert_eq!(planted.len(), 2, "{planted:?}");
}
