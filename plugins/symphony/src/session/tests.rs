//! The session against an in-memory pod that answers like the spec says.

use std::collections::{BTreeMap, HashMap, HashSet};

use connector_sdk::http::{FullResponse, HttpError, Request};
use connector_sdk::{AttachmentBody, ConversationKind, MessageKind, Page, Relation, SourceError};
use serde_json::{Value, json};

use super::*;

#[derive(Clone)]
struct FakeStream {
    id: String,
    kind: &'static str,
    name: Option<String>,
    /// (user id, external)
    members: Vec<(i64, bool)>,
    /// (ts, id, json)
    messages: Vec<(i64, String, Value)>,
}

/// A failure to answer: path fragment, status, extra headers.
type Injected = (String, u16, Vec<(String, String)>);

#[derive(Default)]
struct FakePod {
    streams: Vec<FakeStream>,
    /// id → (name, email)
    users: BTreeMap<i64, (String, Option<String>)>,
    events: Vec<Value>,
    valid: HashSet<String>,
    counter: u64,
    now: i64,
    /// Requests as `METHOD path?query`.
    log: Vec<String>,
    /// Answer the next request whose path contains the key with this
    /// status and headers (once per entry).
    fail: Vec<Injected>,
    /// Refuse every session token once (they expire).
    expire: bool,
    /// Simplified Key Delivery: the agent takes the session token alone.
    skd: bool,
    signed: Vec<String>,
    /// The login an instance remembers between its sessions.
    remembered: Option<(String, crate::client::Tokens)>,
}

fn response(status: u16, body: Value) -> FullResponse {
    FullResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: if status == 204 {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        },
    }
}

fn query(url: &str) -> HashMap<String, String> {
    url.split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

impl FakePod {
    fn user_json(&self, id: i64) -> Value {
        let (name, email) = self.users.get(&id).cloned().unwrap_or_default();
        let mut v = json!({"userId": id, "displayName": name});
        if let Some(e) = email {
            v["email"] = json!(e);
        }
        v
    }

    fn stream(&self, id: &str) -> Option<&FakeStream> {
        self.streams.iter().find(|s| s.id == id)
    }

    fn answer(&mut self, req: &Request) -> FullResponse {
        let path_q = req.url.split_once("://").unwrap().1;
        let path_q = &path_q[path_q.find('/').unwrap()..];
        let path = path_q.split('?').next().unwrap().to_string();
        let q = query(&req.url);
        let method = crate::client::endpoint(req.method, "http://h/")
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        self.log.push(format!("{method} {path_q}"));
        if let Some(i) = self
            .fail
            .iter()
            .position(|(k, _, _)| path.contains(k.as_str()))
        {
            let (_, status, headers) = self.fail.remove(i);
            let mut r = response(status, json!({"code": status, "message": "injected"}));
            r.headers.extend(headers);
            return r;
        }
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        if path.ends_with("/pubkey/authenticate") {
            let body: Value = serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
            let token = body["token"].as_str().unwrap();
            assert_eq!(token.split('.').count(), 3);
            self.counter += 1;
            let (name, t) = if path.starts_with("/login") {
                ("sessionToken", format!("s{}", self.counter))
            } else {
                ("keyManagerToken", format!("k{}", self.counter))
            };
            self.valid.insert(t.clone());
            return response(200, json!({"name": name, "token": t}));
        }
        if self.expire {
            self.expire = false;
            self.valid.clear();
        }
        let session_ok = header("sessionToken").is_some_and(|t| self.valid.contains(&t));
        let km_ok = header("keyManagerToken").is_some_and(|t| self.valid.contains(&t));
        if !session_ok || (path.starts_with("/agent") && !km_ok && !self.skd) {
            return response(401, json!({"code": 401, "message": "Invalid session"}));
        }
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let skip: usize = q.get("skip").map_or(0, |v| v.parse().unwrap());
        let limit: usize = q.get("limit").map_or(50, |v| v.parse().unwrap());
        match segs.as_slice() {
            ["pod", "v2", "admin", "streams", "list"] => {
                assert!(limit <= 100);
                let filter: Value = serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
                let types: Vec<String> = filter["streamTypes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|t| t["type"].as_str().unwrap().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                let all: Vec<&FakeStream> = self
                    .streams
                    .iter()
                    .filter(|s| types.is_empty() || types.iter().any(|t| t == s.kind))
                    .collect();
                let page: Vec<Value> = all
                    .iter()
                    .skip(skip)
                    .take(limit)
                    .map(|s| {
                        json!({"id": s.id, "type": s.kind, "attributes": {
                            "roomName": s.name, "members": s.members.iter().map(|m| m.0).collect::<Vec<_>>(),
                            "lastMessageDate": s.messages.last().map(|m| m.0),
                        }})
                    })
                    .collect();
                response(
                    200,
                    json!({"count": all.len(), "skip": skip, "limit": limit, "streams": page}),
                )
            }
            ["pod", "v1", "admin", "stream", id, "membership", "list"] => {
                assert!(limit <= 1000);
                let Some(s) = self.stream(id) else {
                    return response(400, json!({"message": "no such stream"}));
                };
                let members: Vec<Value> = s
                    .members
                    .iter()
                    .skip(skip)
                    .take(limit)
                    .map(|(id, external)| {
                        let mut u = self.user_json(*id);
                        u["isExternal"] = json!(external);
                        // Like real pods, the list leaves some emails out.
                        if id % 2 == 0 {
                            u.as_object_mut().unwrap().remove("email");
                        }
                        json!({"user": u, "joinDate": 1})
                    })
                    .collect();
                response(200, json!({"count": s.members.len(), "members": members}))
            }
            ["pod", "v1", "admin", "room", _, "membership", "list"] => response(200, json!([])),
            ["pod", "v2", "streams", sid, "info"] => {
                let Some(s) = self.stream(sid) else {
                    return response(400, json!({"message": "no such stream"}));
                };
                let mut info = json!({"id": s.id, "streamType": {"type": s.kind},
                    "lastMessageDate": s.messages.last().map(|m| m.0)});
                if s.kind == "ROOM" {
                    info["roomAttributes"] = json!({"name": s.name});
                } else {
                    info["streamAttributes"] =
                        json!({"members": s.members.iter().map(|m| m.0).collect::<Vec<_>>()});
                }
                response(200, info)
            }
            ["pod", "v3", "users"] => {
                let ids: Vec<i64> = q["uid"].split(',').map(|v| v.parse().unwrap()).collect();
                assert!(ids.len() <= 100);
                assert_eq!(q.get("local").map(String::as_str), Some("false"));
                let users: Vec<Value> = ids
                    .iter()
                    .filter(|id| self.users.contains_key(id))
                    .map(|id| {
                        let (name, email) = &self.users[id];
                        json!({"id": id, "displayName": name, "emailAddress": email})
                    })
                    .collect();
                if users.is_empty() {
                    return response(204, Value::Null);
                }
                response(200, json!({"users": users}))
            }
            ["agent", "v4", "stream", sid, "message"] => {
                assert!(limit <= 500);
                let since: i64 = q["since"].parse().unwrap();
                let Some(s) = self.stream(sid) else {
                    return response(400, json!({"message": "no such stream"}));
                };
                let page: Vec<Value> = s
                    .messages
                    .iter()
                    .filter(|m| m.0 >= since)
                    .skip(skip)
                    .take(limit)
                    .map(|m| m.2.clone())
                    .collect();
                if page.is_empty() {
                    return response(204, Value::Null);
                }
                response(200, Value::Array(page))
            }
            ["agent", "v1", "message", id] => {
                for s in &self.streams {
                    if let Some(m) = s.messages.iter().find(|m| m.1 == *id) {
                        return response(200, m.2.clone());
                    }
                }
                response(204, Value::Null)
            }
            ["agent", "v5", "events", "read"] => {
                let body: Value = serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
                assert_eq!(body["type"], "datahose");
                assert_eq!(body["updatePresence"], false);
                assert!(!body["eventTypes"].as_array().unwrap().is_empty());
                let from: usize = body["ackId"]
                    .as_str()
                    .and_then(|a| a.strip_prefix("ack-"))
                    .map_or(0, |n| n.parse().unwrap());
                let to = (from + 2).min(self.events.len());
                response(
                    200,
                    json!({"events": self.events[from..to], "ackId": format!("ack-{to}")}),
                )
            }
            _ => response(404, json!({"message": "not found"})),
        }
    }
}

/// The pod behind a shared handle, so tests can change it between runs.
#[derive(Clone, Default)]
struct Shared(std::rc::Rc<std::cell::RefCell<FakePod>>);

impl Backend for Shared {
    fn fetch(&mut self, request: &Request) -> Result<FullResponse, HttpError> {
        Ok(self.0.borrow_mut().answer(request))
    }

    fn sign(&mut self, data: &[u8]) -> Result<Vec<u8>, SourceError> {
        self.0
            .borrow_mut()
            .signed
            .push(String::from_utf8(data.to_vec()).unwrap());
        Ok(vec![1, 2, 3])
    }

    fn now_ms(&self) -> i64 {
        let mut pod = self.0.borrow_mut();
        pod.now += 1;
        1_800_000_000_000 + pod.now
    }

    fn remembered_login(&self, account: &str) -> Option<crate::client::Tokens> {
        let pod = self.0.borrow();
        pod.remembered
            .as_ref()
            .filter(|(who, _)| who == account)
            .map(|(_, t)| t.clone())
    }

    fn remember_login(&mut self, account: &str, tokens: &crate::client::Tokens) {
        self.0.borrow_mut().remembered = Some((account.to_string(), tokens.clone()));
    }
}

fn message_json(stream: &FakeStream, ts: i64, id: &str, sender: i64, pod: &FakePod) -> Value {
    json!({
        "messageId": id,
        "timestamp": ts,
        "message": format!(r#"<div data-format="PresentationML" data-version="2.0"><p>text of {id}</p></div>"#),
        "data": "{}",
        "user": pod.user_json(sender),
        "stream": {"streamId": stream.id, "streamType": stream.kind},
    })
}

/// Four streams, one of each type, with same-millisecond runs, an edit, a
/// reply, a forward, a mention and attachments.
fn pod() -> Shared {
    let mut pod = FakePod::default();
    for (id, name, email) in [
        (1, "Alice", Some("alice@acme.example")),
        (2, "Bob", Some("bob@acme.example")),
        (3, "Carol", Some("carol@acme.example")),
        (4, "Wei External", None),
    ] {
        pod.users.insert(id, (name.into(), email.map(String::from)));
    }
    let mut streams = vec![
        FakeStream {
            id: "ROOMxx".into(),
            kind: "ROOM",
            name: Some("Rates Desk".into()),
            members: vec![(1, false), (2, false), (4, true)],
            messages: Vec::new(),
        },
        FakeStream {
            id: "IMxxxx".into(),
            kind: "IM",
            name: None,
            members: vec![(1, false), (3, false)],
            messages: Vec::new(),
        },
        FakeStream {
            id: "MIMxxx".into(),
            kind: "MIM",
            name: None,
            members: vec![(1, false), (2, false), (3, false)],
            messages: Vec::new(),
        },
        FakeStream {
            id: "POSTxx".into(),
            kind: "POST",
            name: None,
            members: vec![(2, false)],
            messages: Vec::new(),
        },
    ];
    // The room: 30 messages with runs of equal timestamps.
    for i in 0..30i64 {
        let ts = 1000 + i / 4;
        let s = &streams[0];
        let mut m = message_json(s, ts, &format!("r{i:02}"), 1 + i % 2, &pod);
        if i == 5 {
            m["replacing"] = json!("r04");
            m["initialMessageId"] = json!("r04");
            m["initialTimestamp"] = json!(1001);
        }
        if i == 6 {
            m["parentMessageId"] = json!("r01");
        }
        if i == 7 {
            m["data"] = json!(
                r#"{"0":{"id":[{"type":"com.symphony.user.userId","value":"3"}],"type":"com.symphony.user.mention"}}"#
            );
            m["message"] = json!(
                r#"<div data-format="PresentationML" data-version="2.0"><p>hi <span class="entity" data-entity-id="0">@Carol</span></p></div>"#
            );
        }
        if i == 9 {
            m["attachments"] = json!([
                {"id": "internal_1%2Fa%3D%3D", "name": "a.pdf", "size": 10, "images": []},
                {"id": "internal_1/b==", "name": "b.txt", "size": 3, "images": []}
            ]);
        }
        streams[0].messages.push((ts, format!("r{i:02}"), m));
    }
    for i in 0..3i64 {
        let s = &streams[1];
        let mut m = message_json(s, 2000 + i, &format!("i{i}"), 3, &pod);
        if i == 2 {
            m["parentMessageId"] = json!("r02");
        }
        streams[1].messages.push((2000 + i, format!("i{i}"), m));
    }
    {
        let s = &streams[2];
        let m = message_json(s, 3000, "m0", 4, &pod);
        streams[2].messages.push((3000, "m0".into(), m));
    }
    {
        let s = &streams[3];
        let m = message_json(s, 4000, "p0", 2, &pod);
        streams[3].messages.push((4000, "p0".into(), m));
    }
    pod.streams = streams;
    pod.events = vec![
        json!({"id": "ev1", "messageId": "r03", "timestamp": 5000, "type": "MESSAGESUPPRESSED",
               "initiator": {"user": {"userId": 1, "displayName": "Alice"}},
               "payload": {"messageSuppressed": {"messageId": "r03", "stream": {"streamId": "ROOMxx", "streamType": "ROOM"}}}}),
        json!({"id": "ev2", "timestamp": 5001, "type": "USERLEFTROOM",
               "initiator": {"user": {"userId": 1}},
               "payload": {"userLeftRoom": {"stream": {"streamId": "ROOMxx", "streamType": "ROOM"}, "affectedUser": {"userId": 2, "displayName": "Bob"}}}}),
        json!({"id": "ev3", "messageId": "zz", "timestamp": 5002, "type": "MESSAGESUPPRESSED",
               "initiator": {"user": {"userId": 1}},
               "payload": {"messageSuppressed": {"messageId": "zz", "stream": {"streamId": "OTHER1", "streamType": "IM"}}}}),
    ];
    Shared(std::rc::Rc::new(std::cell::RefCell::new(pod)))
}

const CONFIG: &str = r#"{"pod_url": "https://pod.example", "agent_url": "https://agent.example",
    "key_manager_url": "https://km.example", "username": "archiver", "page_size": 7}"#;

fn config_with(extra: &str) -> String {
    CONFIG.replace("\"page_size\": 7", extra)
}

/// Pulls pages until one is complete (or `max` pages); checks that every
/// message's conversation was described earlier in the session.
fn run(session: &mut Session<Shared>, max: usize) -> (Vec<Page>, bool) {
    let mut pages = Vec::new();
    let mut described = HashSet::new();
    for _ in 0..max {
        let page = session.next_page().unwrap();
        for c in &page.conversations {
            assert!(described.insert(c.id.clone()), "{} described twice", c.id);
        }
        for m in &page.messages {
            assert!(
                described.contains(&m.conversation_id),
                "{} undescribed",
                m.id
            );
        }
        let done = page.complete;
        pages.push(page);
        if done {
            return (pages, true);
        }
    }
    (pages, false)
}

fn ids(pages: &[Page]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p.messages.iter().map(|m| m.id.clone()))
        .collect()
}

fn all_source_ids(pod: &Shared) -> Vec<String> {
    let pod = pod.0.borrow();
    let mut streams: Vec<&FakeStream> = pod.streams.iter().collect();
    streams.sort_by(|a, b| a.id.cmp(&b.id));
    streams
        .iter()
        .flat_map(|s| s.messages.iter().map(|m| m.1.clone()))
        .collect()
}

#[test]
fn a_full_run_archives_every_message_once_in_stream_order() {
    let pod = pod();
    let mut session = Session::open(CONFIG, None, pod.clone()).unwrap();
    let order: Vec<&str> = session.streams().iter().map(|s| s.id.as_str()).collect();
    assert_eq!(order, ["IMxxxx", "MIMxxx", "POSTxx", "ROOMxx"]);
    let (pages, done) = run(&mut session, 100);
    assert!(done);
    let got = ids(&pages);
    let mut want = all_source_ids(&pod);
    want.extend(["suppression-r03", "event-ev2", "suppression-zz"].map(String::from));
    assert_eq!(got, want);
    // At most page_size messages a page; the JWT was signed by the backend.
    assert!(pages.iter().all(|p| p.messages.len() <= 7));
    let pod_ref = pod.0.borrow();
    assert!(pod_ref.signed[0].split('.').count() == 2);
    // Streams whose listing was short are not asked again.
    let im_requests = pod_ref
        .log
        .iter()
        .filter(|l| l.starts_with("GET /agent/v4/stream/IMxxxx/message"))
        .count();
    assert_eq!(im_requests, 1);
}

#[test]
fn conversations_and_normalization() {
    let pod = pod();
    let mut session = Session::open(CONFIG, None, pod.clone()).unwrap();
    let (pages, _) = run(&mut session, 100);
    let convs: HashMap<String, Conversation> = pages
        .iter()
        .flat_map(|p| p.conversations.iter().cloned())
        .map(|c| (c.id.clone(), c))
        .collect();
    let room = &convs["ROOMxx"];
    assert_eq!(room.kind, ConversationKind::Room);
    assert_eq!(room.name.as_deref(), Some("Rates Desk"));
    let people: Vec<(&str, Option<&str>)> = room
        .participants
        .iter()
        .map(|p| (p.id.as_str(), p.email.as_deref()))
        .collect();
    // Bob's email was left out of the member list: looked up. The external
    // member has none and stays.
    assert_eq!(
        people,
        [
            ("1", Some("alice@acme.example")),
            ("2", Some("bob@acme.example")),
            ("4", None)
        ]
    );
    assert_eq!(convs["IMxxxx"].kind, ConversationKind::Direct);
    assert_eq!(convs["MIMxxx"].kind, ConversationKind::Group);
    assert_eq!(convs["POSTxx"].kind, ConversationKind::Feed);
    assert_eq!(convs["IMxxxx"].name, None);

    let all: HashMap<String, &Message> = pages
        .iter()
        .flat_map(|p| p.messages.iter())
        .map(|m| (m.id.clone(), m))
        .collect();
    let edit = all["r05"];
    assert_eq!(edit.kind, MessageKind::Edit);
    assert_eq!(edit.relations, vec![Relation::EditOf("r04".into())]);
    assert_eq!(all["r06"].relations, vec![Relation::ReplyTo("r01".into())]);
    // i2's parent is in the room, read before it in this run: a forward.
    assert_eq!(all["i2"].relations, vec![Relation::ForwardOf("r02".into())]);
    assert_eq!(
        all["r07"].text.as_deref(),
        Some("hi @Carol <carol@acme.example>")
    );
    assert_eq!(all["r00"].text.as_deref(), Some("text of r00"));
    assert_eq!(
        all["r00"].sender.email.as_deref(),
        Some("alice@acme.example")
    );
    // Senders whose message lacks an email get it from the member list.
    assert_eq!(all["r01"].sender.email.as_deref(), Some("bob@acme.example"));
    assert_eq!(all["m0"].sender.email, None);
    let deletion = all["suppression-r03"];
    assert_eq!(deletion.kind, MessageKind::Deletion);
    assert_eq!(deletion.relations, vec![Relation::Deletes("r03".into())]);
    assert_eq!(deletion.sender.email.as_deref(), Some("alice@acme.example"));
    assert_eq!(all["event-ev2"].kind, MessageKind::MemberLeft);
    // An event in a stream the stream list did not give is still archived;
    // its member list is unavailable, so only the sender receives it.
    assert_eq!(all["suppression-zz"].conversation_id, "OTHER1");
    assert!(convs["OTHER1"].participants.is_empty());
    assert_eq!(convs["OTHER1"].kind, ConversationKind::Direct);
    // Messages of a stream with external members name them (the room has
    // Wei External, user 4); others do not.
    let external = |id: &str| {
        all[id]
            .properties
            .iter()
            .find(|(k, _)| k == "External-Participants")
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(external("r00"), Some("4"));
    assert_eq!(external("i0"), None);
    // Originals are the items exactly as listed.
    let raw: Value = serde_json::from_slice(all["r05"].original.as_ref().unwrap()).unwrap();
    assert_eq!(raw["replacing"], "r04");
}

#[test]
fn attachments_are_fetched_by_the_host_with_fresh_session_headers() {
    let pod = pod();
    let mut session = Session::open(CONFIG, None, pod.clone()).unwrap();
    let (pages, _) = run(&mut session, 100);
    let page = pages
        .iter()
        .find(|p| p.messages.iter().any(|m| m.id == "r09"))
        .unwrap();
    let m = page.messages.iter().find(|m| m.id == "r09").unwrap();
    assert_eq!(m.attachments.len(), 2);
    let logins_before = pod.0.borrow().counter;
    let AttachmentBody::Fetch(spec) = &m.attachments[0].body else {
        panic!("not fetch")
    };
    assert_eq!(
        spec.url,
        "https://agent.example/agent/v1/stream/ROOMxx/attachment?fileId=internal_1%2Fa%3D%3D&messageId=r09"
    );
    let AttachmentBody::Fetch(spec2) = &m.attachments[1].body else {
        panic!("not fetch")
    };
    assert!(spec2.url.contains("fileId=internal_1%2Fb%3D%3D&"));
    // The headers carry tokens the pod still accepts.
    let pod_ref = pod.0.borrow();
    for (name, value) in &spec.headers {
        assert!(["sessionToken", "keyManagerToken"].contains(&name.as_str()));
        assert!(pod_ref.valid.contains(value), "{name} is stale");
    }
    drop(pod_ref);
    assert_eq!(
        logins_before, 2,
        "one login (pod and key manager) serves every page while it is recent"
    );
}

#[test]
fn one_session_serves_pages_and_attachments_until_the_pod_says_it_expired() {
    let pod = pod();
    let mut session = Session::open(CONFIG, None, pod.clone()).unwrap();
    let logins = pod.0.borrow().counter;
    let mut attachment_pages = 0;
    loop {
        // Each page comes six minutes after the one before: no new login.
        pod.0.borrow_mut().now += 6 * 60 * 1000;
        let page = session.next_page().unwrap();
        attachment_pages += usize::from(page.messages.iter().any(|m| !m.attachments.is_empty()));
        if page.complete {
            break;
        }
    }
    assert!(attachment_pages > 0);
    assert_eq!(pod.0.borrow().counter, logins, "no login beyond the first");
}

#[test]
fn a_stream_the_pod_refuses_is_skipped_for_the_run_and_read_by_the_next() {
    // A pod refuses non-members with 403, some agents with 400.
    for status in [403u16, 400] {
        let pod = pod();
        let cfg = config_with("\"events\": false");
        let mut session = Session::open(&cfg, None, pod.clone()).unwrap();
        pod.0
            .borrow_mut()
            .fail
            .push(("/stream/MIMxxx/message".into(), status, vec![]));
        let (pages, done) = run(&mut session, 100);
        assert!(done, "{status}: the run ends though one stream failed");
        let mim: Vec<String> = pod
            .0
            .borrow()
            .stream("MIMxxx")
            .unwrap()
            .messages
            .iter()
            .map(|m| m.1.clone())
            .collect();
        let mut want = all_source_ids(&pod);
        want.retain(|id| !mim.contains(id));
        assert_eq!(ids(&pages), want, "{status}: every other stream archived");
        assert_eq!(session.skipped().len(), 1);
        assert_eq!(session.skipped()[0].stream, "MIMxxx");
        assert!(session.skipped()[0].why.contains(&status.to_string()));
        // The next run, from the last checkpoint, reads the stream in full.
        let checkpoint = pages.last().unwrap().checkpoint.clone();
        let mut next = Session::open(&cfg, Some(checkpoint), pod.clone()).unwrap();
        let (pages, done) = run(&mut next, 100);
        assert!(done && next.skipped().is_empty());
        assert_eq!(ids(&pages), mim);
    }
}

#[test]
fn resuming_from_every_checkpoint_gives_exactly_the_rest() {
    let pod0 = pod();
    let mut session = Session::open(CONFIG, None, pod0.clone()).unwrap();
    let (pages, _) = run(&mut session, 100);
    let all = ids(&pages);
    let mut offset = 0;
    for (k, page) in pages.iter().enumerate() {
        offset += page.messages.len();
        let pod = pod();
        let mut resumed = Session::open(CONFIG, Some(page.checkpoint.clone()), pod).unwrap();
        let (rest, done) = run(&mut resumed, 100);
        assert!(done);
        let rest_ids = ids(&rest);
        // Messages: exactly the rest. Events are read again from the ackId.
        let want: Vec<String> = all[offset..].to_vec();
        assert_eq!(rest_ids, want, "after page {k}");
    }
}

#[test]
fn a_later_run_takes_only_new_messages_including_the_same_millisecond() {
    let pod = pod();
    let mut session = Session::open(CONFIG, None, pod.clone()).unwrap();
    let (pages, _) = run(&mut session, 100);
    let checkpoint = pages.last().unwrap().checkpoint.clone();
    let again = Session::open(CONFIG, Some(checkpoint.clone()), pod.clone());
    let (pages2, done) = run(&mut again.unwrap(), 100);
    assert!(done);
    assert!(ids(&pages2).is_empty(), "{:?}", ids(&pages2));
    // A new message in the last millisecond of the room, one later, and
    // the last one seen suppressed (gone from the listing).
    {
        let mut p = pod.0.borrow_mut();
        let last_ts = p.streams[0].messages.last().unwrap().0;
        let s = p.streams[0].clone();
        let a = message_json(&s, last_ts, "new-same-ms", 1, &p);
        let b = message_json(&s, last_ts + 5, "new-later", 2, &p);
        p.streams[0].messages.retain(|m| m.1 != "r29");
        p.streams[0]
            .messages
            .push((last_ts, "new-same-ms".into(), a));
        p.streams[0]
            .messages
            .push((last_ts + 5, "new-later".into(), b));
    }
    let mut third = Session::open(CONFIG, Some(checkpoint), pod.clone()).unwrap();
    let (pages3, _) = run(&mut third, 100);
    assert_eq!(ids(&pages3), ["new-same-ms", "new-later"]);
}

#[test]
fn an_expired_session_logs_in_again_once() {
    let pod = pod();
    let mut session = Session::open(CONFIG, None, pod.clone()).unwrap();
    pod.0.borrow_mut().expire = true;
    let page = session.next_page().unwrap();
    assert!(!page.messages.is_empty());
    // A 401 right after logging in again is an auth failure.
    {
        let mut p = pod.0.borrow_mut();
        p.fail.push(("/message".into(), 401, vec![]));
        p.fail.push(("/message".into(), 401, vec![]));
    }
    assert!(matches!(session.next_page(), Err(SourceError::Auth(_))));
}

#[test]
fn throttling_and_failures_are_classified() {
    for (status, headers, check) in [
        (
            429u16,
            vec![("retry-after".to_string(), "3".to_string())],
            (|e: &SourceError| *e == SourceError::RateLimited(Some(3))) as fn(&SourceError) -> bool,
        ),
        (
            400,
            vec![("retry-after".to_string(), "2".to_string())],
            |e| *e == SourceError::RateLimited(Some(2)),
        ),
        (503, vec![], |e| matches!(e, SourceError::Transient(_))),
    ] {
        let pod = pod();
        let mut session = Session::open(CONFIG, None, pod.clone()).unwrap();
        pod.0
            .borrow_mut()
            .fail
            .push(("/message".into(), status, headers));
        let err = session.next_page().unwrap_err();
        assert!(check(&err), "{status}: {err:?}");
    }
    // A failed login is an auth failure.
    let pod = pod();
    pod.0
        .borrow_mut()
        .fail
        .push(("/login/".into(), 401, vec![]));
    assert!(matches!(
        Session::open(CONFIG, None, pod),
        Err(SourceError::Auth(_))
    ));
}

#[test]
fn stream_types_are_filtered() {
    let pod = pod();
    let cfg = config_with("\"stream_types\": [\"ROOM\"], \"events\": false");
    let mut session = Session::open(&cfg, None, pod.clone()).unwrap();
    assert_eq!(session.streams().len(), 1);
    let (pages, done) = run(&mut session, 100);
    assert!(done);
    assert!(ids(&pages).iter().all(|id| id.starts_with('r')));
    assert_eq!(ids(&pages).len(), 30);
    // Without POST the type filter goes to the pod.
    let log = &pod.0.borrow().log;
    assert!(
        log.iter()
            .any(|l| l.starts_with("POST /pod/v2/admin/streams/list"))
    );
    assert!(!log.iter().any(|l| l.contains("/events/read")));
}

#[test]
fn a_listing_with_many_attachments_is_split_over_pages() {
    let pod = pod();
    {
        let mut p = pod.0.borrow_mut();
        let s = p.streams[1].clone();
        for i in 0..20 {
            let mut m = message_json(&s, 2100 + i, &format!("att{i}"), 1, &p);
            m["attachments"] = json!([
                {"id": format!("f{i}a"), "name": "a", "size": 1},
                {"id": format!("f{i}b"), "name": "b", "size": 1}
            ]);
            p.streams[1].messages.push((2100 + i, format!("att{i}"), m));
        }
    }
    let cfg = config_with("\"page_size\": 500, \"events\": false");
    let mut session = Session::open(&cfg, None, pod).unwrap();
    let (pages, _) = run(&mut session, 100);
    for p in &pages {
        let n: usize = p.messages.iter().map(|m| m.attachments.len()).sum();
        assert!(n <= MAX_PAGE_ATTACHMENTS, "{n} attachments in a page");
    }
    assert_eq!(
        ids(&pages).iter().filter(|i| i.starts_with("att")).count(),
        20
    );
}

#[test]
fn bad_checkpoints_and_configs() {
    let pod = pod();
    assert!(matches!(
        Session::open(CONFIG, Some(b"{\"offset\":3}".to_vec()), pod.clone()),
        Err(SourceError::Permanent(_))
    ));
    assert!(matches!(
        Session::open("{}", None, pod),
        Err(SourceError::InvalidConfig(_))
    ));
}

#[test]
fn many_quiet_streams_give_empty_pages_that_keep_the_place() {
    let pod = pod();
    {
        let mut p = pod.0.borrow_mut();
        for i in 0..120 {
            p.streams.push(FakeStream {
                id: format!("QUIET{i:03}"),
                kind: "MIM",
                name: None,
                members: vec![(1, false)],
                messages: Vec::new(),
            });
        }
    }
    let cfg = config_with("\"page_size\": 500, \"events\": false");
    let mut session = Session::open(&cfg, None, pod.clone()).unwrap();
    let (pages, done) = run(&mut session, 100);
    assert!(done);
    let empty = pages
        .iter()
        .filter(|p| p.messages.is_empty() && !p.complete)
        .count();
    assert!(empty >= 2, "{empty} empty pages");
    assert_eq!(ids(&pages).len(), 35);
    // An empty page's checkpoint resumes after the streams already asked.
    let first_empty = pages.iter().find(|p| p.messages.is_empty()).unwrap();
    let cp = Checkpoint::decode(&first_empty.checkpoint).unwrap();
    let cursor = cp.cursor.clone().unwrap();
    let resumed = Session::open(&cfg, Some(first_empty.checkpoint.clone()), pod).unwrap();
    assert_eq!(resumed.streams()[0].id, cursor);
    assert_eq!(resumed.streams().len(), 124);
}

/// Pulls pages until one fails, which must happen before the run ends.
fn first_error(session: &mut Session<Shared>) -> SourceError {
    loop {
        match session.next_page() {
            Ok(page) => assert!(!page.complete, "the run ended without the error"),
            Err(e) => return e,
        }
    }
}

#[test]
fn a_400_from_the_datahose_is_a_stale_ack_id_or_a_bad_request_not_a_missing_add_on() {
    let pod = pod();
    let mut session = Session::open(CONFIG, None, pod.clone()).unwrap();
    let (pages, done) = run(&mut session, 100);
    assert!(done);
    let checkpoint = pages.last().unwrap().checkpoint.clone();
    // A stored ackId the datahose refuses is dropped and the read made afresh.
    pod.0
        .borrow_mut()
        .fail
        .push(("/events/read".into(), 400, vec![]));
    pod.0.borrow_mut().log.clear();
    let mut next = Session::open(CONFIG, Some(checkpoint), pod.clone()).unwrap();
    let (_, done) = run(&mut next, 100);
    assert!(done);
    let reads = pod
        .0
        .borrow()
        .log
        .iter()
        .filter(|l| l.contains("/events/read"))
        .count();
    assert!(reads >= 2, "read again after the refusal");
    // Without an ackId, a 400 is the request's fault, and says so.
    let pod = super::tests::pod();
    let cfg = config_with("\"page_size\": 500");
    let mut session = Session::open(&cfg, None, pod.clone()).unwrap();
    pod.0
        .borrow_mut()
        .fail
        .push(("/events/read".into(), 400, vec![]));
    let err = first_error(&mut session);
    match err {
        SourceError::Permanent(m) => {
            assert!(m.contains("events_tag") && !m.contains("add-on"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // 403 still names the add-on when the datahose is required.
    let pod = super::tests::pod();
    let required = config_with("\"page_size\": 500, \"events\": true");
    let mut session = Session::open(&required, None, pod.clone()).unwrap();
    pod.0
        .borrow_mut()
        .fail
        .push(("/events/read".into(), 403, vec![]));
    let err = first_error(&mut session);
    assert!(matches!(err, SourceError::Permanent(m) if m.contains("add-on")));
}

#[test]
fn by_default_a_pod_without_the_datahose_is_archived_without_events_and_the_run_completes() {
    for status in [404u16, 403] {
        let without_events = {
            let pod = pod();
            let cfg = config_with("\"page_size\": 7, \"events\": false");
            let mut session = Session::open(&cfg, None, pod.clone()).unwrap();
            run(&mut session, 100).0
        };
        let pod = pod();
        pod.0
            .borrow_mut()
            .fail
            .push(("/events/read".into(), status, vec![]));
        let mut session = Session::open(CONFIG, None, pod.clone()).unwrap();
        let (pages, done) = run(&mut session, 100);
        assert!(done, "HTTP {status}");
        let ids = |pages: &[Page]| -> Vec<String> {
            pages
                .iter()
                .flat_map(|p| &p.messages)
                .map(|m| m.id.to_string())
                .collect()
        };
        assert!(!ids(&pages).is_empty());
        assert_eq!(ids(&pages), ids(&without_events), "HTTP {status}");
    }
}

#[test]
fn a_wall_post_shows_the_message_it_shares_with_its_attachments() {
    let pod = pod();
    {
        let mut p = pod.0.borrow_mut();
        let mut shared = p.streams[0].messages[9].2.clone();
        shared["messageId"] = json!("r+09/=");
        p.streams[3].messages[0].2["sharedMessage"] = shared;
    }
    let cfg = config_with("\"events\": false");
    let mut session = Session::open(&cfg, None, pod.clone()).unwrap();
    let (pages, _) = run(&mut session, 100);
    let post = pages
        .iter()
        .flat_map(|p| &p.messages)
        .find(|m| m.id == "p0")
        .unwrap();
    let text = post.text.as_deref().unwrap();
    assert!(
        text.starts_with("text of p0\n\nShared message from Bob <bob@acme.example>:\ntext of r09"),
        "{text}"
    );
    let html = post.html.as_deref().unwrap();
    assert!(html.contains("<blockquote><p>Shared message from Bob &lt;bob@acme.example&gt;:</p>"));
    assert!(html.contains("text of r09"));
    let names: Vec<&str> = post
        .attachments
        .iter()
        .map(|a| a.file_name.as_str())
        .collect();
    assert_eq!(names, ["a.pdf", "b.txt"]);
    match &post.attachments[0].body {
        connector_sdk::AttachmentBody::Fetch(f) => assert!(
            f.url.contains("/stream/POSTxx/attachment?") && f.url.ends_with("messageId=p0"),
            "{}",
            f.url
        ),
        other => panic!("{other:?}"),
    }
    let property = |name: &str| {
        post.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(property("Shared-Message-Id"), Some("r-09_"));
    assert_eq!(property("Shared-Stream-Id"), Some("ROOMxx"));
}

#[test]
fn without_the_key_manager_login_agent_calls_and_downloads_carry_the_session_alone() {
    let pod = pod();
    pod.0.borrow_mut().skd = true;
    let cfg = config_with("\"key_manager_login\": false");
    let mut session = Session::open(&cfg, None, pod.clone()).unwrap();
    let (pages, done) = run(&mut session, 100);
    assert!(done);
    assert!(!pod.0.borrow().log.iter().any(|l| l.contains("/relay/")));
    let fetches: Vec<_> = pages
        .iter()
        .flat_map(|p| &p.messages)
        .flat_map(|m| &m.attachments)
        .map(|a| match &a.body {
            connector_sdk::AttachmentBody::Fetch(f) => f.headers.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(!fetches.is_empty());
    for headers in fetches {
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["sessionToken"]);
    }
}

/// The JSON of the first message of `stream`.
fn first_message(pod: &FakePod, stream: &str) -> Value {
    pod.stream(stream).unwrap().messages[0].2.clone()
}

/// A `MESSAGESENT` datahose event `id` carrying message `m`.
fn sent(id: &str, m: &Value) -> Value {
    json!({"id": id, "messageId": m["messageId"], "timestamp": m["timestamp"],
           "type": "MESSAGESENT", "initiator": {"user": m["user"]},
           "payload": {"messageSent": {"message": m}}})
}

#[test]
fn messages_from_the_datahose_cover_streams_the_account_cannot_read_once_each() {
    let pod = pod();
    {
        let mut p = pod.0.borrow_mut();
        let (m0, r00) = (first_message(&p, "MIMxxx"), first_message(&p, "ROOMxx"));
        // Delivered twice (at least once), and one message the listing has.
        let events = vec![sent("s1", &m0), sent("s2", &r00), sent("s1", &m0)];
        p.events.splice(0..0, events);
        p.fail.push(("/stream/MIMxxx/message".into(), 403, vec![]));
    }
    let cfg = config_with("\"events_messages\": true");
    let mut session = Session::open(&cfg, None, pod.clone()).unwrap();
    let (pages, done) = run(&mut session, 100);
    assert!(done);
    let got = ids(&pages);
    assert_eq!(got.iter().filter(|id| *id == "m0").count(), 1, "{got:?}");
    assert_eq!(got.iter().filter(|id| *id == "r00").count(), 1, "{got:?}");
    let m0 = pages
        .iter()
        .flat_map(|p| &p.messages)
        .find(|m| m.id == "m0")
        .unwrap();
    assert_eq!(m0.conversation_id, "MIMxxx");
    assert_eq!(m0.text.as_deref(), Some("text of m0"));
    // The datahose was asked for messages too.
    let log = &pod.0.borrow().log;
    assert!(log.iter().any(|l| l.contains("/events/read")));
}

#[test]
fn partitioned_the_datahose_leaves_the_messages_of_streams_the_account_reads_to_their_partitions() {
    let pod = pod();
    {
        let mut p = pod.0.borrow_mut();
        let (m0, r00) = (first_message(&p, "MIMxxx"), first_message(&p, "ROOMxx"));
        p.events
            .splice(0..0, vec![sent("s1", &m0), sent("s2", &r00)]);
        p.fail.push(("/streams/MIMxxx/info".into(), 403, vec![]));
    }
    let cfg = config_with("\"events_messages\": true");
    let from_datahose = ids(&run_scope(&pod, &cfg, Scope::Datahose, None));
    assert!(
        from_datahose.contains(&"m0".to_string()),
        "{from_datahose:?}"
    );
    assert!(
        !from_datahose.contains(&"r00".to_string()),
        "{from_datahose:?}"
    );
    let from_room = ids(&run_scope(&pod, &cfg, Scope::Stream("ROOMxx".into()), None));
    assert!(from_room.contains(&"r00".to_string()), "{from_room:?}");
}

/// Runs `scope` to the end from `checkpoint`.
fn run_scope(pod: &Shared, cfg: &str, scope: Scope, checkpoint: Option<Vec<u8>>) -> Vec<Page> {
    let mut session = Session::open_scope(cfg, scope, checkpoint, pod.clone()).unwrap();
    let (pages, done) = run(&mut session, 100);
    assert!(done);
    pages
}

fn last_checkpoint(pages: &[Page]) -> Checkpoint {
    Checkpoint::decode(&pages.last().unwrap().checkpoint).unwrap()
}

fn stream_ids(pod: &Shared, stream: &str) -> Vec<String> {
    let pod = pod.0.borrow();
    let s = pod.stream(stream).unwrap();
    s.messages.iter().map(|m| m.1.clone()).collect()
}

#[test]
fn partitions_are_the_configured_streams_and_the_datahose() {
    let pod = pod();
    let all = partitions(CONFIG, pod.clone()).unwrap();
    assert_eq!(
        all,
        [
            "stream:IMxxxx",
            "stream:MIMxxx",
            "stream:POSTxx",
            "stream:ROOMxx",
            "datahose"
        ]
    );
    let rooms = config_with(r#""stream_types": ["ROOM"], "events": false"#);
    assert_eq!(partitions(&rooms, pod.clone()).unwrap(), ["stream:ROOMxx"]);
    // Every id opens the scope it names.
    for id in &all {
        assert_eq!(
            Scope::from_partition(id).unwrap().partition_id().as_ref(),
            Some(id)
        );
    }
}

#[test]
fn partitions_list_every_stream_past_the_first_page() {
    let pod = pod();
    {
        let mut p = pod.0.borrow_mut();
        for i in 0..250 {
            p.streams.push(FakeStream {
                id: format!("EXTRA{i:04}"),
                kind: "IM",
                name: None,
                members: vec![(1, false), (2, false)],
                messages: Vec::new(),
            });
        }
    }
    let all = partitions(&config_with("\"events\": false"), pod.clone()).unwrap();
    assert_eq!(all.len(), 254);
    assert!(all.contains(&"stream:EXTRA0249".to_string()));
}

#[test]
fn an_unknown_partition_is_a_permanent_error_naming_it() {
    for id in ["room:ROOMxx", "stream:", "datahose2"] {
        match Scope::from_partition(id) {
            Err(SourceError::Permanent(why)) => assert!(why.contains(id), "{why}"),
            other => panic!("{id}: {other:?}"),
        }
    }
    let no_events = config_with("\"events\": false");
    match Session::open_scope(&no_events, Scope::Datahose, None, pod()) {
        Err(SourceError::Permanent(why)) => assert!(why.contains("events"), "{why}"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("the datahose partition opened without events"),
    }
}

#[test]
fn a_stream_partition_reads_that_stream_only_and_its_checkpoint_carries_only_it() {
    let pod = pod();
    let pages = run_scope(&pod, CONFIG, Scope::Stream("ROOMxx".into()), None);
    assert_eq!(ids(&pages), stream_ids(&pod, "ROOMxx"));
    let described: Vec<&str> = pages
        .iter()
        .flat_map(|p| &p.conversations)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(described, ["ROOMxx"]);
    for page in &pages {
        let cp = Checkpoint::decode(&page.checkpoint).unwrap();
        assert!(cp.positions.keys().all(|k| k == "ROOMxx"), "{cp:?}");
        assert_eq!((cp.cursor, cp.ack_id), (None, None));
    }
    assert_eq!(last_checkpoint(&pages).positions.len(), 1);
    let log = &pod.0.borrow().log;
    assert!(!log.iter().any(|l| l.contains("/streams/list")), "{log:?}");
    assert!(!log.iter().any(|l| l.contains("/events/read")), "{log:?}");
    assert!(
        log.iter()
            .filter(|l| l.contains("/agent/v4/stream/"))
            .all(|l| l.contains("/stream/ROOMxx/")),
        "{log:?}"
    );
}

#[test]
fn a_whole_pod_checkpoint_resumes_a_stream_partition_at_that_streams_position() {
    let pod = pod();
    // A whole-pod run stopped in the middle of the room (page size 7).
    let mut whole = Session::open(CONFIG, None, pod.clone()).unwrap();
    let order: Vec<String> = whole.streams().iter().map(|s| s.id.clone()).collect();
    assert_eq!(order.last().map(String::as_str), Some("ROOMxx"));
    let mut taken = Vec::new();
    let checkpoint = loop {
        let page = whole.next_page().unwrap();
        taken.extend(page.messages.iter().map(|m| m.id.clone()));
        if taken.iter().filter(|id| id.starts_with('r')).count() >= 14 {
            break page.checkpoint;
        }
    };
    let handed = Checkpoint::decode(&checkpoint).unwrap();
    assert!(handed.positions.len() > 1 && handed.cursor.is_some());
    // The room's partition goes on from the room's position there.
    let pages = run_scope(
        &pod,
        CONFIG,
        Scope::Stream("ROOMxx".into()),
        Some(checkpoint.clone()),
    );
    let room = stream_ids(&pod, "ROOMxx");
    let rest: Vec<String> = room.into_iter().filter(|id| !taken.contains(id)).collect();
    assert_eq!(ids(&pages), rest);
    // A stream the whole-pod run had drained has nothing new.
    let im = run_scope(
        &pod,
        CONFIG,
        Scope::Stream("IMxxxx".into()),
        Some(checkpoint),
    );
    assert!(ids(&im).is_empty(), "{:?}", ids(&im));
    assert_eq!(
        last_checkpoint(&im).positions.keys().collect::<Vec<_>>(),
        ["IMxxxx"]
    );
}

#[test]
fn the_datahose_partition_only_reads_events_from_the_whole_pods_ack_id() {
    let pod = pod();
    let pages = run_scope(&pod, CONFIG, Scope::Datahose, None);
    assert_eq!(
        ids(&pages),
        ["suppression-r03", "event-ev2", "suppression-zz"]
    );
    let cp = last_checkpoint(&pages);
    assert!(cp.positions.is_empty() && cp.cursor.is_none());
    assert_eq!(cp.ack_id.as_deref(), Some("ack-3"));
    assert!(
        !pod.0
            .borrow()
            .log
            .iter()
            .any(|l| l.contains("/agent/v4/stream/"))
    );
    // After a whole-pod run, the partition reads only what came since.
    let mut whole = Session::open(CONFIG, None, pod.clone()).unwrap();
    let (whole_pages, _) = run(&mut whole, 100);
    let handed = whole_pages.last().unwrap().checkpoint.clone();
    pod.0.borrow_mut().events.push(
        json!({"id": "ev4", "timestamp": 6000, "type": "USERJOINEDROOM",
               "initiator": {"user": {"userId": 1}},
               "payload": {"userJoinedRoom": {"stream": {"streamId": "ROOMxx", "streamType": "ROOM"}, "affectedUser": {"userId": 3}}}}),
    );
    let pages = run_scope(&pod, CONFIG, Scope::Datahose, Some(handed));
    assert_eq!(ids(&pages), ["event-ev4"]);
}

#[test]
fn a_stream_partition_the_pod_refuses_is_skipped_and_reported() {
    let pod = pod();
    pod.0
        .borrow_mut()
        .fail
        .push(("/streams/MIMxxx/info".into(), 403, vec![]));
    let mut session =
        Session::open_scope(CONFIG, Scope::Stream("MIMxxx".into()), None, pod.clone()).unwrap();
    let (pages, done) = run(&mut session, 10);
    assert!(done);
    assert!(ids(&pages).is_empty());
    assert_eq!(session.skipped().len(), 1);
    assert_eq!(session.skipped()[0].stream, "MIMxxx");
    assert!(session.skipped()[0].why.contains("403"));
}

/// What the host archives of a message: everything but the attachments'
/// session headers (each session logs in on its own).
fn archived(pages: &[Page]) -> BTreeMap<String, String> {
    pages
        .iter()
        .flat_map(|p| &p.messages)
        .map(|m| {
            let mut m = m.clone();
            m.attachments.iter_mut().for_each(|a| {
                if let AttachmentBody::Fetch(f) = &mut a.body {
                    f.headers.clear();
                }
            });
            (m.id.clone(), format!("{m:?}"))
        })
        .collect()
}

#[test]
fn a_partitioned_walk_archives_what_the_whole_pod_walk_archives() {
    for cfg in [CONFIG.to_string(), config_with("\"events_messages\": true")] {
        let pod = pod();
        let whole = run_scope(&pod, &cfg, Scope::Whole, None);
        let pod = self::pod();
        let mut parts = Vec::new();
        let mut conversations = BTreeMap::new();
        for id in partitions(&cfg, pod.clone()).unwrap() {
            let pages = run_scope(&pod, &cfg, Scope::from_partition(&id).unwrap(), None);
            for c in pages.iter().flat_map(|p| &p.conversations) {
                conversations.insert(c.id.clone(), format!("{c:?}"));
            }
            parts.extend(pages);
        }
        let given: Vec<&str> = parts
            .iter()
            .flat_map(|p| &p.messages)
            .map(|m| m.id.as_str())
            .collect();
        let unique: std::collections::BTreeSet<&str> = given.iter().copied().collect();
        assert_eq!(
            given.len(),
            unique.len(),
            "each message from one partition: {given:?}"
        );
        assert_eq!(archived(&parts), archived(&whole));
        let whole_conversations: BTreeMap<String, String> = whole
            .iter()
            .flat_map(|p| &p.conversations)
            .map(|c| (c.id.clone(), format!("{c:?}")))
            .collect();
        assert_eq!(conversations, whole_conversations);
    }
}

#[test]
fn partitions_read_one_after_another_in_one_instance_log_in_once_and_again_when_refused() {
    let pod = pod();
    let logins = |pod: &Shared| pod.0.borrow().signed.len();
    let ids = partitions(CONFIG, pod.clone()).unwrap();
    for id in &ids {
        run_scope(&pod, CONFIG, Scope::from_partition(id).unwrap(), None);
    }
    assert_eq!(
        logins(&pod),
        1,
        "the listing's login served every partition"
    );
    // The pod expires the remembered token: the next session logs in again.
    pod.0.borrow_mut().expire = true;
    run_scope(&pod, CONFIG, Scope::from_partition(&ids[0]).unwrap(), None);
    assert_eq!(logins(&pod), 2);
}
