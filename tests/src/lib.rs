//! Support for the end-to-end tests: builds the real plugins to
//! `wasm32-wasip2` once per test process, installs them with the host's own
//! packaging, writes connector files, serves files over real HTTP, and reads
//! back what landed in the Maildir.

pub mod browser;
pub mod chat_fixture;
pub mod console_client;
pub mod daemon_process;
pub mod dovecot;
pub mod graph_server;
pub mod identity_platform;
pub mod oidc_provider;
pub mod ops;
pub mod postgres;
pub mod smtp_server;
pub mod symphony;
pub mod transcripts;

pub mod slack;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// Builds a plugin crate for `wasm32-wasip2` (release, in `target/plugins`)
/// and returns the `.wasm` path. Each crate is built once per process.
pub fn build_plugin(crate_name: &str) -> PathBuf {
    build_once(
        crate_name,
        &["--release", "--target", "wasm32-wasip2"],
        "(is the target installed? `rustup target add wasm32-wasip2`)",
        |target_dir| {
            target_dir
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", crate_name.replace('-', "_")))
        },
    )
}

/// Builds a native plugin crate (a `cdylib`, debug, in `target/plugins`) for
/// this machine and returns the shared library's path. Built once per
/// process.
pub fn build_native_plugin(crate_name: &str) -> PathBuf {
    build_once(crate_name, &[], "", |target_dir| {
        target_dir.join("debug").join(format!(
            "{}{}{}",
            std::env::consts::DLL_PREFIX,
            crate_name.replace('-', "_"),
            std::env::consts::DLL_SUFFIX
        ))
    })
}

/// Runs `cargo build -p CRATE ARGS` into `target/plugins` once per process
/// and crate (with the caller's flags), and returns the artifact `artifact`
/// names there. A failed build panics with cargo's output and `hint`.
fn build_once(
    crate_name: &str,
    args: &[&str],
    hint: &str,
    artifact: impl FnOnce(&Path) -> PathBuf,
) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let key = format!("{crate_name} {}", args.join(" "));
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let root = workspace_root();
    let target_dir = root.join("target").join("plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "-p", crate_name])
        .args(args)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("running cargo to build a plugin");
    assert!(
        output.status.success(),
        "building plugin {crate_name} failed {hint}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = artifact(&target_dir);
    assert!(path.is_file(), "cargo built no {}", path.display());
    built.insert(key, path.clone());
    path
}

/// Builds a plugin and installs it into `dir` with `connector package`'s
/// library function; returns the installed manifest.
pub fn install_plugin(crate_name: &str, source_manifest: &str, dir: &Path) -> PathBuf {
    let wasm = build_plugin(crate_name);
    connector_runtime::manifest::package(&workspace_root().join(source_manifest), &wasm, dir)
        .expect("packaging the plugin")
}

/// The example chat-export plugin, installed into `dir`.
pub fn install_chat_export(dir: &Path) -> PathBuf {
    install_plugin("chat-export", "plugins/chat-export/manifest.toml", dir)
}

/// The misbehaving test plugin, installed into `dir`.
pub fn install_misbehaving(dir: &Path) -> PathBuf {
    install_plugin(
        "misbehaving-plugin",
        "tests/plugins/misbehaving/manifest.toml",
        dir,
    )
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a test file");
    path
}

/// Writes `text` to `dir/secrets.toml`, readable by its owner only (the
/// host refuses a secrets file others can read), and returns the path.
pub fn write_secrets(dir: &Path, text: &str) -> PathBuf {
    let path = write_file(dir, "secrets.toml", text);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("making the secrets file private");
    path
}

/// A tiny HTTP/1.1 file server on 127.0.0.1 for the plugins' `http` import
/// and the host's attachment downloads. It serves `files` (path → body) and
/// answers 404 otherwise; it stops when the test process ends.
pub fn serve_files(files: BTreeMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let origin = format!("http://{}", listener.local_addr().expect("local address"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let files = files.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("cloning a socket"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match files.get(path) {
                    Some(body) => ("200 OK", body.as_slice()),
                    None => ("404 Not Found", &b"not found"[..]),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            });
        }
    });
    origin
}

/// One email found in a Maildir folder.
#[derive(Debug, Clone)]
pub struct StoredEmail {
    /// The file.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Every email in `root/<mailbox>/<folder>` (Maildir++ `.INBOX.<Name>`),
/// from `cur/` and `new/`.
pub fn maildir_emails(root: &Path, mailbox: &str, folder_on_disk: &str) -> Vec<StoredEmail> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let dir = root.join(mailbox).join(folder_on_disk).join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("reading a maildir entry").path();
            let bytes = std::fs::read(&path).expect("reading an email");
            out.push(StoredEmail { path, bytes });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The mailboxes (folder names) under a Maildir root.
pub fn mailboxes(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A throw-away CA, a server certificate for `localhost` and 127.0.0.1
/// signed by it, and the server's key: `(ca, certificate, key)`, PEM.
pub fn loopback_certificates() -> Result<(String, String, String), rcgen::Error> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "connector tests' CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}
