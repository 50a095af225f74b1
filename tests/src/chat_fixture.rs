//! A chat export for the sink end-to-end tests (SMTP, Graph): `n` messages
//! in three conversations among four users (every mailbox gets messages of
//! two), small attachments on some, optionally one big attachment, the
//! chat-export plugin installed, and what each mailbox must end up with.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use connector_email::{Email, EmailConverter};
use connector_model::{Attachment, Conversation, ConversationKind, Message, MessageKind, Person};
use serde_json::json;

/// The four users (mailboxes).
pub const USERS: [&str; 4] = [
    "alice@example.test",
    "bob@example.test",
    "carol@example.test",
    "dave@example.test",
];

/// What the export holds.
#[derive(Debug)]
pub struct ChatFixture {
    /// The installed chat-export plugin's manifest.
    pub manifest: PathBuf,
    /// The folder to grant as `/export` (holds `chat.jsonl`).
    pub export: PathBuf,
    /// Mailbox → Message-IDs it must hold.
    pub expected: BTreeMap<String, BTreeSet<String>>,
    /// Message-ID → (attachment name, bytes) of messages with attachments.
    pub attachments: HashMap<String, (String, Vec<u8>)>,
    /// Message-ID → the message's text.
    pub texts: HashMap<String, String>,
    /// Message-ID → (sender's address, send time in ms).
    pub senders: HashMap<String, (String, i64)>,
}

/// Deterministic bytes, fast even in a debug build.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Who receives the messages of each conversation.
pub fn members(conversation: &str) -> &'static [&'static str] {
    match conversation {
        "room-all" => &USERS,
        "room-ab" => &USERS[..2],
        _ => &USERS[2..],
    }
}

/// Writes the export under `root` (message 4 gets a `big`-byte attachment
/// when `big` is set; every 25th a small one) and installs the plugin.
pub fn chat_fixture(root: &Path, n: usize, big: Option<usize>) -> ChatFixture {
    let manifest = crate::install_chat_export(&root.join("plugin"));
    let export = root.join("export");
    std::fs::create_dir_all(export.join("files")).unwrap();
    let person = |email: &str| {
        let name = &email[..email.find('@').unwrap()];
        json!({"id": format!("u-{name}"), "name": name, "email": email})
    };
    let mut lines = Vec::new();
    for conv in ["room-all", "room-ab", "im-cd"] {
        let participants: Vec<_> = members(conv).iter().map(|e| person(e)).collect();
        lines.push(json!({"type": "conversation", "id": conv, "kind": "room",
            "name": format!("Desk {conv} — ünïcode 💹"), "participants": participants}));
    }
    let converter = EmailConverter::new("chat-export", "Chat export");
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut attachments = HashMap::new();
    let mut texts = HashMap::new();
    let mut senders = HashMap::new();
    for i in 0..n {
        let conv = ["room-all", "room-ab", "im-cd"][i % 3];
        let sender = members(conv)[i % members(conv).len()];
        let id = format!("msg-{i:05}");
        let text = format!("Message {i} — héllo 😀 {}", "words ".repeat(i % 40));
        let sent_at = 1_767_000_000_000i64 + i as i64 * 1000;
        let mut m = json!({"type": "message", "id": id, "conversation": conv,
            "sender": person(sender), "sent_at": sent_at, "text": text});
        let mid = converter.message_id(&id);
        senders.insert(mid.clone(), (sender.to_string(), sent_at));
        texts.insert(mid.clone(), text);
        if let Some(size) = big.filter(|_| i == 4) {
            let bytes = noise(size, 42);
            std::fs::write(export.join("files/big.bin"), &bytes).unwrap();
            m["attachments"] = json!([{"id": "big", "name": "big.bin",
                "media_type": "application/octet-stream", "path": "files/big.bin"}]);
            attachments.insert(mid.clone(), ("big.bin".to_string(), bytes));
        } else if i % 25 == 3 {
            let bytes = noise(1000 + i * 7, i as u64);
            m["attachments"] = json!([{"id": "a", "name": format!("file-{i}.bin"),
                "content_base64": base64::engine::general_purpose::STANDARD.encode(&bytes)}]);
            attachments.insert(mid.clone(), (format!("file-{i}.bin"), bytes));
        }
        lines.push(m);
        for mb in members(conv) {
            expected
                .entry(mb.to_string())
                .or_default()
                .insert(mid.clone());
        }
    }
    let text: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    std::fs::write(export.join("chat.jsonl"), text).unwrap();
    ChatFixture {
        manifest,
        export,
        expected,
        attachments,
        texts,
        senders,
    }
}

/// How a connector file reads the fixture: the plugin's page size and the
/// run's retries.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    /// Messages per page.
    pub page_size: u32,
    /// Retries of a failed page.
    pub retries: u32,
}

impl Default for Paging {
    fn default() -> Paging {
        Paging {
            page_size: 100,
            retries: 3,
        }
    }
}

/// A connector file importing the fixture with `sink` as its `[sink]`
/// table (header included) and `secrets` as a secrets file.
pub fn connector_file(
    root: &Path,
    id: &str,
    f: &ChatFixture,
    paging: Paging,
    sink: &str,
    secrets: &str,
) -> PathBuf {
    crate::write_secrets(root, secrets);
    crate::write_file(
        root,
        "connector.toml",
        &format!(
            r#"
id = "{id}"
plugin = "{manifest}"
folder = "Symphony"
retries = {retries}
[plugin-config]
path = "/export/chat.jsonl"
page_size = {page_size}
[grants]
files = {{ "/export" = "{export}" }}
[secrets]
from = "file"
path = "secrets.toml"
[mapping]
domains = ["example.test"]
{sink}
"#,
            manifest = f.manifest.display(),
            export = f.export.display(),
            retries = paging.retries,
            page_size = paging.page_size,
        ),
    )
}

/// The Message-ID header's value (without angle brackets).
pub fn message_id_of(bytes: &[u8]) -> String {
    let head = &bytes[..bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len())];
    let head = String::from_utf8_lossy(head);
    let line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .expect("a Message-ID header");
    line[11..].trim().trim_matches(['<', '>']).to_string()
}

/// A participant whose id, name and address all come from `email`.
pub fn synthetic_person(email: &str) -> Person {
    Person {
        id: format!("u-{email}"),
        display_name: Some(email.to_string()),
        email: Some(email.to_string()),
    }
}

/// Message number `i` (id `id`, sent by one of [`USERS`] in turn, one
/// second apart) in a room of all [`USERS`], built into an email by the
/// host's converter: for the tests that drive a sink alone.
pub fn synthetic_email(id: &str, i: usize, text: String, attachments: Vec<Attachment>) -> Email {
    let conversation = Conversation {
        id: "c1".into(),
        kind: ConversationKind::Room,
        name: Some("Synthetic ✓".into()),
        participants: USERS.iter().map(|u| synthetic_person(u)).collect(),
    };
    let message = Message {
        id: id.to_string(),
        conversation_id: "c1".into(),
        sender: synthetic_person(USERS[i % USERS.len()]),
        sent_at: 1_700_000_000_000 + i as i64 * 1000,
        kind: MessageKind::Chat,
        relations: Vec::new(),
        text: Some(text),
        html: None,
        attachments,
        source_sha256: "0".repeat(64),
        properties: Vec::new(),
    };
    EmailConverter::new("synthetic", "Synthetic")
        .convert(&message, &conversation)
        .expect("a synthetic message converts")
}
