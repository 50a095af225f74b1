//! A realistic Slack workspace export, generated deterministically for the
//! slack-export plugin's tests: `users.json` with profile emails,
//! `channels.json`, `groups.json`, `mpims.json`, `dms.json`, and a folder
//! of day files per conversation with threads, edits, joins, a bot, mentions,
//! files stored in the export, files to download and a deleted file. Written
//! as a ZIP (wrapped in a top-level folder, as Slack does) or as a folder,
//! with what each mailbox should receive.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

/// Placeholder for the origin serving `url_private` downloads.
pub const FILES_ORIGIN: &str = "FILES_ORIGIN";

/// What one message of the export should become.
#[derive(Debug, Clone)]
pub struct ExpectedMessage {
    /// `<conversation>/<ts>`.
    pub id: String,
    /// The conversation id.
    pub conversation: String,
    /// Sender's email, lower case, if any.
    pub sender_email: Option<String>,
    /// Milliseconds since the epoch.
    pub sent_at: i64,
    /// Text the email must contain (mrkdwn rendered).
    pub text: String,
    /// The parent's id, for thread replies.
    pub reply_to: Option<String>,
    /// Attachments: file name and bytes.
    pub attachments: Vec<(String, Vec<u8>)>,
    /// Mailboxes that must receive it.
    pub mailboxes: BTreeSet<String>,
    /// Whether an unmapped participant sends it to the quarantine as well.
    pub quarantined: bool,
}

/// A generated export.
pub struct SlackExport {
    /// Path → bytes, relative to the export root.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Every message in the order the plugin emits it.
    pub expected: Vec<ExpectedMessage>,
    /// `url_private` downloads: URL path → bytes.
    pub downloads: BTreeMap<String, Vec<u8>>,
}

struct User {
    id: &'static str,
    name: &'static str,
    real: &'static str,
    email: Option<&'static str>,
}

const USERS: [User; 4] = [
    User {
        id: "U01ALICE",
        name: "alice",
        real: "Alice Ångström",
        email: Some("alice@example.test"),
    },
    User {
        id: "U02BOB",
        name: "bob",
        real: "Bob 🦀 Builder",
        email: Some("Bob@Example.test"),
    },
    User {
        id: "U03CAROL",
        name: "carol",
        real: "Carol NoMail",
        email: None,
    }, // mapped by the override CSV
    User {
        id: "U04DAVE",
        name: "dave",
        real: "Dave External",
        email: Some("dave@partner.example"),
    }, // unmapped
];

fn mailbox(user: &str) -> Option<String> {
    match user {
        "U01ALICE" => Some("alice@example.test".into()),
        "U02BOB" => Some("bob@example.test".into()),
        "U03CAROL" => Some("carol@example.test".into()),
        _ => None,
    }
}

struct Conv {
    id: &'static str,
    folder: &'static str,
    members: &'static [&'static str],
}

const CONVS: [(&str, Conv); 5] = [
    (
        "channels",
        Conv {
            id: "C01GENERAL",
            folder: "general",
            members: &["U01ALICE", "U02BOB", "U03CAROL"],
        },
    ),
    (
        "channels",
        Conv {
            id: "C02RANDOM",
            folder: "random",
            members: &["U01ALICE", "U02BOB"],
        },
    ),
    (
        "groups",
        Conv {
            id: "G01SECRET",
            folder: "secret-project",
            members: &["U01ALICE", "U03CAROL"],
        },
    ),
    (
        "mpims",
        Conv {
            id: "G02MPIM",
            folder: "mpdm-alice--bob--dave-1",
            members: &["U01ALICE", "U02BOB", "U04DAVE"],
        },
    ),
    (
        "dms",
        Conv {
            id: "D01ALICEBOB",
            folder: "D01ALICEBOB",
            members: &["U01ALICE", "U02BOB"],
        },
    ),
];

/// Seconds of the first message: 2024-03-04T08:00:00Z.
const START: i64 = 1_709_539_200;

fn date_of(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Builds an export of `days` days with `per_day` messages in each
/// conversation per day.
pub fn build(days: usize, per_day: usize) -> SlackExport {
    let mut files = BTreeMap::new();
    let users: Vec<Value> = USERS
        .iter()
        .map(|u| {
            let mut profile = json!({"real_name": u.real, "display_name": u.name});
            if let Some(e) = u.email {
                profile["email"] = json!(e);
            }
            json!({"id": u.id, "team_id": "T01", "name": u.name, "real_name": u.real,
                   "deleted": false, "is_bot": false, "profile": profile})
        })
        .chain([json!({"id": "U05BOTUSER", "name": "deploybot", "is_bot": true, "profile": {"real_name": "Deploy Bot"}})])
        .collect();
    files.insert(
        "users.json".into(),
        serde_json::to_vec_pretty(&users).unwrap(),
    );
    for list in ["channels", "groups", "mpims", "dms"] {
        let entries: Vec<Value> = CONVS
            .iter()
            .filter(|(l, _)| *l == list)
            .map(|(_, c)| {
                let mut v = json!({"id": c.id, "created": START - 86_400, "members": c.members});
                if list != "dms" {
                    v["name"] = json!(c.folder);
                    v["is_archived"] = json!(false);
                    v["topic"] = json!({"value": "", "creator": "", "last_set": 0});
                }
                v
            })
            .collect();
        files.insert(
            format!("{list}.json"),
            serde_json::to_vec_pretty(&entries).unwrap(),
        );
    }
    files.insert("integration_logs.json".into(), b"[]".to_vec());

    let mut expected_by_conv: Vec<Vec<ExpectedMessage>> = vec![Vec::new(); CONVS.len()];
    let mut downloads = BTreeMap::new();
    for (ci, (_, conv)) in CONVS.iter().enumerate() {
        let mut thread_parent: Option<String> = None;
        for day in 0..days {
            let mut day_messages = Vec::new();
            for k in 0..per_day {
                // Stable whatever the export's length: a newer export holds
                // the same messages for the same days.
                let n = ci * 10_000 + day * 100 + k + 1;
                let secs = START + day as i64 * 86_400 + k as i64 * 600 + ci as i64 * 7;
                let ts = format!("{secs}.{:06}", 100 + k);
                let sender = conv.members[(k + day) % conv.members.len()];
                let mut text = format!(
                    "Message {n} in {} — héllo wörld 😀 <@U02BOB> &amp; co",
                    conv.folder
                );
                let mut rendered =
                    format!("Message {n} in {} — héllo wörld 😀 @bob & co", conv.folder);
                let mut m = json!({"type": "message", "user": sender, "text": "", "ts": ts,
                    "team": "T01", "user_team": "T01",
                    "user_profile": {"real_name": "stale name", "display_name": "stale", "name": "stale"}});
                let mut reply_to = None;
                let mut attachments = Vec::new();
                match n % 9 {
                    1 if k == 0 && day == 0 && conv.id == "C01GENERAL" => {
                        // The first message of #general: someone joins.
                        m["subtype"] = json!("channel_join");
                        text = format!("<@{sender}> has joined the channel");
                        rendered = String::new();
                    }
                    2 => {
                        thread_parent = Some(ts.clone());
                        m["thread_ts"] = json!(ts);
                        m["reply_count"] = json!(1);
                    }
                    3 if thread_parent.is_some() => {
                        let parent = thread_parent.take().unwrap();
                        m["thread_ts"] = json!(parent);
                        m["parent_user_id"] = json!(conv.members[0]);
                        reply_to = Some(format!("{}/{parent}", conv.id));
                    }
                    4 => {
                        m["edited"] =
                            json!({"user": sender, "ts": format!("{}.000000", secs + 30)});
                        text.push_str(" (edited)");
                        rendered.push_str(" (edited)");
                    }
                    5 => {
                        // A file stored in the export.
                        let id = format!("F{n:05}UP");
                        let name = format!("report-{n}.pdf");
                        let bytes: Vec<u8> = (0..150_000u32)
                            .map(|x| {
                                (x.wrapping_mul(2_654_435_761).wrapping_add(n as u32) >> 13) as u8
                            })
                            .collect();
                        files.insert(format!("__uploads/{id}/{name}"), bytes.clone());
                        m["subtype"] = json!("file_share");
                        m["files"] = json!([{"id": id, "name": name, "title": name, "mimetype": "application/pdf",
                            "filetype": "pdf", "size": bytes.len(), "mode": "hosted",
                            "url_private": format!("https://files.slack.com/files-pri/T01-{id}/{name}")}]);
                        attachments.push((name, bytes));
                    }
                    6 => {
                        // A file only reachable at its url_private.
                        let id = format!("F{n:05}DL");
                        let name = format!("notes ü {n}.txt");
                        let bytes = format!("downloaded file {n} ✓").into_bytes();
                        let path = format!("/files-pri/T01-{id}/download/notes-{n}.txt");
                        downloads.insert(path.clone(), bytes.clone());
                        m["files"] = json!([{"id": id, "name": name, "mimetype": "text/plain", "size": bytes.len(),
                            "mode": "hosted", "url_private": format!("{FILES_ORIGIN}/files-pri/T01-{id}/notes-{n}.txt"),
                            "url_private_download": format!("{FILES_ORIGIN}{path}")}]);
                        attachments.push((name, bytes));
                    }
                    7 => {
                        m["files"] = json!([{"id": format!("F{n:05}GONE"), "mode": "tombstone"}]);
                    }
                    8 if conv.id == "C02RANDOM" => {
                        m = json!({"type": "message", "subtype": "bot_message", "bot_id": "B01DEPLOY",
                            "username": "deploybot", "text": "", "ts": ts});
                    }
                    _ => {}
                }
                m["text"] = json!(text);
                let is_bot = m["subtype"] == json!("bot_message");
                let sender_id = if is_bot { "B01DEPLOY" } else { sender };
                let mut mailboxes: BTreeSet<String> =
                    conv.members.iter().filter_map(|u| mailbox(u)).collect();
                if let Some(mb) = mailbox(sender_id) {
                    mailboxes.insert(mb);
                }
                let quarantined = conv.members.iter().any(|u| mailbox(u).is_none())
                    || mailbox(sender_id).is_none();
                expected_by_conv[ci].push(ExpectedMessage {
                    id: format!("{}/{ts}", conv.id),
                    conversation: conv.id.to_string(),
                    sender_email: if is_bot {
                        None
                    } else {
                        USERS
                            .iter()
                            .find(|u| u.id == sender)
                            .and_then(|u| u.email)
                            .map(str::to_lowercase)
                    },
                    sent_at: secs * 1000 + (100 + k as i64) / 1000,
                    text: rendered,
                    reply_to,
                    attachments,
                    mailboxes,
                    quarantined,
                });
                day_messages.push(m);
            }
            files.insert(
                format!(
                    "{}/{}.json",
                    conv.folder,
                    date_of(START + day as i64 * 86_400)
                ),
                serde_json::to_vec_pretty(&day_messages).unwrap(),
            );
        }
    }
    // The plugin reads channels, then private channels, group DMs and DMs,
    // each sorted by id: the order of CONVS.
    let expected = expected_by_conv.into_iter().flatten().collect();
    SlackExport {
        files,
        expected,
        downloads,
    }
}

impl SlackExport {
    /// The files with the downloads' origin filled in.
    fn resolved(&self, origin: &str) -> BTreeMap<String, Vec<u8>> {
        self.files
            .iter()
            .map(|(k, v)| {
                let v = if k.ends_with(".json") {
                    String::from_utf8(v.clone())
                        .unwrap()
                        .replace(FILES_ORIGIN, origin)
                        .into_bytes()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    }

    /// Writes the export as a ZIP at `path`, everything under a top-level
    /// folder as Slack's own download has it.
    pub fn write_zip(&self, path: &Path, origin: &str) {
        let file = std::fs::File::create(path).expect("creating the zip");
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in self.resolved(origin) {
            zip.start_file(
                format!("Acme Slack export Mar 4 2024 - Mar 9 2024/{name}"),
                options,
            )
            .expect("adding a zip entry");
            zip.write_all(&bytes).expect("writing a zip entry");
        }
        zip.finish().expect("finishing the zip");
    }

    /// Writes the export unzipped into folder `dir`.
    pub fn write_dir(&self, dir: &Path, origin: &str) {
        for (name, bytes) in self.resolved(origin) {
            let path = dir.join(&name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
}
