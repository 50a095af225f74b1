//! Walking an export conversation by conversation and day by day, turning
//! Slack messages into normalized messages, in pages with a checkpoint.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use connector_sdk::{
    Attachment, AttachmentBody, Conversation, ConversationKind, FetchSpec, Message, MessageKind,
    Page, Person, Relation, SourceError,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::archive::Archive;
use crate::config::Config;
use crate::model::{Channel, Profile, SlackFile, SlackMessage, User, parse_ts, ts_to_ms};

/// A page stops growing once its messages' original JSON reaches this many
/// bytes, even below the page size (it always holds at least one message).
pub const MAX_PAGE_BYTES: usize = 16 << 20;

/// A conversation of the export.
#[derive(Debug, Clone)]
pub struct Conv {
    /// Slack id (`C…`, `G…`, `D…`).
    pub id: String,
    /// Kind for the host.
    pub kind: ConversationKind,
    /// Channel name (not for DMs and group DMs).
    pub name: Option<String>,
    /// Folder of its day files in the export.
    pub folder: String,
    /// Member user ids.
    pub members: Vec<String>,
}

/// The position after a page: for every conversation started, the `ts` of
/// the last message emitted. Encoded as JSON `{"v":1,"after":{"C…":"ts"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version (1).
    pub v: u32,
    /// Conversation id → last emitted `ts`.
    pub after: BTreeMap<String, String>,
}

impl Checkpoint {
    /// The checkpoint's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a map of strings serializes")
    }

    /// Decodes bytes made by [`Checkpoint::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, SourceError> {
        let c: Checkpoint = serde_json::from_slice(bytes).map_err(|e| {
            SourceError::permanent(format!(
                "checkpoint {:?} is not a slack-export checkpoint: {e}",
                String::from_utf8_lossy(bytes)
            ))
        })?;
        if c.v != 1 {
            return Err(SourceError::permanent(format!(
                "checkpoint version {} is not one this plugin reads (1)",
                c.v
            )));
        }
        Ok(c)
    }
}

/// The message id the plugin gives a Slack message: `<channel>/<ts>`.
pub fn message_id(conversation: &str, ts: &str) -> String {
    format!("{conversation}/{ts}")
}

/// Reads pages from an opened export.
pub struct Reader {
    archive: Archive,
    config: Config,
    users: HashMap<String, User>,
    channel_names: HashMap<String, String>,
    convs: Vec<Conv>,
    conv_index: usize,
    /// Whether the day files of `convs[conv_index]` were listed.
    conv_loaded: bool,
    days: VecDeque<String>,
    pending: VecDeque<(Vec<u8>, SlackMessage)>,
    checkpoint: Checkpoint,
    described: HashSet<String>,
    uploads: HashMap<String, String>,
    deferred: HashMap<(String, String), String>,
    complete: bool,
}

fn parse_json<T: serde::de::DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T, SourceError> {
    serde_json::from_slice(bytes).map_err(|e| {
        SourceError::permanent(format!("{name} in the Slack export is not valid: {e}"))
    })
}

/// Days since the epoch of a day file name `YYYY-MM-DD.json`.
fn day_of_file(name: &str) -> Option<i64> {
    let date = name.rsplit('/').next()?.strip_suffix(".json")?;
    let ms = connector_sdk::time::parse_rfc3339(&format!("{date}T00:00:00Z"))?;
    Some(ms.div_euclid(86_400_000))
}

impl Reader {
    /// Opens the export named by `config`, resuming after `checkpoint`.
    pub fn open(config: Config, checkpoint: Option<Checkpoint>) -> Result<Reader, SourceError> {
        let mut archive = Archive::open(&config.path)?;
        let mut users = HashMap::new();
        if archive.contains("users.json") {
            let list: Vec<User> = parse_json("users.json", &archive.read("users.json")?)?;
            users = list.into_iter().map(|u| (u.id.clone(), u)).collect();
        }
        let mut convs = Vec::new();
        let mut channel_names = HashMap::new();
        for (file, kind) in [
            ("channels.json", ConversationKind::Room),
            ("groups.json", ConversationKind::Room),
            ("mpims.json", ConversationKind::Group),
            ("dms.json", ConversationKind::Direct),
        ] {
            if !archive.contains(file) {
                continue;
            }
            let mut list: Vec<Channel> = parse_json(file, &archive.read(file)?)?;
            list.sort_by(|a, b| a.id.cmp(&b.id));
            for c in list {
                let folder = match kind {
                    ConversationKind::Direct => c.id.clone(),
                    _ => c.name.clone().unwrap_or_else(|| c.id.clone()),
                };
                if let Some(name) = &c.name {
                    channel_names.insert(c.id.clone(), name.clone());
                }
                let name = match kind {
                    ConversationKind::Room => c.name.clone().map(|n| format!("#{n}")),
                    _ => None,
                };
                convs.push(Conv {
                    id: c.id,
                    kind,
                    name,
                    folder,
                    members: c.members,
                });
            }
        }
        if convs.is_empty() {
            return Err(SourceError::invalid_config(format!(
                "{} has no channels.json, groups.json, mpims.json or dms.json listing any \
                 conversation",
                config.path
            )));
        }
        let uploads = index_uploads(&archive);
        Ok(Reader {
            archive,
            config,
            users,
            channel_names,
            convs,
            conv_index: 0,
            conv_loaded: false,
            days: VecDeque::new(),
            pending: VecDeque::new(),
            checkpoint: checkpoint.unwrap_or(Checkpoint {
                v: 1,
                after: BTreeMap::new(),
            }),
            described: HashSet::new(),
            uploads,
            deferred: HashMap::new(),
            complete: false,
        })
    }

    /// The conversations of the export, in reading order.
    pub fn conversations(&self) -> &[Conv] {
        &self.convs
    }

    /// Where a deferred attachment of a message of this session is.
    pub fn deferred_path(&self, message_id: &str, attachment_id: &str) -> Option<&str> {
        self.deferred
            .get(&(message_id.to_string(), attachment_id.to_string()))
            .map(String::as_str)
    }

    /// The export.
    pub fn archive_mut(&mut self) -> &mut Archive {
        &mut self.archive
    }

    /// Loads the next day file with messages to emit into `pending`;
    /// `false` when the export is exhausted.
    fn fill(&mut self) -> Result<bool, SourceError> {
        while self.pending.is_empty() {
            if self.days.is_empty() {
                if self.conv_loaded {
                    self.conv_index += 1;
                    self.conv_loaded = false;
                }
                if self.conv_index >= self.convs.len() {
                    return Ok(false);
                }
                self.conv_loaded = true;
                let conv = &self.convs[self.conv_index];
                let after_day = self
                    .checkpoint
                    .after
                    .get(&conv.id)
                    .and_then(|ts| parse_ts(ts))
                    .map(|(secs, _)| secs.div_euclid(86_400));
                self.days = self
                    .archive
                    .files_in(&conv.folder)
                    .into_iter()
                    .filter(|n| day_of_file(n).is_some())
                    // Day files may follow the workspace's time zone: keep
                    // the day before the checkpoint's too.
                    .filter(|n| after_day.is_none_or(|d| day_of_file(n).unwrap_or(0) >= d - 1))
                    .collect();
                continue;
            }
            let day = self.days.pop_front().expect("not empty");
            let bytes = self.archive.read(&day)?;
            let raw: Vec<Box<RawValue>> = parse_json(&day, &bytes)?;
            let conv_id = self.convs[self.conv_index].id.clone();
            let after = self
                .checkpoint
                .after
                .get(&conv_id)
                .and_then(|ts| parse_ts(ts));
            let mut messages = Vec::with_capacity(raw.len());
            for (i, value) in raw.iter().enumerate() {
                let m: SlackMessage = serde_json::from_str(value.get()).map_err(|e| {
                    SourceError::permanent(format!(
                        "{day} in the Slack export: message {} is not valid: {e}",
                        i + 1
                    ))
                })?;
                if m.kind.as_deref().is_some_and(|k| k != "message") {
                    continue;
                }
                let key = parse_ts(&m.ts).ok_or_else(|| {
                    SourceError::permanent(format!(
                        "{day} in the Slack export: message {} has a malformed ts {:?}",
                        i + 1,
                        m.ts
                    ))
                })?;
                if after.is_some_and(|a| key <= a) {
                    continue;
                }
                messages.push((key, value.get().as_bytes().to_vec(), m));
            }
            messages.sort_by_key(|(key, _, _)| *key);
            self.pending = messages.into_iter().map(|(_, raw, m)| (raw, m)).collect();
        }
        Ok(true)
    }

    /// The next page.
    pub fn next_page(&mut self) -> Result<Page, SourceError> {
        let mut conversations = Vec::new();
        let mut messages = Vec::new();
        let mut bytes = 0usize;
        while !self.complete && messages.len() < self.config.page_size && bytes < MAX_PAGE_BYTES {
            if !self.fill()? {
                self.complete = true;
                break;
            }
            let (raw, m) = self.pending.pop_front().expect("filled");
            let conv = self.convs[self.conv_index].clone();
            if self.described.insert(conv.id.clone()) {
                conversations.push(self.describe(&conv));
            }
            bytes += raw.len();
            let ts = m.ts.clone();
            let message = self.convert(&conv, raw, m);
            self.checkpoint.after.insert(conv.id.clone(), ts);
            messages.push(message);
        }
        if !self.complete && !self.fill()? {
            self.complete = true;
        }
        Ok(Page::new(self.checkpoint.encode())
            .with_conversations(conversations)
            .with_messages(messages)
            .with_complete(self.complete))
    }

    fn person(&self, user_id: &str, fallback: Option<&Profile>) -> Person {
        let user = self.users.get(user_id);
        let pick = |values: [Option<&String>; 4]| {
            values
                .into_iter()
                .flatten()
                .find(|v| !v.trim().is_empty())
                .cloned()
        };
        let display_name = match user {
            Some(u) => pick([
                u.profile.real_name.as_ref(),
                u.real_name.as_ref(),
                u.profile.display_name.as_ref(),
                u.name.as_ref(),
            ]),
            None => fallback.and_then(|p| {
                pick([
                    p.real_name.as_ref(),
                    p.display_name.as_ref(),
                    p.name.as_ref(),
                    None,
                ])
            }),
        };
        let email = user
            .and_then(|u| u.profile.email.clone())
            .filter(|e| e.contains('@'));
        Person::new(user_id)
            .with_name(display_name)
            .with_email(email)
    }

    fn describe(&self, conv: &Conv) -> Conversation {
        Conversation::new(&conv.id, conv.kind)
            .with_name(conv.name.clone())
            .with_participants(conv.members.iter().map(|u| self.person(u, None)))
    }

    fn sender(&self, m: &SlackMessage) -> Person {
        if let Some(user) = &m.user {
            return self.person(user, m.user_profile.as_ref());
        }
        if let Some(bot) = &m.bot_id {
            let name = m
                .username
                .clone()
                .or_else(|| m.bot_profile.as_ref().and_then(|b| b.name.clone()));
            return Person::new(bot).with_name(name);
        }
        Person::new("slack-unknown-sender").with_name(m.username.clone())
    }

    fn convert(&mut self, conv: &Conv, raw: Vec<u8>, m: SlackMessage) -> Message {
        let id = message_id(&conv.id, &m.ts);
        let subtype = m.subtype.as_deref().unwrap_or("");
        let mut relations = Vec::new();
        let kind = match subtype {
            "channel_join" | "group_join" => MessageKind::MemberJoined,
            "channel_leave" | "group_leave" => MessageKind::MemberLeft,
            "message_changed" => MessageKind::Edit,
            "message_deleted" => MessageKind::Deletion,
            "channel_topic"
            | "channel_purpose"
            | "channel_name"
            | "channel_archive"
            | "channel_unarchive"
            | "group_topic"
            | "group_purpose"
            | "group_name"
            | "group_archive"
            | "group_unarchive"
            | "pinned_item"
            | "unpinned_item"
            | "tombstone"
            | "channel_convert_to_private"
            | "channel_convert_to_public" => MessageKind::System,
            _ => MessageKind::Chat,
        };
        if let Some(thread) = &m.thread_ts
            && thread != &m.ts
        {
            relations.push(Relation::ReplyTo(message_id(&conv.id, thread)));
        }
        // A `message_changed` event carries the new version in `message`.
        let (body, edited_of) = match (&kind, &m.message) {
            (MessageKind::Edit, Some(inner)) => (inner.as_ref().clone(), Some(inner.ts.clone())),
            _ => (m.clone(), None),
        };
        if let Some(original_ts) = edited_of {
            relations.push(Relation::EditOf(message_id(&conv.id, &original_ts)));
        }
        if let (MessageKind::Deletion, Some(deleted)) = (&kind, &m.deleted_ts) {
            relations.push(Relation::Deletes(message_id(&conv.id, deleted)));
        }
        let mut properties = vec![("slack-ts".to_string(), m.ts.clone())];
        if let Some(name) = &conv.name {
            properties.push(("slack-channel".into(), name.clone()));
        }
        if !subtype.is_empty() {
            properties.push(("slack-subtype".into(), subtype.to_string()));
        }
        if let Some(thread) = &m.thread_ts {
            properties.push(("slack-thread-ts".into(), thread.clone()));
        }
        if let Some(parent) = &m.parent_user_id {
            properties.push(("slack-parent-user".into(), parent.clone()));
        }
        if let Some(edited) = &body.edited {
            properties.push(("slack-edited-ts".into(), edited.ts.clone()));
            if let Some(user) = &edited.user {
                properties.push(("slack-edited-by".into(), user.clone()));
            }
        }
        if !m.reactions.is_empty() {
            let text = m
                .reactions
                .iter()
                .map(|r| format!(":{}: {}", r.name, r.users.join(" ")))
                .collect::<Vec<_>>()
                .join("; ");
            properties.push(("slack-reactions".into(), text));
        }
        let mut attachments = Vec::new();
        let mut not_archived = Vec::new();
        for file in &body.files {
            match self.attachment(&id, file) {
                Ok(a) => attachments.push(a),
                Err(reason) => not_archived.push(format!(
                    "{} {} ({reason})",
                    file.id,
                    file.name.as_deref().unwrap_or("")
                )),
            }
        }
        if !not_archived.is_empty() {
            properties.push(("slack-files-not-archived".into(), not_archived.join("; ")));
        }
        let text = body
            .text
            .as_deref()
            .map(|t| render_text(t, &self.users, &self.channel_names))
            .filter(|t| !t.is_empty());
        Message::new(
            id,
            &conv.id,
            self.sender(&m),
            ts_to_ms(&m.ts).unwrap_or(0),
            kind,
        )
        .with_relations(relations)
        .with_text(text)
        .with_attachments(attachments)
        .with_original(raw)
        .with_properties(properties)
    }

    /// The attachment for a shared file, or why it is not archived.
    fn attachment(&mut self, message_id: &str, file: &SlackFile) -> Result<Attachment, String> {
        if let Some(mode) = file.mode.as_deref()
            && matches!(mode, "tombstone" | "hidden_by_limit")
        {
            return Err(format!("file {mode}"));
        }
        let file_name = file
            .name
            .clone()
            .or_else(|| file.title.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| file.id.clone());
        let body = if let Some(path) = self.uploads.get(&file.id) {
            self.deferred
                .insert((message_id.to_string(), file.id.clone()), path.clone());
            AttachmentBody::Deferred
        } else if self.config.download_files {
            let url = file
                .url_private_download
                .clone()
                .or_else(|| file.url_private.clone())
                .ok_or("no url_private in the export")?;
            AttachmentBody::Fetch(
                FetchSpec::new(url).with_secret_header("authorization", &self.config.token_secret),
            )
        } else {
            return Err("not in the export; set download_files to fetch it".into());
        };
        let size = match &body {
            AttachmentBody::Deferred => self
                .uploads
                .get(&file.id)
                .and_then(|p| self.archive.size(p)),
            _ => file.size,
        };
        Ok(Attachment::new(&file.id, file_name, body)
            .with_media_type(file.mimetype.clone())
            .with_size(size))
    }
}

/// Files stored in the export, by Slack file id: `__uploads/F…/name` or
/// `<conversation>/attachments/F…-name` (the layouts export tools use when
/// they include the files).
fn index_uploads(archive: &Archive) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for name in archive.names() {
        let parts: Vec<&str> = name.split('/').collect();
        let id = match parts.as_slice() {
            ["__uploads", id, _file] => Some(id.to_string()),
            [_conv, "attachments", file] => file.split_once('-').map(|(id, _)| id.to_string()),
            _ => None,
        };
        if let Some(id) = id.filter(|id| id.starts_with('F')) {
            out.entry(id).or_insert_with(|| name.to_string());
        }
    }
    out
}

/// Slack mrkdwn to plain text: `<@U1>` → `@Name`, `<#C1|general>` →
/// `#general`, `<url|label>` → `label (url)`, `<!here>` → `@here`, and the
/// `&amp;`/`&lt;`/`&gt;` escapes undone.
pub fn render_text(
    text: &str,
    users: &HashMap<String, User>,
    channels: &HashMap<String, String>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &rest[start + 1..start + len];
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(l)),
            None => (inner, None),
        };
        let rendered = if let Some(user) = target.strip_prefix('@') {
            let name = label.map(str::to_string).or_else(|| {
                users.get(user).and_then(|u| {
                    u.profile
                        .display_name
                        .clone()
                        .filter(|n| !n.is_empty())
                        .or_else(|| u.real_name.clone())
                        .or_else(|| u.name.clone())
                })
            });
            format!("@{}", name.unwrap_or_else(|| user.to_string()))
        } else if let Some(channel) = target.strip_prefix('#') {
            let name = label
                .map(str::to_string)
                .or_else(|| channels.get(channel).cloned());
            format!("#{}", name.unwrap_or_else(|| channel.to_string()))
        } else if let Some(special) = target.strip_prefix('!') {
            match label {
                Some(l) => l.to_string(),
                None => format!("@{}", special.split('^').next().unwrap_or(special)),
            }
        } else {
            match label {
                Some(l) if l != target => format!("{l} ({target})"),
                _ => target.to_string(),
            }
        };
        out.push_str(&rendered);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrkdwn_to_text() {
        let mut users = HashMap::new();
        users.insert(
            "U1".to_string(),
            User {
                id: "U1".into(),
                real_name: Some("Ann Lee".into()),
                ..User::default()
            },
        );
        let channels = HashMap::from([("C9".to_string(), "general".to_string())]);
        assert_eq!(
            render_text(
                "hi <@U1> see <#C9> and <https://x.test/a?b=1&amp;c=2|the doc> &lt;3 <!here> <@U2>",
                &users,
                &channels
            ),
            "hi @Ann Lee see #general and the doc (https://x.test/a?b=1&c=2) <3 @here @U2"
        );
        assert_eq!(render_text("a < b", &users, &channels), "a < b");
    }

    #[test]
    fn checkpoint_round_trip() {
        let mut c = Checkpoint {
            v: 1,
            after: BTreeMap::new(),
        };
        c.after.insert("C1".into(), "1.000100".into());
        assert_eq!(Checkpoint::decode(&c.encode()).unwrap(), c);
        assert!(Checkpoint::decode(b"{\"offset\":3}").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_checkpoint_round_trips(
            after in proptest::collection::btree_map(".{0,20}", ".{0,20}", 0..8),
        ) {
            let cp = Checkpoint { v: 1, after };
            proptest::prop_assert_eq!(Checkpoint::decode(&cp.encode()).ok(), Some(cp));
        }
    }
}
