use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::codec::*;
use super::*;

// ---- codec -----------------------------------------------------------

#[test]
fn quoted_strings_escape_quote_and_backslash_and_refuse_line_breaks_and_8bit() {
    assert_eq!(quoted(b"INBOX/Chat").unwrap(), b"\"INBOX/Chat\"");
    assert_eq!(quoted(b"a\"b\\c").unwrap(), b"\"a\\\"b\\\\c\"");
    assert_eq!(quoted(b"").unwrap(), b"\"\"");
    assert!(quoted(b"a\r\nb").is_none());
    assert!(quoted("pässword".as_bytes()).is_none());
    assert!(quoted(b"nul\0").is_none());
}

#[test]
fn strings_that_cannot_be_quoted_become_literals_sized_in_bytes() {
    let args = Args::new("LOGIN")
        .string(b"alice@example.test", false)
        .string("pässwörd".as_bytes(), false);
    assert_eq!(
        args.wire(),
        "LOGIN \"alice@example.test\" {10}\r\npässwörd".as_bytes()
    );
    let args = Args::new("LOGIN").string("ü".as_bytes(), true);
    assert_eq!(args.wire(), "LOGIN {2+}\r\nü".as_bytes());
}

#[test]
fn folder_names_are_modified_utf7_joined_by_the_server_delimiter() {
    let cases = [
        ("INBOX/Symphony", Some('/'), "INBOX/Symphony"),
        ("INBOX/Symphony", Some('.'), "INBOX.Symphony"),
        ("inbox/Chat", Some('/'), "INBOX/Chat"),
        ("INBOX/Entwürfe", Some('/'), "INBOX/Entw&APw-rfe"),
        ("INBOX/日本語", Some('.'), "INBOX.&ZeVnLIqe-"),
        ("INBOX/R&D", Some('/'), "INBOX/R&-D"),
        ("INBOX/Chat 😀", Some('/'), "INBOX/Chat &2D3eAA-"),
        ("INBOX/a\"b", Some('/'), "INBOX/a\"b"),
        ("Archive", None, "Archive"),
    ];
    for (folder, delimiter, want) in cases {
        assert_eq!(
            server_folder_name(folder, delimiter).unwrap(),
            want,
            "{folder}"
        );
    }
    for (folder, delimiter) in [
        ("INBOX/v1.2", Some('.')),
        ("INBOX//x", Some('/')),
        ("", Some('/')),
        ("INBOX/a*", Some('/')),
        ("INBOX/x", None),
        ("INBOX/a\nb", Some('/')),
    ] {
        assert!(
            server_folder_name(folder, delimiter).is_err(),
            "{folder:?} {delimiter:?}"
        );
    }
    // The quoted form escapes what needs escaping.
    let args = Args::new("CREATE").string(b"INBOX/a\"b", false);
    assert_eq!(args.wire(), b"CREATE \"INBOX/a\\\"b\"");
}

#[test]
fn internal_dates_are_rfc3501_date_times_in_utc() {
    assert_eq!(
        internal_date(1_700_000_000_999),
        "\"14-Nov-2023 22:13:20 +0000\""
    );
    assert_eq!(
        internal_date(1_709_539_500_000),
        "\" 4-Mar-2024 08:05:00 +0000\""
    );
    assert_eq!(internal_date(0), "\" 1-Jan-1970 00:00:00 +0000\"");
    assert_eq!(internal_date(-1), "\"31-Dec-1969 23:59:59 +0000\"");
    assert_eq!(
        internal_date(951_782_400_000),
        "\"29-Feb-2000 00:00:00 +0000\""
    );
    assert_eq!(
        internal_date(i64::MIN / 2),
        "\"01-Jan-0001 00:00:00 +0000\""
    );
}

#[test]
fn append_arguments_carry_flags_date_and_non_synchronizing_literals() {
    let hello = Email::from_bytes("h@x".into(), b"hello".to_vec(), 1_700_000_000_000);
    let abc = Email::from_bytes("a@x".into(), b"abc".to_vec(), 0);
    let args = Client::append_args("INBOX/Chat", &[&hello, &abc], true);
    assert_eq!(
        args.wire(),
        b"APPEND \"INBOX/Chat\" (\\Seen) \"14-Nov-2023 22:13:20 +0000\" {5+}\r\nhello (\\Seen) \" 1-Jan-1970 00:00:00 +0000\" {3+}\r\nabc"
    );
    let sync = Client::append_args("INBOX", &[&hello], false);
    assert!(sync.wire().ends_with(b"{5}\r\nhello"));
}

#[test]
fn status_lines_are_parsed_with_their_codes() {
    let s = parse_status(b"a7 OK [APPENDUID 1700 4:6] Append completed.\r\n").unwrap();
    assert_eq!(s.tag, "a7");
    assert_eq!(s.status, Status::Ok);
    assert_eq!(s.code.as_deref(), Some("APPENDUID"));
    assert_eq!(parse_append_uid(&s.code_args), Some((1700, vec![4, 5, 6])));
    assert_eq!(s.text, "Append completed.");

    let s =
        parse_status(b"a8 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n").unwrap();
    assert_eq!(
        (s.status, s.code.as_deref(), s.code_args.as_str()),
        (Status::No, Some("OVERQUOTA"), "")
    );
    assert_eq!(
        s.describe(),
        "[OVERQUOTA] Quota exceeded (mailbox for user is full)"
    );

    let s = parse_status(b"* BYE Server shutting down.\r\n").unwrap();
    assert_eq!((s.tag.as_str(), s.status), ("*", Status::Bye));
    let s = parse_status(b"a1 no Mailbox doesn't exist\r\n").unwrap();
    assert_eq!((s.status, s.code), (Status::No, None));
    assert!(parse_status(b"* 3 EXISTS\r\n").is_none());
    assert!(parse_status(b"* 1 FETCH (UID 3)\r\n").is_none());
}

#[test]
fn uid_sets_expand_ranges_in_order() {
    assert_eq!(parse_uid_set("7"), Some(vec![7]));
    assert_eq!(parse_uid_set("1:3,7,9:8"), Some(vec![1, 2, 3, 7, 8, 9]));
    assert_eq!(parse_uid_set("0"), None);
    assert_eq!(parse_uid_set("1:x"), None);
    assert_eq!(parse_uid_set("1:4000000000"), None);
    assert_eq!(parse_append_uid("12 5"), Some((12, vec![5])));
    assert_eq!(parse_append_uid("12"), None);
}

#[test]
fn message_ids_are_read_from_folded_headers_of_any_case() {
    assert_eq!(
        message_id_of_header(b"Message-ID: <abc@x.invalid>\r\n\r\n").as_deref(),
        Some("abc@x.invalid")
    );
    assert_eq!(
        message_id_of_header(b"message-id:\r\n <folded@x>\r\n\r\n").as_deref(),
        Some("folded@x")
    );
    assert_eq!(message_id_of_header(b"\r\n"), None);
    assert_eq!(message_id_of_header(b"Message-ID: <>\r\n"), None);
}

#[test]
fn sasl_messages_carry_authorization_id_and_bearer_token() {
    use base64::Engine as _;
    let decode = |s: String| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    assert_eq!(
        decode(sasl_plain("alice@x", "admin", "pw")),
        b"alice@x\0admin\0pw"
    );
    assert_eq!(
        decode(sasl_xoauth2("alice@x", "tok")),
        b"user=alice@x\x01auth=Bearer tok\x01\x01"
    );
}

// ---- a fake IMAP server ------------------------------------------------

/// How the fake server behaves.
#[derive(Clone)]
struct Behavior {
    /// Capabilities after login (also in the greeting).
    caps: &'static str,
    uidplus: bool,
    delimiter: &'static str,
    /// Reply to a login instead of OK.
    login_reply: Option<&'static str>,
    /// Once this many messages are stored, store the current command's
    /// messages and close the connection without answering (once).
    drop_after: Option<usize>,
    /// Answer the first APPEND only once the next command has arrived: a
    /// client that waits for each answer before sending more never gets
    /// it.
    hold_first_append: bool,
}

impl Default for Behavior {
    fn default() -> Behavior {
        Behavior {
            caps: "IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS SASL-IR AUTH=PLAIN UNSELECT",
            uidplus: true,
            delimiter: "/",
            login_reply: None,
            drop_after: None,
            hold_first_append: false,
        }
    }
}

#[derive(Default)]
struct Store {
    /// Folder → (uid, bytes).
    folders: HashMap<String, Vec<(u32, Vec<u8>)>>,
    next_uid: u32,
    /// Every command with literals shown as `{n}`/`{n+}`.
    log: Vec<String>,
    /// AUTHENTICATE responses (decoded).
    auth: Vec<Vec<u8>>,
    open: usize,
    max_open: usize,
    connections: usize,
    dropped: bool,
}

struct FakeServer {
    port: u16,
    store: Arc<Mutex<Store>>,
}

impl FakeServer {
    fn start(behavior: Behavior) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let store = Arc::new(Mutex::new(Store {
            next_uid: 1,
            ..Store::default()
        }));
        let shared = store.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (store, behavior) = (shared.clone(), behavior.clone());
                std::thread::spawn(move || serve(stream, &store, &behavior));
            }
        });
        FakeServer { port, store }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap()
    }

    fn commands(&self, verb: &str) -> Vec<String> {
        self.store()
            .log
            .iter()
            .filter(|c| {
                c.split(' ')
                    .nth(1)
                    .is_some_and(|v| v.eq_ignore_ascii_case(verb))
            })
            .cloned()
            .collect()
    }

    fn folder(&self, name: &str) -> Vec<Vec<u8>> {
        self.store()
            .folders
            .get(name)
            .map(|f| f.iter().map(|(_, b)| b.clone()).collect())
            .unwrap_or_default()
    }
}

/// Reads one command: its text (literals as `{n}`) and literals.
fn read_command(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> Option<(String, Vec<Vec<u8>>)> {
    let mut text = String::new();
    let mut literals = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        let s = String::from_utf8_lossy(&line).into_owned();
        let trimmed = s.trim_end_matches(['\r', '\n']);
        text.push_str(trimmed);
        let Some(open) = trimmed.rfind('{').filter(|_| trimmed.ends_with('}')) else {
            return Some((text, literals));
        };
        let spec = &trimmed[open + 1..trimmed.len() - 1];
        let (digits, non_sync) = match spec.strip_suffix('+') {
            Some(d) => (d, true),
            None => (spec, false),
        };
        let n: usize = digits.parse().ok()?;
        if !non_sync {
            writer.write_all(b"+ go ahead\r\n").ok()?;
        }
        let mut buf = vec![0; n];
        reader.read_exact(&mut buf).ok()?;
        literals.push(buf);
    }
}

fn first_quoted(text: &str) -> String {
    let start = text.find('"').unwrap() + 1;
    let mut out = String::new();
    let mut chars = text[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().unwrap()),
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

fn serve(stream: TcpStream, store: &Mutex<Store>, b: &Behavior) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    {
        let mut s = store.lock().unwrap();
        s.open += 1;
        s.connections += 1;
        s.max_open = s.max_open.max(s.open);
    }
    let _ = writer.write_all(format!("* OK [CAPABILITY {}] fake ready\r\n", b.caps).as_bytes());
    let mut selected: Option<String> = None;
    let mut held: Option<String> = None;
    let mut appends = 0;
    while let Some((text, literals)) = read_command(&mut reader, &mut writer) {
        if let Some(reply) = held.take()
            && writer.write_all(reply.as_bytes()).is_err()
        {
            break;
        }
        let (tag, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let verb = rest.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let mut s = store.lock().unwrap();
        s.log.push(text.clone());
        let ok = |t: &str| format!("{tag} OK {t}\r\n");
        let reply = match verb.as_str() {
            "CAPABILITY" => format!("* CAPABILITY {}\r\n{}", b.caps, ok("done")),
            "LOGIN" => b
                .login_reply
                .map(|r| format!("{tag} {r}\r\n"))
                .unwrap_or_else(|| ok("Logged in")),
            "AUTHENTICATE" => {
                use base64::Engine as _;
                let ir = rest.split(' ').nth(2).unwrap_or("");
                s.auth.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(ir)
                        .unwrap_or_default(),
                );
                match b.login_reply {
                    Some(r) if rest.contains("XOAUTH2") => {
                        // XOAUTH2 reports errors in a challenge first.
                        drop(s);
                        let _ = writer.write_all(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n");
                        let mut empty = String::new();
                        let _ = reader.read_line(&mut empty);
                        store
                            .lock()
                            .unwrap()
                            .log
                            .push(format!("(sasl) {:?}", empty));
                        let _ = writer.write_all(format!("{tag} {r}\r\n").as_bytes());
                        continue;
                    }
                    Some(r) => format!("{tag} {r}\r\n"),
                    None => ok("Logged in"),
                }
            }
            "LIST" => {
                let name = first_quoted(&rest[rest.find("\"\"").unwrap() + 2..]);
                let exists = name == "INBOX" || s.folders.contains_key(&name);
                if exists {
                    format!(
                        "* LIST () \"{}\" \"{}\"\r\n{}",
                        b.delimiter,
                        name,
                        ok("List done")
                    )
                } else {
                    ok("List done")
                }
            }
            "CREATE" => {
                let name = first_quoted(rest);
                match s.folders.entry(name) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        format!("{tag} NO [ALREADYEXISTS] Mailbox already exists\r\n")
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(Vec::new());
                        ok("Created")
                    }
                }
            }
            "SUBSCRIBE" | "UNSELECT" | "CLOSE" => ok("done"),
            "EXAMINE" => {
                let name = first_quoted(rest);
                let n = s.folders.get(&name).map_or(0, Vec::len);
                selected = Some(name);
                format!(
                    "* {n} EXISTS\r\n* OK [UIDVALIDITY 77] UIDs valid\r\n{}",
                    ok("[READ-ONLY] Examined")
                )
            }
            "UID" => {
                let from: u32 = rest
                    .split(' ')
                    .nth(2)
                    .and_then(|r| r.split(':').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap();
                let mut out = String::new();
                let folder = s.folders.get(selected.as_deref().unwrap()).unwrap();
                for (seq, (uid, bytes)) in folder.iter().enumerate() {
                    if *uid < from && Some((uid, bytes)) != folder.last().map(|(u, b)| (u, b)) {
                        continue;
                    }
                    let header = String::from_utf8_lossy(bytes)
                        .lines()
                        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
                        .map(|l| format!("{l}\r\n\r\n"))
                        .unwrap_or_else(|| "\r\n".into());
                    out.push_str(&format!(
                        "* {} FETCH (UID {uid} BODY[HEADER.FIELDS (MESSAGE-ID)] {{{}}}\r\n{header})\r\n",
                        seq + 1,
                        header.len()
                    ));
                }
                out + &ok("Fetch completed")
            }
            "APPEND" => {
                let name = first_quoted(rest);
                if literals
                    .iter()
                    .any(|l| l.windows(10).any(|w| w == b"X-Refuse: "))
                {
                    format!("{tag} NO [OVERQUOTA] Quota exceeded\r\n")
                } else if !s.folders.contains_key(&name) {
                    format!("{tag} NO [TRYCREATE] Mailbox doesn't exist\r\n")
                } else {
                    let first = s.next_uid;
                    for l in &literals {
                        let uid = s.next_uid;
                        s.next_uid += 1;
                        s.folders.get_mut(&name).unwrap().push((uid, l.clone()));
                    }
                    let stored: usize = s.folders.values().map(Vec::len).sum();
                    if b.drop_after.is_some_and(|n| stored >= n) && !s.dropped {
                        s.dropped = true;
                        s.open -= 1;
                        return;
                    }
                    let last = s.next_uid - 1;
                    let set = if first == last {
                        first.to_string()
                    } else {
                        format!("{first}:{last}")
                    };
                    if b.uidplus {
                        ok(&format!("[APPENDUID 77 {set}] Append completed"))
                    } else {
                        ok("Append completed")
                    }
                }
            }
            "LOGOUT" => {
                // Counted as closed before the client can see the answer.
                s.open -= 1;
                drop(s);
                let _ = writer.write_all(format!("* BYE bye\r\n{}", ok("Logout")).as_bytes());
                return;
            }
            _ => format!("{tag} BAD unknown command\r\n"),
        };
        drop(s);
        if verb == "APPEND" {
            appends += 1;
            if appends == 1 && b.hold_first_append {
                held = Some(reply);
                continue;
            }
        }
        if writer.write_all(reply.as_bytes()).is_err() {
            break;
        }
    }
    store.lock().unwrap().open -= 1;
}

// ---- the sink against the fake server ------------------------------------

fn settings(port: u16, auth: ImapAuth) -> ImapSettings {
    ImapSettings {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        ca_file: None,
        auth,
        max_connections: 4,
        mailbox_connections: 4,
        batch_messages: 3,
        batch_bytes: 1 << 20,
        timeout: Duration::from_secs(10),
        master_separator: "*".into(),
    }
}

fn master() -> ImapAuth {
    ImapAuth::Master {
        user: "admin".into(),
        password_secret: "imap-master-password".into(),
    }
}

fn secrets() -> Arc<dyn SecretLookup> {
    Arc::new(connector_secrets::SecretStore::from_pairs([
        ("imap-master-password".to_string(), "adminpass".to_string()),
        (
            "imap-password-alice@example.test".to_string(),
            "alicepass".to_string(),
        ),
        ("exchange-token".to_string(), "tok123".to_string()),
    ]))
}

fn sink(server: &FakeServer) -> ImapSink {
    ImapSink::new(settings(server.port, master()), secrets()).unwrap()
}

fn email(id: &str, extra_header: &str) -> Email {
    let message_id = format!("{id}@test.connector.invalid");
    let bytes = format!(
        "Message-ID: <{message_id}>\r\n{extra_header}Subject: {id}\r\n\r\nbody of {id}\r\n"
    )
    .into_bytes();
    Email::from_bytes(message_id, bytes, 1_700_000_000_000)
}

fn mailbox(s: &str) -> Mailbox {
    Mailbox::new(s).unwrap()
}

fn deliveries<'a>(mb: &'a Mailbox, folder: &'a str, emails: &'a [Email]) -> Vec<Delivery<'a>> {
    emails
        .iter()
        .map(|email| Delivery {
            mailbox: mb,
            folder,
            email,
        })
        .collect()
}

/// Alice's receipts for the UIDs `uids` of `INBOX/Chat`.
fn chat_receipts(uids: std::ops::RangeInclusive<u32>) -> Vec<String> {
    uids.map(|uid| format!("imap:alice@example.test/INBOX/Chat;UIDVALIDITY=77;UID={uid}"))
        .collect()
}

/// Delivers `now` to alice's `INBOX/Chat`, telling the sink `next` comes
/// after; checks that every email of `now` was stored.
fn deliver_before_next(sink: &mut ImapSink, mb: &Mailbox, now: &[Email], next: &[Email]) {
    let results = sink.deliver_before(
        &deliveries(mb, "INBOX/Chat", now),
        &deliveries(mb, "INBOX/Chat", next),
    );
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[test]
fn multiappend_batches_by_count_and_bytes_and_receipts_carry_appenduid() {
    let server = FakeServer::start(Behavior::default());
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let emails: Vec<Email> = (0..7).map(|i| email(&format!("m{i}"), "")).collect();
    assert!(
        !sink
            .contains(&mb, "INBOX/Chat", &emails[0].message_id)
            .unwrap()
    );
    let results = sink.deliver(&deliveries(&mb, "INBOX/Chat", &emails));
    let receipts: Vec<String> = results.into_iter().map(|r| r.unwrap().0).collect();
    assert_eq!(receipts, chat_receipts(1..=7));
    let appends = server.commands("APPEND");
    assert_eq!(appends.len(), 3, "7 emails in batches of 3: {appends:?}");
    assert_eq!(appends[0].matches("{").count(), 3);
    assert!(appends[0].contains("(\\Seen) \"14-Nov-2023 22:13:20 +0000\" {"));
    assert!(appends.iter().all(|a| !a.contains('}') || a.contains("+}")));
    let stored = server.folder("INBOX/Chat");
    assert_eq!(stored.len(), 7);
    for (stored, sent) in stored.iter().zip(&emails) {
        assert_eq!(
            &stored[..],
            sent.in_memory().unwrap(),
            "stored byte for byte"
        );
    }
    // Master-user login by AUTHENTICATE PLAIN with the mailbox as authzid.
    assert_eq!(
        server.store().auth[0],
        b"alice@example.test\0admin\0adminpass"
    );
    let creates = server.commands("CREATE");
    assert_eq!(creates.len(), 1);
    assert!(creates[0].ends_with("CREATE \"INBOX/Chat\""));
    assert_eq!(server.commands("SUBSCRIBE").len(), 1);
    assert!(server.commands("LIST")[0].ends_with("LIST \"\" \"INBOX\""));
}

#[test]
fn a_batch_over_the_byte_limit_is_split() {
    let server = FakeServer::start(Behavior::default());
    let mut s = settings(server.port, master());
    s.batch_messages = 100;
    s.batch_bytes = 300;
    let mut sink = ImapSink::new(s, secrets()).unwrap();
    let mb = mailbox("alice@example.test");
    let pad = format!("X-Pad: {}\r\n", "p".repeat(100));
    let emails: Vec<Email> = (0..4).map(|i| email(&format!("m{i}"), &pad)).collect();
    assert!(emails[0].len() > 150 && emails[0].len() < 300);
    let results = sink.deliver(&deliveries(&mb, "INBOX/Chat", &emails));
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        server.commands("APPEND").len(),
        4,
        "one email per 300 bytes"
    );
}

#[test]
fn contains_reads_a_folder_once_and_deliveries_keep_the_cache_current() {
    let server = FakeServer::start(Behavior::default());
    let mb = mailbox("alice@example.test");
    let (a, b) = (email("a", ""), email("b", ""));
    {
        let mut first = sink(&server);
        first.deliver(&deliveries(&mb, "INBOX/Chat", std::slice::from_ref(&a)))[0]
            .as_ref()
            .unwrap();
        assert!(first.contains(&mb, "INBOX/Chat", &a.message_id).unwrap());
        assert!(!first.contains(&mb, "INBOX/Chat", &b.message_id).unwrap());
    }
    let fetches_before = server.commands("UID").len();
    // A new run reads the folder once, whatever it is asked.
    let mut second = sink(&server);
    assert!(second.contains(&mb, "INBOX/Chat", &a.message_id).unwrap());
    assert!(!second.contains(&mb, "INBOX/Chat", &b.message_id).unwrap());
    assert!(!second.contains(&mb, "INBOX/Chat", "other@x").unwrap());
    assert_eq!(server.commands("UID").len(), fetches_before + 1);
    assert!(
        server
            .commands("UID")
            .last()
            .unwrap()
            .contains("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    );
    // An already-present email is answered with the receipt of its copy.
    let results = second.deliver(&deliveries(&mb, "INBOX/Chat", &[a.clone(), b.clone()]));
    assert_eq!(
        results[0].as_ref().unwrap().0,
        "imap:alice@example.test/INBOX/Chat;UIDVALIDITY=77;UID=1"
    );
    assert_eq!(
        results[1].as_ref().unwrap().0,
        "imap:alice@example.test/INBOX/Chat;UIDVALIDITY=77;UID=2"
    );
    assert!(second.contains(&mb, "INBOX/Chat", &b.message_id).unwrap());
    assert_eq!(server.folder("INBOX/Chat").len(), 2);
    assert_eq!(
        server.commands("CREATE").len(),
        2,
        "once per run; exists is fine"
    );
}

#[test]
fn an_email_twice_in_one_batch_is_appended_once() {
    let server = FakeServer::start(Behavior::default());
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let a = email("a", "");
    let results = sink.deliver(&deliveries(&mb, "INBOX/Chat", &[a.clone(), a.clone()]));
    assert_eq!(results[0].as_ref().unwrap(), results[1].as_ref().unwrap());
    assert_eq!(server.folder("INBOX/Chat").len(), 1);
}

#[test]
fn a_refused_email_in_a_multiappend_is_found_by_appending_one_by_one() {
    let server = FakeServer::start(Behavior::default());
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let emails = vec![
        email("ok1", ""),
        email("big", "X-Refuse: yes\r\n"),
        email("ok2", ""),
    ];
    let results = sink.deliver(&deliveries(&mb, "INBOX/Chat", &emails));
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    let err = results[1].as_ref().unwrap_err();
    assert!(matches!(err, SinkError::Refused { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("[OVERQUOTA]"), "{err}");
    assert!(
        err.to_string().contains("big@test.connector.invalid"),
        "{err}"
    );
    let appends = server.commands("APPEND");
    assert_eq!(appends.len(), 4, "one MULTIAPPEND, then three singles");
    let stored = server.folder("INBOX/Chat");
    assert_eq!(
        stored,
        vec![
            emails[0].in_memory().unwrap().to_vec(),
            emails[2].in_memory().unwrap().to_vec()
        ]
    );
}

/// A server that answers the first APPEND only once the next command has
/// arrived, and a sink that gives up after 3 s: a client that waits for
/// that answer before writing more times out.
fn holding_first_append() -> (FakeServer, ImapSink) {
    let server = FakeServer::start(Behavior {
        hold_first_append: true,
        ..Behavior::default()
    });
    let mut s = settings(server.port, master());
    s.timeout = Duration::from_secs(3);
    let sink = ImapSink::new(s, secrets()).unwrap();
    (server, sink)
}

#[test]
fn the_next_multiappend_is_on_the_wire_before_the_last_is_answered() {
    let (server, mut sink) = holding_first_append();
    let mb = mailbox("alice@example.test");
    let emails: Vec<Email> = (0..9).map(|i| email(&format!("m{i}"), "")).collect();
    let results = sink.deliver(&deliveries(&mb, "INBOX/Chat", &emails));
    let receipts: Vec<String> = results.into_iter().map(|r| r.unwrap().0).collect();
    assert!(receipts[8].ends_with(";UID=9"), "{receipts:?}");
    assert_eq!(server.commands("APPEND").len(), 3);
    assert_eq!(server.store().connections, 1);
}

#[test]
fn a_refused_multiappend_with_the_next_in_flight_finds_its_culprit_and_the_next_lands_once() {
    let server = FakeServer::start(Behavior::default());
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let mut emails: Vec<Email> = (0..6).map(|i| email(&format!("m{i}"), "")).collect();
    emails[1] = email("big", "X-Refuse: yes\r\n");
    let results = sink.deliver(&deliveries(&mb, "INBOX/Chat", &emails));
    for (i, r) in results.iter().enumerate() {
        match i {
            1 => assert!(matches!(r, Err(SinkError::Refused { .. })), "{r:?}"),
            _ => assert!(r.is_ok(), "{i}: {r:?}"),
        }
    }
    // Two MULTIAPPENDs on the wire, then the first's three one by one.
    assert_eq!(server.commands("APPEND").len(), 5);
    let mut stored = server.folder("INBOX/Chat");
    stored.sort();
    let mut expected: Vec<Vec<u8>> = [0, 2, 3, 4, 5]
        .iter()
        .map(|&i| emails[i].in_memory().unwrap().to_vec())
        .collect();
    expected.sort();
    assert_eq!(stored, expected, "each accepted email once");
}

#[test]
fn the_next_calls_first_emails_are_on_the_wire_before_the_last_answer_and_that_call_takes_them_over()
 {
    let (server, mut sink) = holding_first_append();
    let mb = mailbox("alice@example.test");
    let emails: Vec<Email> = (0..9).map(|i| email(&format!("m{i}"), "")).collect();
    let (now, next) = emails.split_at(3);
    // Answered, so the next call's first MULTIAPPEND was written before
    // this call read its answer.
    deliver_before_next(&mut sink, &mb, now, next);
    // Written ahead is not "already there": the pipeline asks first.
    assert!(
        !sink
            .contains(&mb, "INBOX/Chat", &next[0].message_id)
            .unwrap()
    );
    let second = sink.deliver(&deliveries(&mb, "INBOX/Chat", next));
    let receipts: Vec<String> = second.into_iter().map(|r| r.unwrap().0).collect();
    assert_eq!(receipts, chat_receipts(4..=9));
    // This call's, then the next call's two (the wire holds two at once):
    // the second call wrote nothing of its own.
    assert_eq!(server.commands("APPEND").len(), 3, "nothing appended twice");
    let stored = server.folder("INBOX/Chat");
    assert_eq!(stored.len(), 9);
    for (stored, sent) in stored.iter().zip(&emails) {
        assert_eq!(&stored[..], sent.in_memory().unwrap());
    }
    assert_eq!(server.store().connections, 1);
}

#[test]
fn emails_written_ahead_are_kept_for_their_call_when_another_call_comes_first() {
    let server = FakeServer::start(Behavior::default());
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let emails: Vec<Email> = (0..6).map(|i| email(&format!("m{i}"), "")).collect();
    let other = [email("other", "")];
    let (now, next) = emails.split_at(3);
    deliver_before_next(&mut sink, &mb, now, next);
    // Another folder needs the connection: what was written ahead is
    // answered first and kept.
    let between = sink.deliver(&deliveries(&mb, "INBOX/Other", &other));
    assert!(between[0].is_ok(), "{between:?}");
    assert!(
        !sink
            .contains(&mb, "INBOX/Chat", &next[0].message_id)
            .unwrap()
    );
    let later = sink.deliver(&deliveries(&mb, "INBOX/Chat", next));
    let receipts: Vec<String> = later.into_iter().map(|r| r.unwrap().0).collect();
    assert_eq!(receipts, chat_receipts(4..=6));
    assert_eq!(server.folder("INBOX/Chat").len(), 6, "each email once");
    assert_eq!(server.commands("APPEND").len(), 3);
}

#[test]
fn a_refused_multiappend_written_ahead_is_appended_again_by_its_call_which_finds_the_culprit() {
    let server = FakeServer::start(Behavior::default());
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let mut emails: Vec<Email> = (0..6).map(|i| email(&format!("m{i}"), "")).collect();
    emails[4] = email("big", "X-Refuse: yes\r\n");
    let (now, next) = emails.split_at(3);
    deliver_before_next(&mut sink, &mb, now, next);
    let second = sink.deliver(&deliveries(&mb, "INBOX/Chat", next));
    for (i, r) in second.iter().enumerate() {
        match i {
            1 => assert!(matches!(r, Err(SinkError::Refused { .. })), "{r:?}"),
            _ => assert!(r.is_ok(), "{i}: {r:?}"),
        }
    }
    // This call's, the next's written ahead (refused), then the next's
    // again one by one.
    assert_eq!(server.commands("APPEND").len(), 5);
    assert_eq!(
        server.folder("INBOX/Chat").len(),
        5,
        "each accepted email once"
    );
}

#[test]
fn a_connection_cut_with_emails_written_ahead_appends_nothing_twice() {
    let server = FakeServer::start(Behavior {
        drop_after: Some(6),
        ..Behavior::default()
    });
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let emails: Vec<Email> = (0..6).map(|i| email(&format!("m{i}"), "")).collect();
    let (now, next) = emails.split_at(3);
    deliver_before_next(&mut sink, &mb, now, next);
    // The server stored what was written ahead and closed the connection
    // without answering.
    let batch = deliveries(&mb, "INBOX/Chat", next);
    let cut = sink.deliver(&batch);
    assert!(
        cut.iter()
            .all(|r| matches!(r, Err(SinkError::Unavailable { .. }))),
        "{cut:?}"
    );
    let retried = sink.deliver(&batch);
    let receipts: Vec<String> = retried.into_iter().map(|r| r.unwrap().0).collect();
    assert!(
        receipts[0].ends_with(";UID=4") && receipts[2].ends_with(";UID=6"),
        "{receipts:?}"
    );
    assert_eq!(
        server.folder("INBOX/Chat").len(),
        6,
        "nothing appended twice"
    );
    assert_eq!(server.store().connections, 2);
}

#[test]
fn without_multiappend_single_appends_are_pipelined_with_literal_plus() {
    let server = FakeServer::start(Behavior {
        caps: "IMAP4rev1 LITERAL+ UIDPLUS AUTH=PLAIN AUTH=XOAUTH2 SASL-IR",
        ..Behavior::default()
    });
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let emails: Vec<Email> = (0..5).map(|i| email(&format!("m{i}"), "")).collect();
    let results = sink.deliver(&deliveries(&mb, "INBOX/Chat", &emails));
    assert!(results.iter().all(Result::is_ok));
    let appends = server.commands("APPEND");
    assert_eq!(appends.len(), 5);
    assert!(
        appends.iter().all(|a| a.matches("+}").count() == 1),
        "{appends:?}"
    );
    assert!(results[4].as_ref().unwrap().0.ends_with(";UID=5"));
    // CLOSE instead of UNSELECT when UNSELECT is not offered.
    assert_eq!(server.commands("CLOSE").len(), 1);
}

#[test]
fn without_literal_plus_each_append_waits_for_the_continuation() {
    let server = FakeServer::start(Behavior {
        caps: "IMAP4rev1 UIDPLUS",
        ..Behavior::default()
    });
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let emails: Vec<Email> = (0..2).map(|i| email(&format!("m{i}"), "")).collect();
    let results = sink.deliver(&deliveries(&mb, "INBOX/Chat", &emails));
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let appends = server.commands("APPEND");
    assert_eq!(appends.len(), 2);
    assert!(appends.iter().all(|a| !a.contains("+}")), "{appends:?}");
    // No AUTH=PLAIN: the master user logs in as `user*master`.
    let login = &server.commands("LOGIN")[0];
    assert!(
        login.ends_with("LOGIN \"alice@example.test*admin\" \"adminpass\""),
        "{login}"
    );
}

#[test]
fn without_uidplus_receipts_name_the_folder_only() {
    let server = FakeServer::start(Behavior {
        uidplus: false,
        ..Behavior::default()
    });
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let emails: Vec<Email> = (0..2).map(|i| email(&format!("m{i}"), "")).collect();
    let results = sink.deliver(&deliveries(&mb, "INBOX/Chat", &emails));
    for r in results {
        assert_eq!(r.unwrap().0, "imap:alice@example.test/INBOX/Chat");
    }
}

#[test]
fn the_server_delimiter_names_the_folder() {
    let server = FakeServer::start(Behavior {
        delimiter: ".",
        ..Behavior::default()
    });
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let results = sink.deliver(&deliveries(&mb, "INBOX/Entwürfe", &[email("a", "")]));
    assert_eq!(
        results[0].as_ref().unwrap().0,
        "imap:alice@example.test/INBOX/Entwürfe;UIDVALIDITY=77;UID=1"
    );
    assert_eq!(server.folder("INBOX.Entw&APw-rfe").len(), 1);
}

#[test]
fn a_dropped_connection_is_retryable_and_the_retry_appends_nothing_twice() {
    let server = FakeServer::start(Behavior {
        drop_after: Some(4),
        ..Behavior::default()
    });
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let emails: Vec<Email> = (0..8).map(|i| email(&format!("m{i}"), "")).collect();
    let batch = deliveries(&mb, "INBOX/Chat", &emails);
    let first = sink.deliver(&batch);
    // 3 stored and acknowledged; the second MULTIAPPEND (3 more) was
    // stored but not acknowledged; the third was on the wire behind it
    // (pipelined) and never stored.
    assert!(first[..3].iter().all(Result::is_ok), "{first:?}");
    for r in &first[3..] {
        let err = r.as_ref().unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(matches!(err, SinkError::Unavailable { .. }), "{err}");
    }
    assert_eq!(server.folder("INBOX/Chat").len(), 6);
    // The pipeline retries what failed: the sink reconnects, reads what
    // arrived since, and appends only the rest.
    let retry: Vec<Delivery<'_>> = batch[3..].to_vec();
    let second = sink.deliver(&retry);
    let receipts: Vec<String> = second.into_iter().map(|r| r.unwrap().0).collect();
    assert!(
        receipts[0].ends_with(";UID=4") && receipts[4].ends_with(";UID=8"),
        "{receipts:?}"
    );
    let stored = server.folder("INBOX/Chat");
    assert_eq!(stored.len(), 8, "nothing appended twice");
    for (stored, sent) in stored.iter().zip(&emails) {
        assert_eq!(&stored[..], sent.in_memory().unwrap());
    }
    assert_eq!(server.store().connections, 2);
    let fetches = server.commands("UID");
    assert!(
        fetches.last().unwrap().contains("UID FETCH 4:*"),
        "{fetches:?}"
    );
}

#[test]
fn refused_credentials_are_not_retryable_and_name_the_secret_to_fix() {
    let server = FakeServer::start(Behavior {
        login_reply: Some("NO [AUTHENTICATIONFAILED] Authentication failed."),
        ..Behavior::default()
    });
    let mut sink = ImapSink::new(
        settings(server.port, master()),
        Arc::new(connector_secrets::SecretSource::Env {
            prefix: "IMAPTEST_AUTHFAIL_".into(),
        }),
    )
    .unwrap();
    // SAFETY: the variable name is unique to this test.
    unsafe { std::env::set_var("IMAPTEST_AUTHFAIL_IMAP_MASTER_PASSWORD", "wrong") };
    let mb = mailbox("alice@example.test");
    let err = sink.contains(&mb, "INBOX/Chat", "x@y").unwrap_err();
    assert!(matches!(err, SinkError::Authentication { .. }), "{err}");
    assert!(!err.is_retryable());
    let msg = err.to_string();
    assert!(msg.contains("AUTHENTICATIONFAILED"), "{msg}");
    assert!(
        msg.contains("IMAPTEST_AUTHFAIL_IMAP_MASTER_PASSWORD"),
        "{msg}"
    );
    assert!(msg.contains("`admin`"), "{msg}");
}

#[test]
fn a_missing_secret_says_where_to_set_it() {
    let server = FakeServer::start(Behavior::default());
    let mut sink = ImapSink::new(
        settings(
            server.port,
            ImapAuth::Login {
                password_secret: "imap-password-{mailbox}".into(),
            },
        ),
        secrets(),
    )
    .unwrap();
    let err = sink
        .contains(&mailbox("bob@example.test"), "INBOX/Chat", "x@y")
        .unwrap_err();
    assert!(matches!(err, SinkError::Authentication { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("`imap-password-bob@example.test` is not set"),
        "{err}"
    );
    // Alice's own password works.
    assert!(
        !sink
            .contains(&mailbox("alice@example.test"), "INBOX/Chat", "x@y")
            .unwrap()
    );
    let login = &server.commands("LOGIN")[0];
    assert!(
        login.ends_with("LOGIN \"alice@example.test\" \"alicepass\""),
        "{login}"
    );
}

#[test]
fn a_temporary_login_failure_is_retryable() {
    let server = FakeServer::start(Behavior {
        login_reply: Some("NO [UNAVAILABLE] Temporary authentication failure."),
        ..Behavior::default()
    });
    let mut sink = sink(&server);
    let err = sink
        .contains(&mailbox("alice@example.test"), "INBOX/Chat", "x@y")
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[test]
fn xoauth2_sends_the_bearer_token_and_finishes_an_error_challenge() {
    let server = FakeServer::start(Behavior {
        caps: "IMAP4rev1 LITERAL+ UIDPLUS SASL-IR AUTH=XOAUTH2",
        ..Behavior::default()
    });
    let auth = ImapAuth::XOAuth2(XOAuth2Token::Secret("exchange-token".into()));
    let mut ok = ImapSink::new(settings(server.port, auth.clone()), secrets()).unwrap();
    let mb = mailbox("alice@example.test");
    assert!(!ok.contains(&mb, "INBOX/Chat", "x@y").unwrap());
    assert_eq!(
        server.store().auth[0],
        b"user=alice@example.test\x01auth=Bearer tok123\x01\x01"
    );

    let failing = FakeServer::start(Behavior {
        caps: "IMAP4rev1 LITERAL+ UIDPLUS SASL-IR AUTH=XOAUTH2",
        login_reply: Some("NO [AUTHENTICATIONFAILED] AUTHENTICATE failed."),
        ..Behavior::default()
    });
    let mut sink = ImapSink::new(settings(failing.port, auth), secrets()).unwrap();
    let err = sink.contains(&mb, "INBOX/Chat", "x@y").unwrap_err();
    assert!(matches!(err, SinkError::Authentication { .. }), "{err}");
    assert!(err.to_string().contains("exchange-token"), "{err}");
    assert!(failing.store().log.iter().any(|l| l == "(sasl) \"\\r\\n\""));

    // A server without XOAUTH2 is a settings problem.
    let plain = FakeServer::start(Behavior::default());
    let mut sink = ImapSink::new(
        settings(
            plain.port,
            ImapAuth::XOAuth2(XOAuth2Token::Secret("exchange-token".into())),
        ),
        secrets(),
    )
    .unwrap();
    let err = sink.contains(&mb, "INBOX/Chat", "x@y").unwrap_err();
    assert!(matches!(err, SinkError::Setup { .. }), "{err}");
}

#[test]
fn mailboxes_are_worked_in_parallel_within_the_connection_limit() {
    let server = FakeServer::start(Behavior::default());
    let mut s = settings(server.port, master());
    s.max_connections = 2;
    let mut sink = ImapSink::new(s, secrets()).unwrap();
    let boxes: Vec<Mailbox> = (0..5)
        .map(|i| mailbox(&format!("u{i}@example.test")))
        .collect();
    let emails: Vec<Email> = (0..4).map(|i| email(&format!("m{i}"), "")).collect();
    for mb in &boxes {
        assert!(
            !sink
                .contains(mb, "INBOX/Chat", &emails[0].message_id)
                .unwrap()
        );
        assert!(sink.open_connections() <= 2);
    }
    let mut batch = Vec::new();
    for e in &emails {
        for mb in &boxes {
            batch.push(Delivery {
                mailbox: mb,
                folder: "INBOX/Chat",
                email: e,
            });
        }
    }
    let results = sink.deliver(&batch);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(sink.open_connections() <= 2);
    assert!(server.store().max_open <= 2, "{}", server.store().max_open);
    // Every mailbox has all four, in order (UIDs are global in the fake).
    let folder = server.folder("INBOX/Chat");
    assert_eq!(folder.len(), 20);
    // Receipts follow the batch order.
    for (d, r) in batch.iter().zip(&results) {
        assert!(
            r.as_ref()
                .unwrap()
                .0
                .starts_with(&format!("imap:{}/", d.mailbox))
        );
    }
}

#[test]
fn an_email_over_the_sync_limit_goes_alone_with_a_synchronizing_literal() {
    let server = FakeServer::start(Behavior::default());
    let mut sink = sink(&server);
    let mb = mailbox("alice@example.test");
    let big_body = "b".repeat(SYNC_LITERAL_ABOVE + 10);
    let small = email("big", "");
    let mut bytes = small.in_memory().unwrap().to_vec();
    bytes.extend_from_slice(big_body.as_bytes());
    let big = Email::from_bytes(small.message_id, bytes, small.sent_at);
    let emails = vec![email("a", ""), big.clone(), email("c", "")];
    let results = sink.deliver(&deliveries(&mb, "INBOX/Chat", &emails));
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let appends = server.commands("APPEND");
    assert_eq!(appends.len(), 3);
    assert!(
        appends[1].contains(&format!("{{{}}}", big.len())),
        "{}",
        &appends[1][..100]
    );
    assert_eq!(server.folder("INBOX/Chat")[1], big.in_memory().unwrap());
}

#[test]
fn settings_need_the_secrets_their_auth_uses() {
    let base = ImapSinkConfig {
        host: "imap.example.test".into(),
        port: None,
        tls: TlsMode::Implicit,
        ca_file: None,
        auth: ImapAuthMethod::Master,
        master_user: None,
        master_separator: "*".into(),
        password_secret: Some("p".into()),
        token_secret: None,
        tenant: None,
        client_id: None,
        client_secret_secret: None,
        login_url: None,
        max_connections: 4,
        mailbox_connections: 4,
        batch_messages: 100,
        batch_mb: 32,
        timeout_secs: 120,
    };
    let err = ImapSettings::from_config(&base).unwrap_err();
    assert!(err.contains("master-user"), "{err}");
    let ok = ImapSettings::from_config(&ImapSinkConfig {
        master_user: Some("admin".into()),
        ..base.clone()
    })
    .unwrap();
    assert_eq!(ok.port, 993);
    assert_eq!(ok.batch_bytes, 32 << 20);
    let err = ImapSettings::from_config(&ImapSinkConfig {
        auth: ImapAuthMethod::Xoauth2,
        ..base.clone()
    })
    .unwrap_err();
    assert!(err.contains("token-secret"), "{err}");
    let xoauth2 = ImapSinkConfig {
        auth: ImapAuthMethod::Xoauth2,
        tenant: Some("contoso.example".into()),
        client_id: Some("app-id".into()),
        ..base.clone()
    };
    let err = ImapSettings::from_config(&xoauth2).unwrap_err();
    assert!(err.contains("missing: `client-secret-secret`"), "{err}");
    let app = ImapSettings::from_config(&ImapSinkConfig {
        client_secret_secret: Some("imap-client-secret".into()),
        ..xoauth2.clone()
    })
    .unwrap();
    let ImapAuth::XOAuth2(XOAuth2Token::App(credentials)) = &app.auth else {
        panic!("app tokens: {:?}", app.auth);
    };
    assert_eq!(credentials.scope, EXCHANGE_SCOPE);
    assert_eq!(
        credentials.token_url(),
        "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token"
    );
    let err = ImapSettings::from_config(&ImapSinkConfig {
        token_secret: Some("exchange-token".into()),
        ..xoauth2.clone()
    })
    .unwrap_err();
    assert!(err.contains("exclude each other"), "{err}");
    let err = ImapSettings::from_config(&ImapSinkConfig {
        client_secret_secret: Some("imap-client-secret".into()),
        login_url: Some("ftp://login.example".into()),
        ..xoauth2
    })
    .unwrap_err();
    assert!(err.contains("`login-url`"), "{err}");
    let starttls = ImapSettings::from_config(&ImapSinkConfig {
        auth: ImapAuthMethod::Login,
        tls: TlsMode::Starttls,
        ..base.clone()
    })
    .unwrap();
    assert_eq!(starttls.port, 143);
}

#[test]
fn an_unusable_ca_file_is_a_settings_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "not a certificate").unwrap();
    let mut s = settings(993, master());
    s.tls = TlsMode::Implicit;
    s.ca_file = Some(path);
    let err = ImapSink::new(s, secrets()).unwrap_err();
    assert!(matches!(err, SinkError::Setup { .. }), "{err}");
    assert!(err.to_string().contains("ca-file"), "{err}");
}

#[test]
fn an_unreachable_server_is_retryable() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut sink = ImapSink::new(settings(port, master()), secrets()).unwrap();
    let mb = mailbox("alice@example.test");
    let results = sink.deliver(&deliveries(&mb, "INBOX/Chat", &[email("a", "")]));
    let err = results[0].as_ref().unwrap_err();
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err}");
    assert!(sink.describe().contains(&format!("127.0.0.1:{port}")));
    let _ = AtomicUsize::new(0).load(Ordering::Relaxed);
}

#[test]
fn an_unreachable_token_endpoint_is_retryable_and_a_missing_client_secret_names_it() {
    let server = FakeServer::start(Behavior {
        caps: "IMAP4rev1 LITERAL+ UIDPLUS SASL-IR AUTH=XOAUTH2",
        ..Behavior::default()
    });
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = |secret_name: &str| {
        ImapAuth::XOAuth2(XOAuth2Token::App(
            ClientCredentials::from_keys(
                "contoso.example",
                "app-id",
                secret_name,
                &format!("http://127.0.0.1:{closed}"),
                EXCHANGE_SCOPE,
                Duration::from_secs(5),
            )
            .unwrap(),
        ))
    };
    let mb = mailbox("alice@example.test");
    let mut sink = ImapSink::new(settings(server.port, app("exchange-token")), secrets()).unwrap();
    let err = sink.contains(&mb, "INBOX/Chat", "x@y").unwrap_err();
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("/contoso.example/oauth2/v2.0/token"),
        "{err}"
    );
    let mut sink = ImapSink::new(settings(server.port, app("not-set")), secrets()).unwrap();
    let err = sink.contains(&mb, "INBOX/Chat", "x@y").unwrap_err();
    assert!(err.is_fatal(), "{err}");
    assert!(err.to_string().contains("`not-set`"), "{err}");
    assert!(server.store().auth.is_empty());
}

proptest::proptest! {
    #[test]
    fn any_folder_path_reaches_the_server_as_names_that_decode_back(
        components in proptest::collection::vec("[^/.*%\\p{Cc}]{1,16}", 1..4),
        delimiter in proptest::sample::select(vec!['/', '.']),
    ) {
        let path = components.join("/");
        let name = server_folder_name(&path, Some(delimiter)).unwrap();
        let decoded: Vec<String> = name
            .split(delimiter)
            .map(|c| connector_sink::mutf7::decode(c).unwrap())
            .collect();
        let mut expected = components.clone();
        if expected[0].eq_ignore_ascii_case("INBOX") {
            expected[0] = "INBOX".into();
        }
        proptest::prop_assert_eq!(decoded, expected);
    }
}

#[test]
fn connections_to_a_mailbox_share_its_slots_with_other_workers_and_free_them_when_closed() {
    let server = FakeServer::start(Behavior::default());
    let mb = mailbox("alice@example.test");
    let mut s = settings(server.port, master());
    s.mailbox_connections = 1;
    s.timeout = Duration::from_millis(500);
    let budget: Arc<dyn MailboxBudget> = Arc::new(LocalBudget::default());
    let mut first = ImapSink::new(s.clone(), secrets()).unwrap();
    first.share_budget(budget.clone());
    let mut other = ImapSink::new(s, secrets()).unwrap();
    other.share_budget(budget.clone());
    let a = email("a", "");
    first.deliver(&deliveries(&mb, "INBOX/Chat", std::slice::from_ref(&a)))[0]
        .as_ref()
        .unwrap();
    // The first sink keeps its connection, so its slot: the other waits,
    // then reports the mailbox busy (retryable).
    let busy = other
        .contains(&mb, "INBOX/Chat", &a.message_id)
        .unwrap_err();
    assert!(busy.is_retryable(), "{busy}");
    assert!(busy.to_string().contains("mailbox-connections"), "{busy}");
    assert_eq!(server.store().connections, 1);
    drop(first);
    assert!(other.contains(&mb, "INBOX/Chat", &a.message_id).unwrap());
}
