//! The seeded data generator: users, streams, memberships, messages and attachments.
//!
//! Everything comes from one ChaCha8 generator seeded with [`SimConfig::seed`]; attachment
//! bytes come from a ChaCha8 key stream keyed by the seed and the attachment id, so their
//! content is never stored (see [`crate::content`]).

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use crate::config::SimConfig;
use crate::content;
use crate::presentation::{MessageBuilder, Rendered};
use crate::truth::{
    GroundTruth, Relation, StreamType, TruthAttachment, TruthEvent, TruthMember, TruthMessage,
    TruthStream, TruthUser,
};

/// Company of the simulated pod.
pub(crate) const POD_COMPANY: &str = "Acme Capital";
/// Company id of the simulated pod.
pub(crate) const POD_COMPANY_ID: i64 = 130;
const EMAIL_DOMAIN: &str = "acme-capital.example";
const EXTERNAL_COMPANIES: [(&str, i64, &str); 2] = [
    ("Globex Partners", 198, "globex-partners.example"),
    ("Initech Bank", 245, "initech-bank.example"),
];

/// Characters left as-is in listed attachment ids (RFC 3986 unreserved).
const ID_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: i64,
    pub username: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: String,
    pub company: String,
    pub company_id: i64,
    pub external: bool,
    pub account_type: &'static str,
    pub title: Option<String>,
    pub department: Option<String>,
    pub location: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub user: usize,
    pub joined: i64,
    pub left: Option<i64>,
    pub owner: bool,
    pub creator: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Stream {
    pub id: String,
    pub kind: StreamType,
    pub name: Option<String>,
    pub description: Option<String>,
    pub active: bool,
    pub public: bool,
    pub external: bool,
    pub creator: usize,
    pub created: i64,
    pub last_modified: i64,
    pub last_message: Option<i64>,
    pub members: Vec<Member>,
    /// Whether the service accounts are members (they may read its messages).
    pub service_member: bool,
    /// One of [`SimConfig::later_streams`]: it exists only once created at run time
    /// ([`crate::SimHandle::create_stream`]), and has the service account as a member.
    pub later: bool,
}

impl Stream {
    fn active_at(&self, ts: i64) -> Vec<usize> {
        self.members
            .iter()
            .filter(|m| m.joined <= ts && m.left.is_none_or(|l| ts < l))
            .map(|m| m.user)
            .collect()
    }
}

/// A downloadable file (attachment or thumbnail).
#[derive(Debug, Clone)]
pub(crate) struct FileData {
    /// The decoded id (`internal_<uid>/<base64>`).
    pub raw_id: String,
    /// The id as listed in `attachments[]` (percent-encoded).
    pub listed_id: String,
    pub size: u64,
    pub key: [u8; 32],
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone)]
pub(crate) struct Attachment {
    pub name: String,
    pub file: FileData,
    pub thumbnails: Vec<FileData>,
}

#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub id: String,
    pub stream: usize,
    pub ts: i64,
    pub sender: usize,
    pub rendered: Rendered,
    pub attachments: Vec<Attachment>,
    pub parent: Option<(usize, Relation)>,
    pub replacing: Option<usize>,
    pub replaced_by: Option<usize>,
    pub initial: Option<usize>,
    /// Planned suppression: time and initiator (user index).
    pub planned_suppression: Option<(i64, usize)>,
    pub user_agent: &'static str,
    pub sid: String,
    /// The message a wall post shares (`sharedMessage`).
    pub shares: Option<usize>,
}

/// The whole generated pod.
#[derive(Debug)]
pub(crate) struct Dataset {
    pub seed: u64,
    pub users: Vec<User>,
    /// Index of the first service account in `users`.
    pub service_user: usize,
    /// Index of the compliance officer (initiator of suppressions).
    pub officer: usize,
    pub streams: Vec<Stream>,
    /// Messages in global (timestamp) order.
    pub messages: Vec<Message>,
    /// Per stream, message indexes in listing order.
    pub by_stream: Vec<Vec<usize>>,
    pub user_index: HashMap<i64, usize>,
    pub stream_index: HashMap<String, usize>,
    pub message_index: HashMap<String, usize>,
    /// Raw file id -> (message index, attachment index, thumbnail index).
    pub files: HashMap<String, (usize, usize, Option<usize>)>,
}

impl Dataset {
    /// Looks a stream up by id, accepting URL-safe or standard base64, with or without padding.
    pub fn find_stream(&self, id: &str) -> Option<usize> {
        self.stream_index.get(&normalize_id(id)).copied()
    }

    /// Looks a message up by id (any base64 flavour).
    pub fn find_message(&self, id: &str) -> Option<usize> {
        self.message_index.get(&normalize_id(id)).copied()
    }

    /// The file behind a raw id.
    pub fn file(&self, raw_id: &str) -> Option<(usize, &FileData)> {
        let &(m, a, t) = self.files.get(raw_id)?;
        let att = &self.messages[m].attachments[a];
        Some((
            m,
            match t {
                None => &att.file,
                Some(t) => &att.thumbnails[t],
            },
        ))
    }

    /// Builds the ground truth, given which suppressions are in effect (`live[i]` = time)
    /// and the event log.
    pub fn truth(
        &self,
        live: &[Option<i64>],
        applied: bool,
        log: &[crate::api::LogEvent],
    ) -> GroundTruth {
        let user = |i: usize| &self.users[i];
        let users = self
            .users
            .iter()
            .map(|u| TruthUser {
                user_id: u.id,
                username: u.username.clone(),
                email: u.email.clone(),
                display_name: u.display_name.clone(),
                company: u.company.clone(),
                external: u.external,
                account_type: u.account_type.to_string(),
            })
            .collect();
        let streams = self
            .streams
            .iter()
            .enumerate()
            .map(|(si, s)| TruthStream {
                stream_id: s.id.clone(),
                stream_type: s.kind,
                name: s.name.clone(),
                active: s.active,
                external: s.external,
                created_at: s.created,
                members: s
                    .members
                    .iter()
                    .map(|m| TruthMember {
                        user_id: user(m.user).id,
                        email: user(m.user).email.clone(),
                        display_name: user(m.user).display_name.clone(),
                        external: user(m.user).external,
                        owner: m.owner,
                        joined_at: m.joined,
                        left_at: m.left,
                    })
                    .collect(),
                message_count: self.by_stream[si].len(),
                service_member: s.service_member,
            })
            .collect();
        let mut messages = Vec::with_capacity(self.messages.len());
        for list in &self.by_stream {
            for &mi in list {
                let m = &self.messages[mi];
                let id = |i: Option<usize>| i.map(|i| self.messages[i].id.clone());
                let live_at = live.get(mi).copied().flatten();
                messages.push(TruthMessage {
                    message_id: m.id.clone(),
                    stream_id: self.streams[m.stream].id.clone(),
                    stream_type: self.streams[m.stream].kind,
                    sender_user_id: user(m.sender).id,
                    sender_email: user(m.sender).email.clone(),
                    timestamp: m.ts,
                    text: m.rendered.text.clone(),
                    text_chars: m.rendered.text.chars().count(),
                    mentions: m.rendered.mentions.clone(),
                    hashtags: m.rendered.hashtags.clone(),
                    cashtags: m.rendered.cashtags.clone(),
                    emojis: m.rendered.emojis.clone(),
                    inline_images: m.rendered.images.clone(),
                    attachments: m
                        .attachments
                        .iter()
                        .map(|a| TruthAttachment {
                            id: a.file.listed_id.clone(),
                            name: a.name.clone(),
                            size: a.file.size,
                            sha256: hex::encode(a.file.sha256),
                            image: !a.thumbnails.is_empty(),
                        })
                        .collect(),
                    parent_message_id: id(m.parent.map(|p| p.0)),
                    relation: m.parent.map(|p| p.1),
                    replacing: id(m.replacing),
                    replaced_by: id(m.replaced_by),
                    initial_message_id: id(m.initial),
                    initial_timestamp: m.initial.map(|i| self.messages[i].ts),
                    shared_message_id: id(m.shares),
                    suppressed: m.planned_suppression.is_some() || live_at.is_some(),
                    suppressed_at: live_at.or(m.planned_suppression.map(|p| p.0)),
                    suppression_applied: live_at.is_some(),
                });
            }
        }
        GroundTruth {
            seed: self.seed,
            pod_company: POD_COMPANY.to_string(),
            service_account: self.users[self.service_user]
                .username
                .clone()
                .unwrap_or_default(),
            suppressions_applied: applied,
            users,
            streams,
            messages,
            events: log.iter().map(|e| self.truth_event(e)).collect(),
        }
    }

    fn truth_event(&self, e: &crate::api::LogEvent) -> TruthEvent {
        use crate::api::LogKind;
        let (stream, message, affected) = match e.kind {
            LogKind::Sent(m) | LogKind::Suppressed(m) => (self.messages[m].stream, Some(m), None),
            LogKind::Joined(s, u) | LogKind::Left(s, u) => (s, None, Some(self.users[u].id)),
            LogKind::RoomUpdated(s) => (s, None, None),
        };
        TruthEvent {
            event_id: e.id.clone(),
            event_type: e.kind.wire_name(self).to_string(),
            stream_id: self.streams[stream].id.clone(),
            message_id: message.map(|m| self.messages[m].id.clone()),
            affected_user_id: affected,
            initiator_user_id: self.users[e.initiator].id,
            timestamp: e.at,
        }
    }
}

/// Normalises a base64 id to URL-safe without padding.
pub(crate) fn normalize_id(id: &str) -> String {
    id.trim()
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// An id as the pod writes it in JSON payloads: standard base64 with padding (ids are kept
/// URL-safe without padding, the form URLs carry).
pub(crate) fn payload_id(id: &str) -> String {
    let mut out = id.replace('-', "+").replace('_', "/");
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

/// Whether an id taken from a URL is in the URL-safe alphabet the pod expects there.
pub(crate) fn url_safe(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn gen_id(rng: &mut ChaCha8Rng, used: &mut HashSet<String>) -> String {
    loop {
        let mut b = [0u8; 25];
        rng.fill(&mut b[..18]);
        b[18..].copy_from_slice(&[0xff, 0xff, 0xfe, 0xa7, 0x02, 0xb5, 0x74]);
        let id = URL_SAFE_NO_PAD.encode(b);
        if used.insert(id.clone()) {
            return id;
        }
    }
}

fn gen_file(
    rng: &mut ChaCha8Rng,
    seed: u64,
    uploader: i64,
    size: u64,
    used: &mut HashSet<String>,
) -> FileData {
    let raw_id = loop {
        let mut b = [0u8; 16];
        rng.fill(&mut b);
        let id = format!("internal_{uploader}/{}", STANDARD.encode(b));
        if used.insert(id.clone()) {
            break id;
        }
    };
    let key: [u8; 32] = Sha256::new()
        .chain_update(b"symphony-sim attachment")
        .chain_update(seed.to_le_bytes())
        .chain_update(raw_id.as_bytes())
        .finalize()
        .into();
    let sha256 = content::sha256_of(key, size);
    FileData {
        listed_id: utf8_percent_encode(&raw_id, ID_ENCODE).to_string(),
        raw_id,
        size,
        key,
        sha256,
    }
}

const FIRST: &[&str] = &[
    "Alice",
    "Bob",
    "Carla",
    "Dmitri",
    "Émilie",
    "Farid",
    "Grace",
    "Hiroshi",
    "Ingrid",
    "José",
    "Katarzyna",
    "Liam",
    "Mei",
    "Nuno",
    "Olivia",
    "Priya",
    "Quentin",
    "Rosa",
    "Søren",
    "Tomás",
    "Uma",
    "Viktor",
    "Wen",
    "Zoë",
];
const LAST: &[&str] = &[
    "Smith",
    "Müller",
    "García",
    "Nguyen",
    "O'Brien",
    "Kowalski",
    "Rossi",
    "Tanaka",
    "Dubois",
    "Andersson",
    "Papadopoulos",
    "Silva",
    "Cohen",
    "Ivanova",
    "Kim",
    "Larsen",
];
const EXTERNAL_NAMES: &[(&str, &str)] = &[
    ("Wei", "Zhang"),
    ("Fatima", "Al-Sayed"),
    ("Lars", "Nilsson"),
    ("Ana", "Souza"),
    ("Raj", "Patel"),
    ("Chloé", "Martin"),
    ("Kwame", "Mensah"),
    ("Ewa", "Nowak"),
];
const TITLES: &[&str] = &[
    "Trader",
    "Sales Trader",
    "Analyst",
    "Portfolio Manager",
    "Structurer",
    "Operations",
];
const DEPARTMENTS: &[&str] = &["Rates", "FX", "Equities", "Credit", "Operations"];
const LOCATIONS: &[&str] = &["London", "New York", "Paris", "Singapore", "Zürich"];
const ROOM_NAMES: &[&str] = &[
    "Rates Desk",
    "EMEA Sales – Q3 \"Pipeline\"",
    "Projet Ω",
    "Trading Floor 🚀",
    "Compliance & Legal <internal>",
    "東京オフィス",
    "Credit Research",
    "FX Options",
];
const WORDS: &[&str] = &[
    "the",
    "desk",
    "rates",
    "curve",
    "swap",
    "bid",
    "offer",
    "client",
    "order",
    "filled",
    "please",
    "check",
    "risk",
    "limit",
    "today",
    "tomorrow",
    "price",
    "spread",
    "bond",
    "yield",
    "update",
    "meeting",
    "call",
    "report",
    "numbers",
    "approve",
    "trade",
    "booked",
    "settle",
    "margin",
    "notional",
    "forward",
    "option",
    "volatility",
    "hedge",
    "liquidity",
    "market",
    "close",
    "open",
    "position",
    "ticket",
    "confirm",
    "counterparty",
    "review",
    "draft",
    "final",
];
const UNICODE_SNIPPETS: &[&str] = &[
    "Grüße aus Zürich – ça va? Ñandú, Ærøskøbing",
    "日本語のメッセージです。東京の市場は本日休場です。",
    "مرحبا بالعالم، هذه رسالة اختبار",
    "שלום עולם",
    "Ελληνικά: Καλημέρα κόσμε",
    "Русский текст: добрый день",
    "Emoji inline 🚀🎉👍🏽 family 👨‍👩‍👧 flag 🇫🇷",
    "Combining: e\u{301} vs é, Å vs A\u{30a}; math ∑ √ ∞ ≈ ≠",
    "Zero-width joiner\u{200d}here and no-break\u{a0}space",
    "中文测试：价格已经更新",
    "한국어 메시지 테스트",
];
const SPECIALS: &[&str] = &[
    "Use <b>tags</b> & \"quotes\" literally: a<b && c>d",
    "XML entities: &amp; &lt; &gt; &quot; &#39; should stay as typed",
    "Path C:\\temp\\file.txt and regex ^[a-z]+$ and 100% sure",
];
const HASHTAGS: &[&str] = &["rates", "compliance", "Q3", "breaking_news", "ΕΛΛΑΔΑ"];
const CASHTAGS: &[&str] = &["AAPL", "MSFT", "EURUSD", "BRK.B", "TSLA"];
const EMOJIS: &[(&str, &str)] = &[
    ("thumbsup", "👍"),
    ("smile", "😄"),
    ("rocket", "🚀"),
    ("warning", "⚠️"),
    ("heart", "❤️"),
    ("white_check_mark", "✅"),
];
const LINKS: &[&str] = &[
    "https://www.example.com/research/note?id=42&lang=en",
    "https://symphony.example/rooms/Ω?x=a%20b#frag",
    "http://intranet.acme-capital.example/wiki/Trading_Desk",
];
const FILE_NAMES: &[&str] = &[
    "report.pdf",
    "Q3 forecast (final).xlsx",
    "notes.txt",
    "Übersicht März.docx",
    "データ.csv",
    "R&D plan #2.pptx",
    "trade-confirm_2024-01-15.pdf",
    "a very long file name that goes on and on to test how names are carried in mail headers and archive indexes.txt",
    "no extension",
    "archive.tar.gz",
];
const IMAGE_NAMES: &[&str] = &[
    "chart.png",
    "screenshot 2024-01-05 at 10.22.13.png",
    "photo.jpg",
];
const USER_AGENTS: &[&str] = &[
    "DESKTOP-24.5.1-12345-Windows-10-Chrome-120.0.6099.234",
    "MOBILE-24.4.0-iOS-17.2",
    "Agent-24.5.1-Linux-5.14.0",
];

fn ascii_fold(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let folded = match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => "a",
            'é' | 'è' | 'ê' | 'ë' | 'É' => "e",
            'í' | 'ì' | 'î' | 'ï' => "i",
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' => "o",
            'ú' | 'ù' | 'û' | 'ü' => "u",
            'ñ' => "n",
            'ç' => "c",
            _ if c.is_ascii_alphanumeric() || c == '-' => {
                out.push(c.to_ascii_lowercase());
                continue;
            }
            _ => "",
        };
        out.push_str(folded);
    }
    out
}

fn sentence(rng: &mut ChaCha8Rng, min: usize, max: usize) -> String {
    let n = rng.gen_range(min..=max);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        let w = WORDS.choose(rng).copied().unwrap_or("ok");
        if i == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                s.extend(f.to_uppercase());
                s.push_str(c.as_str());
            }
        } else {
            s.push_str(w);
        }
    }
    s.push('.');
    s
}

/// Generates the data set for `cfg`.
pub(crate) fn generate(cfg: &SimConfig) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut used_ids = HashSet::new();

    // ---- users -------------------------------------------------------------------------
    let mut users = Vec::new();
    let mut emails = HashSet::new();
    for i in 0..cfg.internal_users {
        let id = 13_537_736_917_000 + i as i64 * 7;
        if i % 7 == 6 {
            let n = i / 7 + 1;
            users.push(User {
                id,
                username: Some(format!("opsbot{n}")),
                email: None,
                first_name: None,
                last_name: None,
                display_name: format!("Ops Bot {n}"),
                company: POD_COMPANY.into(),
                company_id: POD_COMPANY_ID,
                external: false,
                account_type: "SYSTEM",
                title: None,
                department: None,
                location: None,
            });
            continue;
        }
        let first = FIRST[(i * 5 + rng.gen_range(0..3)) % FIRST.len()];
        let last = LAST[rng.gen_range(0..LAST.len())];
        let mut local = format!("{}.{}", ascii_fold(first), ascii_fold(last));
        let base = local.clone();
        let mut k = 2;
        while !emails.insert(local.clone()) {
            local = format!("{base}{k}");
            k += 1;
        }
        users.push(User {
            id,
            username: Some(local.replace('.', "_")),
            email: Some(format!("{local}@{EMAIL_DOMAIN}")),
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            display_name: format!("{first} {last}"),
            company: POD_COMPANY.into(),
            company_id: POD_COMPANY_ID,
            external: false,
            account_type: "NORMAL",
            title: Some(if i == 0 {
                "Compliance Officer".to_string()
            } else {
                TITLES
                    .choose(&mut rng)
                    .copied()
                    .unwrap_or("Trader")
                    .to_string()
            }),
            department: Some(DEPARTMENTS[i % DEPARTMENTS.len()].into()),
            location: Some(LOCATIONS[i % LOCATIONS.len()].into()),
        });
    }
    let internal: Vec<usize> = (0..users.len()).collect();
    for j in 0..cfg.external_users {
        let (first, last) = EXTERNAL_NAMES[j % EXTERNAL_NAMES.len()];
        let (company, company_id, domain) = EXTERNAL_COMPANIES[j % EXTERNAL_COMPANIES.len()];
        let suffix = if j >= EXTERNAL_NAMES.len() {
            format!(" {}", j / EXTERNAL_NAMES.len() + 1)
        } else {
            String::new()
        };
        users.push(User {
            id: 13_606_456_393_700 + j as i64 * 11,
            username: None,
            // A User Provisioning caller sees external users' emails too.
            email: Some(format!(
                "{}.{}{}@{domain}",
                ascii_fold(first),
                ascii_fold(last),
                suffix.trim(),
            )),
            first_name: Some(first.into()),
            last_name: Some(format!("{last}{suffix}")),
            display_name: format!("{first} {last}{suffix}"),
            company: company.into(),
            company_id,
            external: true,
            account_type: "NORMAL",
            title: None,
            department: None,
            location: None,
        });
    }
    let external: Vec<usize> = (internal.len()..users.len()).collect();
    let service_user = users.len();
    for (k, acct) in cfg.service_accounts.iter().enumerate() {
        users.push(User {
            id: 13_537_736_916_990 - k as i64,
            username: Some(acct.username.clone()),
            email: Some(format!(
                "{}@{EMAIL_DOMAIN}",
                ascii_fold(&acct.username.replace(['_', '.'], "-"))
            )),
            first_name: None,
            last_name: None,
            display_name: "Compliance Archiver".into(),
            company: POD_COMPANY.into(),
            company_id: POD_COMPANY_ID,
            external: false,
            account_type: "SYSTEM",
            title: None,
            department: None,
            location: None,
        });
    }
    let humans: Vec<usize> = internal
        .iter()
        .copied()
        .filter(|&i| users[i].email.is_some())
        .collect();
    let officer = humans[0];
    let bots: Vec<usize> = internal
        .iter()
        .copied()
        .filter(|&i| users[i].email.is_none())
        .collect();

    // ---- streams (shape) ---------------------------------------------------------------
    let sc = cfg.streams;
    let mut kinds = Vec::new();
    kinds.extend(std::iter::repeat_n(StreamType::Im, sc.im));
    kinds.extend(std::iter::repeat_n(StreamType::Mim, sc.mim));
    kinds.extend(std::iter::repeat_n(StreamType::Room, sc.room));
    kinds.extend(std::iter::repeat_n(StreamType::Post, sc.post));
    let (mut n_im, mut n_mim, mut n_room) = (0usize, 0usize, 0usize);
    let mut streams = Vec::new();
    let mut empty_room = None;
    for (si, &kind) in kinds.iter().enumerate() {
        let id = gen_id(&mut rng, &mut used_ids);
        let pick_humans = |rng: &mut ChaCha8Rng, n: usize, exclude: &[usize]| {
            let pool: Vec<usize> = humans
                .iter()
                .copied()
                .filter(|u| !exclude.contains(u))
                .collect();
            pool.choose_multiple(rng, n.min(pool.len()))
                .copied()
                .collect::<Vec<_>>()
        };
        let mut s = Stream {
            id,
            kind,
            name: None,
            description: None,
            active: true,
            public: false,
            external: false,
            creator: 0,
            created: 0,
            last_modified: 0,
            last_message: None,
            members: Vec::new(),
            service_member: false,
            later: false,
        };
        let mut member_users: Vec<usize>;
        match kind {
            StreamType::Im => {
                let k = n_im;
                n_im += 1;
                member_users = pick_humans(&mut rng, 1, &[]);
                if k % 3 == 1 && !external.is_empty() {
                    member_users.push(external[k / 3 % external.len()]);
                    s.external = true;
                } else if k % 4 == 3 && !bots.is_empty() {
                    member_users.push(bots[k % bots.len()]);
                } else {
                    let other = pick_humans(&mut rng, 1, &member_users);
                    member_users.extend(other);
                }
            }
            StreamType::Mim => {
                let k = n_mim;
                n_mim += 1;
                let n = rng.gen_range(3..=5);
                member_users = pick_humans(&mut rng, n, &[]);
                if k == 0 && !external.is_empty() {
                    member_users.push(external[(k + 1) % external.len()]);
                    s.external = true;
                }
            }
            StreamType::Room => {
                let k = n_room;
                n_room += 1;
                s.name = Some(if k < ROOM_NAMES.len() {
                    ROOM_NAMES[k].to_string()
                } else {
                    format!(
                        "{} {}",
                        ROOM_NAMES[k % ROOM_NAMES.len()],
                        k / ROOM_NAMES.len() + 1
                    )
                });
                s.description = Some(format!("Room for {}", sentence(&mut rng, 3, 6)));
                let n = rng.gen_range(4..=9);
                member_users = pick_humans(&mut rng, n, &[]);
                if k % 2 == 1 && !external.is_empty() {
                    let ext_n = if external.len() > 1 { 2 } else { 1 };
                    for e in 0..ext_n {
                        member_users.push(external[(k + e) % external.len()]);
                    }
                    s.external = true;
                    if k == 1 {
                        // Created by the other company: origin EXTERNAL.
                        let creator = member_users.pop().unwrap_or(0);
                        member_users.insert(0, creator);
                    }
                }
                if k % 3 == 2 && !bots.is_empty() {
                    member_users.push(bots[0]);
                }
                s.public = !s.external && k % 3 == 0;
                if k == 2 && sc.room >= 4 {
                    s.active = false;
                }
                if sc.room >= 2 && k == sc.room - 1 {
                    empty_room = Some(si);
                }
            }
            StreamType::Post => {
                member_users = pick_humans(&mut rng, 1, &[]);
            }
        }
        s.creator = member_users[0];
        s.members = member_users
            .iter()
            .enumerate()
            .map(|(i, &u)| Member {
                user: u,
                joined: 0,
                left: None,
                owner: i == 0 || (kind == StreamType::Room && i == 1),
                creator: i == 0,
            })
            .collect();
        if kind != StreamType::Room {
            // Only rooms have owners in the admin listing; the creator of an IM/MIM is kept.
            for m in s.members.iter_mut().skip(1) {
                m.owner = false;
            }
        }
        streams.push(s);
    }

    // ---- message counts ----------------------------------------------------------------
    let n_streams = streams.len();
    let mut counts = vec![0usize; n_streams];
    let eligible: Vec<usize> = (0..n_streams).filter(|&s| Some(s) != empty_room).collect();
    let busy = eligible
        .iter()
        .copied()
        .find(|&s| streams[s].kind == StreamType::Room)
        .or_else(|| eligible.first().copied());
    if let Some(busy) = busy {
        let mut remaining = cfg.messages;
        let busy_n = if eligible.len() == 1 {
            remaining
        } else {
            (cfg.messages * 35 / 100).max(cfg.messages.min(1))
        };
        counts[busy] = busy_n;
        remaining -= busy_n;
        for &s in &eligible {
            if remaining == 0 {
                break;
            }
            if s != busy {
                counts[s] += 1;
                remaining -= 1;
            }
        }
        let weights: Vec<u32> = eligible.iter().map(|_| rng.gen_range(1..=10)).collect();
        let total: u32 = weights.iter().sum();
        while remaining > 0 {
            let mut r = rng.gen_range(0..total);
            for (i, w) in weights.iter().enumerate() {
                if r < *w {
                    counts[eligible[i]] += 1;
                    break;
                }
                r -= w;
            }
            remaining -= 1;
        }
    }

    // ---- timelines -----------------------------------------------------------------------
    let mut timelines: Vec<Vec<i64>> = Vec::with_capacity(n_streams);
    for (si, &n) in counts.iter().enumerate() {
        let mut t = if Some(si) == busy {
            cfg.start_time_ms + 60_000
        } else {
            cfg.start_time_ms + rng.gen_range(0..3 * 86_400_000)
        };
        let mut ts = Vec::with_capacity(n);
        for i in 0..n {
            if i > 0 {
                let r: f64 = rng.r#gen();
                let gap = if r < 0.06 {
                    0
                } else if r < 0.75 {
                    rng.gen_range(1_000..300_000)
                } else if r < 0.97 {
                    rng.gen_range(300_000..7_200_000)
                } else {
                    rng.gen_range(7_200_000..172_800_000)
                };
                t += gap;
            }
            ts.push(t);
        }
        if Some(si) == busy {
            // Same-millisecond runs straddling the usual page boundaries (50, 100, 500) and one
            // run longer than a default page.
            for (a, b) in [(46usize, 53usize), (96, 104), (200, 260), (495, 505)] {
                if b + 10 <= n {
                    for i in a + 1..b {
                        ts[i] = ts[a];
                    }
                }
            }
        }
        timelines.push(ts);
    }

    // ---- membership timing -----------------------------------------------------------------
    for (si, s) in streams.iter_mut().enumerate() {
        let ts = &timelines[si];
        let first = ts
            .first()
            .copied()
            .unwrap_or(cfg.start_time_ms + rng.gen_range(0..86_400_000));
        s.created = first - rng.gen_range(3_600_000..20 * 86_400_000);
        let n = ts.len();
        let member_count = s.members.len();
        let mut late = None;
        let mut past = None;
        if matches!(s.kind, StreamType::Room) && member_count >= 5 && n >= 6 {
            late = Some(member_count - 1);
            past = Some(member_count - 2);
        } else if s.kind == StreamType::Mim && member_count >= 4 && n >= 6 {
            late = Some(member_count - 1);
        }
        let created = s.created;
        for (i, m) in s.members.iter_mut().enumerate() {
            m.joined = if i == 0 {
                created
            } else {
                created + rng.gen_range(1..60_000)
            };
            if Some(i) == late {
                m.joined = ts[n / 3];
            }
            if Some(i) == past {
                m.left = Some(ts[2 * n / 3] + 1);
            }
        }
        s.members.sort_by_key(|m| m.joined);
        s.last_modified = s
            .members
            .iter()
            .map(|m| m.left.unwrap_or(m.joined))
            .max()
            .unwrap_or(created);
        s.last_message = ts.last().copied();
    }

    // ---- messages: global order and relations ----------------------------------------------
    let mut slots: Vec<(i64, usize, usize)> = Vec::with_capacity(cfg.messages);
    for (si, ts) in timelines.iter().enumerate() {
        for (pos, &t) in ts.iter().enumerate() {
            slots.push((t, si, pos));
        }
    }
    slots.sort();
    let mut messages: Vec<Message> = Vec::with_capacity(slots.len());
    let mut by_stream: Vec<Vec<usize>> = vec![Vec::new(); n_streams];
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Normal,
        Reply(usize),
        Forward(usize),
        Edit(usize),
    }
    let mut kinds_of: Vec<Kind> = Vec::with_capacity(slots.len());
    let (mut have_reply, mut have_forward, mut have_edit, mut have_chain) =
        (false, false, false, false);
    for &(t, si, _) in &slots {
        let idx = messages.len();
        let stream = &streams[si];
        let active = stream.active_at(t);
        let recent: Vec<usize> = by_stream[si].iter().rev().take(12).copied().collect();
        let edit_targets: Vec<usize> = recent
            .iter()
            .copied()
            .filter(|&m| {
                messages[m].ts < t
                    && messages[m].replaced_by.is_none()
                    && active.contains(&messages[m].sender)
            })
            .collect();
        let chain_targets: Vec<usize> = edit_targets
            .iter()
            .copied()
            .filter(|&m| messages[m].replacing.is_some())
            .collect();
        let forward_sources: Vec<usize> = messages
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, m)| m.stream != si && m.ts < t)
            .take(40)
            .map(|(i, _)| i)
            .collect();
        let r: f64 = rng.r#gen();
        let kind = if !have_edit && !edit_targets.is_empty() {
            Kind::Edit(edit_targets[0])
        } else if have_edit && !have_chain && !chain_targets.is_empty() {
            have_chain = true;
            Kind::Edit(chain_targets[0])
        } else if !have_reply && !recent.is_empty() {
            Kind::Reply(recent[0])
        } else if !have_forward && !forward_sources.is_empty() {
            Kind::Forward(forward_sources[0])
        } else if r < 0.05 && !edit_targets.is_empty() {
            Kind::Edit(*edit_targets.choose(&mut rng).unwrap_or(&edit_targets[0]))
        } else if r < 0.13 && !recent.is_empty() {
            Kind::Reply(*recent.choose(&mut rng).unwrap_or(&recent[0]))
        } else if r < 0.16 && !forward_sources.is_empty() {
            Kind::Forward(
                *forward_sources
                    .choose(&mut rng)
                    .unwrap_or(&forward_sources[0]),
            )
        } else {
            Kind::Normal
        };
        let sender = match kind {
            Kind::Edit(target) => messages[target].sender,
            _ if stream.kind == StreamType::Post => stream.creator,
            _ => *active.choose(&mut rng).unwrap_or(&stream.creator),
        };
        let mut m = Message {
            id: gen_id(&mut rng, &mut used_ids),
            stream: si,
            ts: t,
            sender,
            rendered: Rendered::default(),
            attachments: Vec::new(),
            parent: None,
            replacing: None,
            replaced_by: None,
            initial: None,
            planned_suppression: None,
            user_agent: USER_AGENTS[rng.gen_range(0..USER_AGENTS.len())],
            sid: uuid_text(rng.r#gen()),
            shares: None,
        };
        match kind {
            Kind::Normal => {}
            Kind::Reply(p) => {
                have_reply = true;
                m.parent = Some((p, Relation::Reply));
            }
            Kind::Forward(p) => {
                have_forward = true;
                m.parent = Some((p, Relation::Forward));
            }
            Kind::Edit(target) => {
                have_edit = true;
                m.replacing = Some(target);
                m.initial = Some(messages[target].initial.unwrap_or(target));
                messages[target].replaced_by = Some(idx);
            }
        }
        kinds_of.push(kind);
        by_stream[si].push(idx);
        messages.push(m);
    }

    // ---- content -------------------------------------------------------------------------------
    let mut normal_seen = 0usize;
    let mut attachment_messages = 0usize;
    for idx in 0..messages.len() {
        let si = messages[idx].stream;
        let t = messages[idx].ts;
        let mentionable: Vec<usize> = streams[si]
            .active_at(t)
            .into_iter()
            .filter(|&u| u != messages[idx].sender)
            .collect();
        let rendered = match kinds_of[idx] {
            Kind::Normal => {
                let k = if normal_seen < 13 {
                    normal_seen
                } else {
                    rng.gen_range(0..13)
                };
                normal_seen += 1;
                if normal_seen == 3 || (normal_seen > 3 && rng.gen_bool(0.07)) {
                    let n = if normal_seen == 3 {
                        4
                    } else {
                        rng.gen_range(1..=3)
                    };
                    let uploader = users[messages[idx].sender].id;
                    for a in 0..n {
                        let (name, size) = if normal_seen == 3 {
                            (FILE_NAMES[a % FILE_NAMES.len()].to_string(), a as u64 + 1)
                        } else {
                            let image = rng.gen_bool(0.25);
                            let name = if image {
                                IMAGE_NAMES.choose(&mut rng).copied().unwrap_or("chart.png")
                            } else {
                                FILE_NAMES.choose(&mut rng).copied().unwrap_or("report.pdf")
                            };
                            let hi = (cfg.max_small_attachment_bytes as f64).ln();
                            let size = if hi > 0.0 {
                                rng.gen_range(0.0..hi).exp() as u64
                            } else {
                                1
                            };
                            (
                                name.to_string(),
                                size.clamp(1, cfg.max_small_attachment_bytes),
                            )
                        };
                        let file = gen_file(&mut rng, cfg.seed, uploader, size, &mut used_ids);
                        let thumbnails = if IMAGE_NAMES.contains(&name.as_str()) {
                            let ts = rng.gen_range(200..4_000);
                            vec![gen_file(&mut rng, cfg.seed, uploader, ts, &mut used_ids)]
                        } else {
                            Vec::new()
                        };
                        messages[idx].attachments.push(Attachment {
                            name,
                            file,
                            thumbnails,
                        });
                    }
                    attachment_messages += 1;
                }
                if attachment_messages == 1 && normal_seen == 3 {
                    // Attachment-only message: empty text.
                    MessageBuilder::new(false).finish()
                } else {
                    render_normal(&mut rng, k, &users, &mentionable)
                }
            }
            Kind::Reply(p) => {
                let mut b = MessageBuilder::new(true);
                b.open("p");
                let parent_sender = messages[p].sender;
                if parent_sender != messages[idx].sender && rng.gen_bool(0.5) {
                    b.mention(users[parent_sender].id, &users[parent_sender].display_name)
                        .text(" ");
                }
                b.text(&sentence(&mut rng, 3, 12)).close("p");
                b.finish()
            }
            Kind::Forward(_) => {
                let mut b = MessageBuilder::new(true);
                b.open("p")
                    .text("Forwarding for visibility: ")
                    .text(&sentence(&mut rng, 3, 10))
                    .close("p");
                b.finish()
            }
            Kind::Edit(_) => {
                let mut b = MessageBuilder::new(true);
                b.open("p")
                    .text("Correction: ")
                    .text(&sentence(&mut rng, 4, 12))
                    .close("p");
                b.finish()
            }
        };
        messages[idx].rendered = rendered;
    }

    // The 60,000-character message and the large attachment go on ordinary messages.
    let normals: Vec<usize> = (0..messages.len())
        .filter(|&i| kinds_of[i] == Kind::Normal && messages[i].attachments.is_empty())
        .collect();
    if cfg.max_length_message && !normals.is_empty() {
        let target = normals[normals.len() / 2];
        messages[target].rendered = render_max_length(&mut rng);
    }
    if cfg.large_attachment_bytes > 0 && !normals.is_empty() {
        let non_busy: Vec<usize> = normals
            .iter()
            .copied()
            .filter(|&i| Some(messages[i].stream) != busy)
            .collect();
        let pool = if non_busy.is_empty() {
            &normals
        } else {
            &non_busy
        };
        let target = pool[pool.len() / 3];
        let uploader = users[messages[target].sender].id;
        let file = gen_file(
            &mut rng,
            cfg.seed,
            uploader,
            cfg.large_attachment_bytes,
            &mut used_ids,
        );
        messages[target].attachments.push(Attachment {
            name: "large-export.bin".into(),
            file,
            thumbnails: Vec::new(),
        });
    }

    // ---- inline images ---------------------------------------------------------------------------
    // Every tenth ordinary message without files (the 60,000-character one excepted) becomes
    // a chart shown inline; made without the generator, so the rest of the data set is the
    // same with or without them.
    if cfg.inline_images {
        let long =
            (cfg.max_length_message && !normals.is_empty()).then(|| normals[normals.len() / 2]);
        for &i in normals.iter().step_by(10) {
            if Some(i) != long && messages[i].attachments.is_empty() {
                messages[i].rendered = render_inline_chart(cfg.seed, &messages[i].id);
            }
        }
    }

    // ---- shared wall posts ---------------------------------------------------------------------
    // Every third plain wall post shares the latest earlier message of a conversation (the
    // first one a message with attachments); chosen without the generator, so the rest of
    // the data set is the same with or without walls.
    let mut plain_posts = 0usize;
    for idx in 0..messages.len() {
        let on_wall = streams[messages[idx].stream].kind == StreamType::Post;
        if !on_wall || kinds_of[idx] != Kind::Normal {
            continue;
        }
        plain_posts += 1;
        if plain_posts % 3 != 1 {
            continue;
        }
        let conversation = |i: &usize| streams[messages[*i].stream].kind != StreamType::Post;
        let with_files = (0..idx)
            .rev()
            .filter(conversation)
            .find(|&i| !messages[i].attachments.is_empty());
        let latest = (0..idx).rev().find(conversation);
        messages[idx].shares = if plain_posts == 1 {
            with_files.or(latest)
        } else {
            latest
        };
    }

    // ---- planned suppressions ------------------------------------------------------------------
    if messages.len() >= 10 {
        let candidates: Vec<usize> = (0..messages.len())
            .filter(|&i| messages[i].replaced_by.is_none() && messages[i].replacing.is_none())
            .collect();
        let n = (messages.len() / 40).max(1).min(candidates.len());
        for &i in candidates.choose_multiple(&mut rng, n) {
            let at = messages[i].ts + rng.gen_range(60_000..2 * 86_400_000);
            let by = if rng.gen_bool(0.5) {
                officer
            } else {
                messages[i].sender
            };
            messages[i].planned_suppression = Some((at, by));
        }
    }

    // ---- extra streams ---------------------------------------------------------------------------
    let mut pools = Pools {
        used_ids: &mut used_ids,
        streams: &mut streams,
        messages: &mut messages,
        by_stream: &mut by_stream,
    };
    add_extra_streams(cfg, &humans, &mut pools, false);
    add_extra_streams(cfg, &humans, &mut pools, true);
    let n_streams = streams.len();

    // ---- indexes -----------------------------------------------------------------------------------
    let user_index = users.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
    let message_index = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.clone(), i))
        .collect();
    let mut files = HashMap::new();
    for (mi, m) in messages.iter().enumerate() {
        for (ai, a) in m.attachments.iter().enumerate() {
            files.insert(a.file.raw_id.clone(), (mi, ai, None));
            for (ti, t) in a.thumbnails.iter().enumerate() {
                files.insert(t.raw_id.clone(), (mi, ai, Some(ti)));
            }
        }
    }
    // Streams are listed by creation date.
    let mut order: Vec<usize> = (0..n_streams).collect();
    order.sort_by_key(|&s| (streams[s].created, s));
    let mut remap = vec![0usize; n_streams];
    for (new, &old) in order.iter().enumerate() {
        remap[old] = new;
    }
    let mut sorted_streams: Vec<Option<Stream>> = streams.into_iter().map(Some).collect();
    let streams: Vec<Stream> = order
        .iter()
        .map(|&old| sorted_streams[old].take().expect("each stream once"))
        .collect();
    let mut sorted_by_stream = vec![Vec::new(); n_streams];
    for (old, list) in by_stream.into_iter().enumerate() {
        sorted_by_stream[remap[old]] = list;
    }
    for m in &mut messages {
        m.stream = remap[m.stream];
    }
    let mut streams = streams;
    for (i, s) in streams.iter_mut().enumerate() {
        s.service_member = s.later || cfg.membership.includes(i);
    }
    let stream_index = streams
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();

    Dataset {
        seed: cfg.seed,
        users,
        service_user,
        officer,
        streams,
        messages,
        by_stream: sorted_by_stream,
        user_index,
        stream_index,
        message_index,
        files,
    }
}

/// What the generated streams and messages are being collected in.
struct Pools<'a> {
    used_ids: &'a mut HashSet<String>,
    streams: &'a mut Vec<Stream>,
    messages: &'a mut Vec<Message>,
    by_stream: &'a mut Vec<Vec<usize>>,
}

/// Appends [`SimConfig::extra_streams`] (or, `later`, [`SimConfig::later_streams`]): rooms
/// and IMs of plain messages, from a generator of their own, timed after every other message
/// so that `messages` stays in global order and the rest of the data set is unchanged. A
/// later stream is created after every earlier message, and its messages follow.
fn add_extra_streams(cfg: &SimConfig, humans: &[usize], pools: &mut Pools<'_>, later: bool) {
    let Pools {
        used_ids,
        streams,
        messages,
        by_stream,
    } = pools;
    let extra = if later {
        cfg.later_streams
    } else {
        cfg.extra_streams
    };
    if extra.total() == 0 {
        return;
    }
    let salt = if later {
        0x1a7e_5c0f_fee0_0b5e
    } else {
        0x0e47_7a5e_ed57_2ea4
    };
    let label = if later { "New" } else { "Extra" };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ salt);
    let start = messages
        .last()
        .map_or(cfg.start_time_ms, |m| m.ts.max(cfg.start_time_ms))
        + 60_000;
    let first = streams.len();
    for k in 0..extra.total() {
        let room = k < extra.rooms;
        let n = if room { rng.gen_range(3..=5) } else { 2 };
        let members: Vec<usize> = humans
            .choose_multiple(&mut rng, n.min(humans.len()))
            .copied()
            .collect();
        let created = if later {
            start + k as i64
        } else {
            start - rng.gen_range(3_600_000..10 * 86_400_000)
        };
        streams.push(Stream {
            id: gen_id(&mut rng, used_ids),
            kind: if room {
                StreamType::Room
            } else {
                StreamType::Im
            },
            name: room.then(|| format!("{label} room {}", k + 1)),
            description: room.then(|| format!("{label} room {} of the pod", k + 1)),
            active: true,
            public: false,
            external: false,
            creator: members[0],
            created,
            last_modified: created,
            last_message: None,
            members: members
                .iter()
                .enumerate()
                .map(|(i, &user)| Member {
                    user,
                    joined: created,
                    left: None,
                    owner: room && i == 0,
                    creator: i == 0,
                })
                .collect(),
            service_member: false,
            later,
        });
        by_stream.push(Vec::new());
    }
    // (time, stream, sender) of every extra message, in global order.
    let mut slots = Vec::with_capacity(extra.total() * extra.messages_each);
    for (si, stream) in streams.iter().enumerate().skip(first) {
        let mut t = start + rng.gen_range(0..86_400_000);
        for _ in 0..extra.messages_each {
            t += rng.gen_range(1_000..600_000);
            let sender = stream.members[rng.gen_range(0..stream.members.len())].user;
            slots.push((t, si, sender));
        }
    }
    slots.sort();
    for (ts, si, sender) in slots {
        let mut b = MessageBuilder::new(false);
        b.text(&sentence(&mut rng, 3, 10));
        let sid = uuid_text(rng.r#gen());
        by_stream[si].push(messages.len());
        streams[si].last_message = Some(ts);
        messages.push(Message {
            id: gen_id(&mut rng, used_ids),
            stream: si,
            ts,
            sender,
            rendered: b.finish(),
            attachments: Vec::new(),
            parent: None,
            replacing: None,
            replaced_by: None,
            initial: None,
            planned_suppression: None,
            user_agent: USER_AGENTS[0],
            sid,
            shares: None,
        });
    }
}

fn render_normal(
    rng: &mut ChaCha8Rng,
    kind: usize,
    users: &[User],
    mentionable: &[usize],
) -> Rendered {
    let mut b = MessageBuilder::new(kind.is_multiple_of(2));
    match kind {
        0 => {
            // Plain text as an API-sent message: no paragraph.
            b.text(&sentence(rng, 4, 14));
        }
        1 => {
            b.open("p")
                .text("Please ")
                .inline("b", "review")
                .text(" the ")
                .inline("i", "draft")
                .text(" — ")
                .inline("b", &sentence(rng, 2, 5))
                .close("p");
        }
        2 => {
            b.open("p");
            if let Some(&u) = mentionable.choose(rng) {
                b.text("Hi ")
                    .mention(users[u].id, &users[u].display_name)
                    .text(", ");
            }
            b.text(&sentence(rng, 3, 10));
            if mentionable.len() > 1 {
                let u = mentionable[mentionable.len() - 1];
                b.text(" cc ").mention(users[u].id, &users[u].display_name);
            }
            b.close("p");
        }
        3 => {
            b.open("p")
                .text(&sentence(rng, 3, 8))
                .text(" ")
                .hashtag(HASHTAGS.choose(rng).copied().unwrap_or("rates"))
                .text(" ")
                .cashtag(CASHTAGS.choose(rng).copied().unwrap_or("AAPL"))
                .text(" ")
                .hashtag(HASHTAGS.choose(rng).copied().unwrap_or("Q3"))
                .close("p");
        }
        4 => {
            let (code, uni) = EMOJIS.choose(rng).copied().unwrap_or(("smile", "😄"));
            let (code2, uni2) = EMOJIS.choose(rng).copied().unwrap_or(("rocket", "🚀"));
            b.open("p")
                .text(&sentence(rng, 2, 6))
                .text(" ")
                .emoji(code, uni)
                .emoji(code2, uni2)
                .close("p");
        }
        5 => {
            b.open("p")
                .text("See ")
                .link(LINKS.choose(rng).copied().unwrap_or(LINKS[0]))
                .text(" for details.")
                .close("p");
        }
        6 => {
            b.open("p").text("Positions:").close("p");
            let rows: Vec<Vec<String>> = (0..rng.gen_range(2..5))
                .map(|_| {
                    vec![
                        CASHTAGS.choose(rng).copied().unwrap_or("AAPL").to_string(),
                        rng.gen_range(-5_000..5_000).to_string(),
                        format!("{:.2}", rng.gen_range(1.0..500.0)),
                    ]
                })
                .collect();
            b.table(&["Ticker", "Qty", "Price"], &rows);
        }
        7 => {
            b.open("p")
                .text("Run ")
                .inline("code", "SELECT * FROM trades WHERE qty > 100 && px < 5;")
                .text(" then:")
                .close("p");
            b.pre("fn main() {\n    println!(\"<hello> & bye\");\n}");
        }
        8 => {
            b.open("p").text("Agenda:").close("p").open("ul");
            for _ in 0..rng.gen_range(2..5) {
                b.open("li").text(&sentence(rng, 2, 5)).close("li");
            }
            b.close("ul");
        }
        9 => {
            b.open("p")
                .text(UNICODE_SNIPPETS.choose(rng).copied().unwrap_or("é"))
                .close("p");
        }
        10 => {
            b.open("p")
                .text(SPECIALS.choose(rng).copied().unwrap_or("&"))
                .close("p");
        }
        11 => {
            b.open("p").text(&sentence(rng, 2, 6));
            for _ in 0..rng.gen_range(1..4) {
                b.br().text(&sentence(rng, 2, 6));
            }
            b.close("p");
        }
        _ => {
            b.open("p")
                .text(&sentence(rng, 8, 30))
                .close("p")
                .open("p")
                .text(&sentence(rng, 8, 30))
                .close("p");
        }
    }
    b.finish()
}

/// A message showing a small SVG chart inline (a `data:` URL), its colour and bar heights
/// drawn from the seed and the message id.
fn render_inline_chart(seed: u64, message_id: &str) -> Rendered {
    let h: [u8; 32] = Sha256::new()
        .chain_update(b"symphony-sim inline image")
        .chain_update(seed.to_le_bytes())
        .chain_update(message_id.as_bytes())
        .finalize()
        .into();
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="32" viewBox="0 0 64 32"><g fill="#{}">"##,
        hex::encode(&h[..3])
    );
    for (x, height) in h[3..11].iter().enumerate() {
        let height = 1 + height % 32;
        svg.push_str(&format!(
            r#"<rect x="{}" y="{}" width="6" height="{height}"/>"#,
            x * 8,
            32 - height
        ));
    }
    svg.push_str("</g></svg>");
    let mut b = MessageBuilder::new(true);
    b.open("p").text("Chart of the day:").close("p");
    b.image("image/svg+xml", svg.as_bytes());
    b.finish()
}

/// A message whose plain text is exactly 60,000 characters, multibyte characters included.
fn render_max_length(rng: &mut ChaCha8Rng) -> Rendered {
    const LIMIT: usize = 60_000;
    let mut text = String::new();
    let mut chars = 0usize;
    while chars < LIMIT {
        let piece = if rng.gen_bool(0.1) {
            UNICODE_SNIPPETS
                .choose(rng)
                .copied()
                .unwrap_or("é")
                .to_string()
        } else {
            sentence(rng, 5, 15)
        };
        for c in piece.chars().chain(std::iter::once(' ')) {
            if chars == LIMIT {
                break;
            }
            text.push(c);
            chars += 1;
        }
    }
    // No whitespace at either end so the trimmed text keeps all 60,000 characters.
    if text.ends_with(char::is_whitespace) {
        text.pop();
        text.push('.');
    }
    let mut b = MessageBuilder::new(true);
    b.open("p").text(&text).close("p");
    b.finish()
}

/// 16 bytes written as a UUID (`8-4-4-4-12` hex digits), as message `sid`s are.
fn uuid_text(bytes: [u8; 16]) -> String {
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
