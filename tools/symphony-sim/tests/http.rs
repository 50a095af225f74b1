//! End-to-end behaviour of the simulator over real HTTP, with a small blocking client.

use std::collections::HashSet;
use std::io::Read;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use symphony_sim::jwt::{sign_jwt, sign_test_jwt};
use symphony_sim::{
    BlockingSim, Faults, GroundTruth, Membership, SimConfig, StreamType, SuppressionMode,
    TEST_PRIVATE_KEY_PEM, TEST_USERNAME, start_blocking,
};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A small pod whose service account is a member of every stream (the rules about
/// membership have their own tests with [`Membership::Half`]).
fn small() -> symphony_sim::SimConfigBuilder {
    SimConfig::builder()
        .membership(Membership::All)
        .seed(11)
        .messages(400)
        .large_attachment_bytes(0)
        .max_small_attachment_bytes(16 * 1024)
}

/// JSON bodies without ureq's `json` feature (kept off to leave the workspace's ureq alone).
trait IntoJson {
    fn into_json<T: serde::de::DeserializeOwned>(self) -> std::io::Result<T>;
}

impl IntoJson for ureq::Response {
    fn into_json<T: serde::de::DeserializeOwned>(self) -> std::io::Result<T> {
        let text = self.into_string()?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}

/// An id of a JSON answer, which the pod writes in standard base64 with padding, in the
/// URL-safe unpadded form URLs and the ground truth use; `None` for a missing field.
fn url_id(v: &Value) -> Option<String> {
    let id = v.as_str()?;
    assert!(
        id.len().is_multiple_of(4) && !id.contains(['-', '_']),
        "standard base64 with padding: {id}"
    );
    Some(URL_SAFE_NO_PAD.encode(STANDARD.decode(id).unwrap()))
}

fn sim(cfg: SimConfig) -> BlockingSim {
    start_blocking(cfg).expect("simulator starts")
}

/// Status and response of a call, whatever the status.
fn call(r: Result<ureq::Response, ureq::Error>) -> (u16, ureq::Response) {
    match r {
        Ok(resp) => (resp.status(), resp),
        Err(ureq::Error::Status(code, resp)) => (code, resp),
        Err(e) => panic!("transport error: {e}"),
    }
}

struct Client {
    base: String,
    agent: ureq::Agent,
    session: String,
    km: String,
}

fn login(agent: &ureq::Agent, base: &str, path: &str, jwt: &str) -> (u16, Value) {
    let (code, resp) = call(
        agent
            .post(&format!("{base}{path}"))
            .set("Content-Type", "application/json")
            .send_string(&json!({ "token": jwt }).to_string()),
    );
    (code, resp.into_json().unwrap_or(Value::Null))
}

impl Client {
    fn new(base: &str) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let mut c = Client {
            base: base.to_string(),
            agent,
            session: String::new(),
            km: String::new(),
        };
        c.relogin();
        c
    }

    fn relogin(&mut self) {
        let jwt = sign_test_jwt().unwrap();
        let (code, s) = login(&self.agent, &self.base, "/login/pubkey/authenticate", &jwt);
        assert_eq!(code, 200, "{s}");
        let (code, k) = login(&self.agent, &self.base, "/relay/pubkey/authenticate", &jwt);
        assert_eq!(code, 200, "{k}");
        self.session = s["token"].as_str().unwrap().to_string();
        self.km = k["token"].as_str().unwrap().to_string();
    }

    fn get(&self, path: &str) -> (u16, ureq::Response) {
        call(
            self.agent
                .get(&format!("{}{path}", self.base))
                .set("sessionToken", &self.session)
                .set("keyManagerToken", &self.km)
                .call(),
        )
    }

    fn post(&self, path: &str, body: &Value) -> (u16, ureq::Response) {
        call(
            self.agent
                .post(&format!("{}{path}", self.base))
                .set("sessionToken", &self.session)
                .set("keyManagerToken", &self.km)
                .set("Content-Type", "application/json")
                .send_string(&body.to_string()),
        )
    }

    fn get_json(&self, path: &str) -> (u16, Value) {
        let (code, resp) = self.get(path);
        let text = resp.into_string().unwrap();
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Reads a whole stream with since/skip paging; returns ids and whether a page boundary
    /// fell inside a run of same-millisecond messages (skip > 1 was needed).
    fn read_stream(&self, sid: &str, limit: usize) -> (Vec<String>, bool) {
        let mut ids = Vec::new();
        let (mut since, mut skip) = (0i64, 0usize);
        let mut boundary_in_run = false;
        loop {
            let (code, resp) = self.get(&format!(
                "/agent/v4/stream/{sid}/message?since={since}&skip={skip}&limit={limit}"
            ));
            if code == 204 {
                assert_eq!(resp.into_string().unwrap(), "");
                break;
            }
            assert_eq!(code, 200);
            let page: Vec<Value> = resp.into_json().unwrap();
            assert!(!page.is_empty() && page.len() <= limit);
            for m in &page {
                let ts = m["timestamp"].as_i64().unwrap();
                if ts == since {
                    skip += 1;
                } else {
                    assert!(ts > since, "timestamps must not go back");
                    since = ts;
                    skip = 1;
                }
                ids.push(url_id(&m["messageId"]).unwrap());
            }
            if skip > 1 {
                boundary_in_run = true;
            }
            if page.len() < limit {
                break;
            }
        }
        (ids, boundary_in_run)
    }
}

fn error_body(resp: ureq::Response) -> Value {
    let v: Value = resp.into_json().unwrap();
    assert!(v["code"].is_i64() && v["message"].is_string(), "{v}");
    v
}

#[test]
fn login_with_a_good_jwt_returns_session_and_key_manager_tokens() {
    let sim = sim(small().build());
    let agent = ureq::Agent::new();
    let jwt = sign_test_jwt().unwrap();
    let (code, body) = login(&agent, &sim.base_url(), "/login/pubkey/authenticate", &jwt);
    assert_eq!(code, 200);
    assert_eq!(body["name"], "sessionToken");
    assert!(body["token"].as_str().unwrap().len() > 20);
    let (code, body) = login(&agent, &sim.base_url(), "/relay/pubkey/authenticate", &jwt);
    assert_eq!(code, 200);
    assert_eq!(body["name"], "keyManagerToken");
    assert_eq!(sim.stats().logins, 2);
    // The session works and says who we are.
    let c = Client::new(&sim.base_url());
    let (code, me) = c.get_json("/pod/v2/sessioninfo");
    assert_eq!(code, 200);
    assert_eq!(me["username"], TEST_USERNAME);
}

#[test]
fn login_with_a_bad_jwt_is_refused_with_401_and_the_error_shape() {
    let sim = sim(small().build());
    let agent = ureq::Agent::new();
    let base = sim.base_url();
    let good = sign_test_jwt().unwrap();
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
    sig[10] ^= 0x55;
    parts[2] = URL_SAFE_NO_PAD.encode(sig);
    let tampered = parts.join(".");
    let mut rs256 = good.split('.').map(String::from).collect::<Vec<_>>();
    rs256[0] = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let cases = [
        ("bad signature", tampered),
        (
            "unknown user",
            sign_jwt(TEST_PRIVATE_KEY_PEM, "nobody", now() + 100).unwrap(),
        ),
        (
            "expired",
            sign_jwt(TEST_PRIVATE_KEY_PEM, TEST_USERNAME, now() - 5).unwrap(),
        ),
        (
            "more than 5 minutes ahead",
            sign_jwt(TEST_PRIVATE_KEY_PEM, TEST_USERNAME, now() + 3600).unwrap(),
        ),
        ("not RS512", rs256.join(".")),
        ("garbage", "not-a-jwt".to_string()),
    ];
    for (what, jwt) in cases {
        for path in ["/login/pubkey/authenticate", "/relay/pubkey/authenticate"] {
            let (code, body) = login(&agent, &base, path, &jwt);
            assert_eq!(code, 401, "{what} on {path}: {body}");
            assert_eq!(body["code"], 401);
            assert!(body["message"].is_string());
        }
    }
    assert_eq!(sim.stats().failed_logins, 12);
    assert_eq!(sim.stats().logins, 0);
}

#[test]
fn requests_without_a_valid_session_get_401() {
    let sim = sim(small().build());
    let base = sim.base_url();
    let truth = sim.ground_truth();
    let sid = &truth.streams[0].stream_id;
    let agent = ureq::Agent::new();
    // No token at all.
    let (code, resp) = call(
        agent
            .post(&format!("{base}/pod/v2/admin/streams/list"))
            .call(),
    );
    assert_eq!(code, 401);
    assert_eq!(error_body(resp)["message"], "Invalid session");
    // Unknown token.
    let (code, _) = call(
        agent
            .get(&format!("{base}/pod/v3/users?uid=1"))
            .set("sessionToken", "forged")
            .call(),
    );
    assert_eq!(code, 401);
    // Agent needs the key manager token too.
    let c = Client::new(&base);
    let (code, _) = call(
        agent
            .get(&format!("{base}/agent/v4/stream/{sid}/message?since=0"))
            .set("sessionToken", &c.session)
            .call(),
    );
    assert_eq!(code, 401);
    // A key manager token is no session token.
    let (code, _) = call(
        agent
            .get(&format!("{base}/pod/v3/users?uid=1"))
            .set("sessionToken", &c.km)
            .call(),
    );
    assert_eq!(code, 401);
    assert!(sim.stats().unauthorized >= 4);
}

#[test]
fn an_empty_message_page_is_http_204_with_no_body() {
    let sim = sim(small().build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let empty = truth
        .streams
        .iter()
        .find(|s| s.message_count == 0)
        .expect("an empty room");
    let (code, resp) = c.get(&format!(
        "/agent/v4/stream/{}/message?since=0",
        empty.stream_id
    ));
    assert_eq!(code, 204);
    assert_eq!(resp.into_string().unwrap(), "");
    // Past the last message of a busy stream.
    let busy = truth
        .streams
        .iter()
        .max_by_key(|s| s.message_count)
        .unwrap();
    let last = truth.messages_in(&busy.stream_id).last().unwrap().timestamp;
    let (code, _) = c.get(&format!(
        "/agent/v4/stream/{}/message?since={}",
        busy.stream_id,
        last + 1
    ));
    assert_eq!(code, 204);
    // Skipping everything at the last timestamp is empty too.
    let at_last = truth
        .messages_in(&busy.stream_id)
        .filter(|m| m.timestamp == last)
        .count();
    let (code, _) = c.get(&format!(
        "/agent/v4/stream/{}/message?since={last}&skip={at_last}",
        busy.stream_id
    ));
    assert_eq!(code, 204);
    assert!(sim.stats().empty_message_pages >= 3);
}

#[test]
fn paging_with_since_and_skip_across_same_millisecond_runs_returns_every_message_once() {
    let sim = sim(small().messages(1500).build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let mut crossed = 0;
    let mut seen = HashSet::new();
    for limit in [50usize, 100, 500] {
        for s in &truth.streams {
            let (ids, boundary_in_run) = c.read_stream(&s.stream_id, limit);
            let expected: Vec<String> = truth
                .messages_in(&s.stream_id)
                .map(|m| m.message_id.clone())
                .collect();
            assert_eq!(ids, expected, "stream {} limit {limit}", s.stream_id);
            crossed += usize::from(boundary_in_run);
            seen.extend(ids);
        }
    }
    assert_eq!(seen.len(), truth.messages.len());
    assert!(
        crossed >= 3,
        "page boundaries must fall inside same-millisecond runs ({crossed})"
    );
    // A run longer than a page: more than 50 messages in one millisecond.
    let busy = truth
        .streams
        .iter()
        .max_by_key(|s| s.message_count)
        .unwrap();
    let mut counts = std::collections::HashMap::new();
    for m in truth.messages_in(&busy.stream_id) {
        *counts.entry(m.timestamp).or_insert(0) += 1;
    }
    assert!(counts.values().any(|&n| n > 50));
    // `until` is inclusive and bounds the page.
    let first = truth.messages_in(&busy.stream_id).next().unwrap().timestamp;
    let (code, page) = c.get_json(&format!(
        "/agent/v4/stream/{}/message?since=0&until={first}&limit=500",
        busy.stream_id
    ));
    assert_eq!(code, 200);
    assert!(
        page.as_array()
            .unwrap()
            .iter()
            .all(|m| m["timestamp"] == first)
    );
}

#[test]
fn a_message_limit_above_500_is_rejected_with_400() {
    let sim = sim(small().build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let sid = &truth.streams[1].stream_id;
    let (code, resp) = c.get(&format!("/agent/v4/stream/{sid}/message?since=0&limit=501"));
    assert_eq!(code, 400);
    assert_eq!(error_body(resp)["code"], 400);
    let (code, _) = c.get(&format!("/agent/v4/stream/{sid}/message?since=0&limit=500"));
    assert!(code == 200 || code == 204);
    let (code, _) = c.get(&format!("/agent/v4/stream/{sid}/message?limit=5"));
    assert_eq!(code, 400, "since is required");
    let (code, _) = c.get("/agent/v4/stream/NoSuchStream/message?since=0");
    assert_eq!(code, 400);
}

#[test]
fn stream_and_membership_lists_follow_the_spec_limits_and_filters() {
    let sim = sim(small().streams(6, 3, 5, 2).build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let (code, _) = c.post("/pod/v2/admin/streams/list?limit=101", &json!({}));
    assert_eq!(code, 400);
    let (code, resp) = c.post("/pod/v2/admin/streams/list?skip=0&limit=4", &json!({}));
    assert_eq!(code, 200);
    let page: Value = resp.into_json().unwrap();
    assert_eq!(page["count"], truth.streams.len());
    assert_eq!(page["limit"], 4);
    assert_eq!(page["streams"].as_array().unwrap().len(), 4);
    // All pages together give every stream once, in ground-truth order.
    let mut ids = Vec::new();
    let mut skip = 0;
    loop {
        let (_, resp) = c.post(
            &format!("/pod/v2/admin/streams/list?skip={skip}&limit=5"),
            &json!({}),
        );
        let page: Value = resp.into_json().unwrap();
        let streams = page["streams"].as_array().unwrap().clone();
        if streams.is_empty() {
            break;
        }
        for s in &streams {
            ids.push(url_id(&s["id"]).unwrap());
            let t = s["type"].as_str().unwrap();
            assert!(["IM", "MIM", "ROOM", "POST"].contains(&t));
            let a = &s["attributes"];
            assert!(a["createdByUserId"].is_i64() && a["membersCount"].is_u64());
            match t {
                "ROOM" => assert!(a["roomName"].is_string() && s["isPublic"].is_boolean()),
                _ => assert!(a["members"].is_array()),
            }
            assert!(s["origin"] == "INTERNAL" || s["origin"] == "EXTERNAL");
        }
        skip += streams.len();
    }
    let expected: Vec<String> = truth.streams.iter().map(|s| s.stream_id.clone()).collect();
    assert_eq!(ids, expected);
    let (_, resp) = c.post(
        "/pod/v2/admin/streams/list?limit=100",
        &json!({"streamTypes": [{"type": "ROOM"}], "includeInactiveStreams": false}),
    );
    let rooms: Value = resp.into_json().unwrap();
    let want = truth
        .streams
        .iter()
        .filter(|s| s.stream_type == StreamType::Room && s.active)
        .count();
    assert_eq!(rooms["count"], want);
    assert_eq!(rooms["filter"]["streamTypes"][0]["type"], "ROOM");
    let (code, _) = c.post(
        "/pod/v2/admin/streams/list",
        &json!({"streamTypes": [{"type": "CHANNEL"}]}),
    );
    assert_eq!(code, 400);

    // Membership: past members only when asked; externals with their emails.
    let room = truth
        .streams
        .iter()
        .find(|s| s.members.iter().any(|m| m.left_at.is_some()))
        .expect("a room with a past member");
    let path = format!("/pod/v1/admin/stream/{}/membership/list", room.stream_id);
    let (code, now) = c.get_json(&path);
    assert_eq!(code, 200);
    let current = room.members.iter().filter(|m| m.left_at.is_none()).count();
    assert_eq!(now["count"], current);
    let (_, all) = c.get_json(&format!("{path}?includePastMembers=true&limit=2"));
    assert_eq!(all["count"], room.members.len());
    assert_eq!(all["members"].as_array().unwrap().len(), 2);
    assert!(all["members"][0]["joinDate"].is_i64());
    let (code, _) = c.get(&format!("{path}?limit=1001"));
    assert_eq!(code, 400);
    let ext = truth
        .streams
        .iter()
        .find(|s| s.external)
        .expect("an external stream");
    let (_, list) = c.get_json(&format!(
        "/pod/v1/admin/stream/{}/membership/list",
        ext.stream_id
    ));
    let members = list["members"].as_array().unwrap();
    assert!(members.iter().any(|m| m["user"]["isExternal"] == true));
    for m in members {
        let external = m["user"]["isExternal"].as_bool().unwrap();
        let id = m["user"]["userId"].as_i64().unwrap();
        assert_eq!(
            m["user"]["email"].as_str(),
            truth.user(id).unwrap().email.as_deref()
        );
        assert!(!external || m["user"]["email"].is_string());
    }
    let (code, _) = c.get("/pod/v1/admin/stream/nope/membership/list");
    assert_eq!(code, 400);
}

#[test]
fn a_users_batch_above_100_is_rejected_and_external_users_have_their_emails() {
    let sim = sim(small().build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let ids: Vec<String> = (0..101).map(|i| (1000 + i).to_string()).collect();
    let (code, resp) = c.get(&format!("/pod/v3/users?uid={}", ids.join(",")));
    assert_eq!(code, 400);
    error_body(resp);
    let wanted: Vec<String> = truth.users.iter().map(|u| u.user_id.to_string()).collect();
    let (code, list) = c.get_json(&format!(
        "/pod/v3/users?uid={},bogus&local=false",
        wanted.join(",")
    ));
    assert_eq!(code, 200);
    let users = list["users"].as_array().unwrap();
    assert_eq!(users.len(), truth.users.len());
    assert_eq!(list["errors"][0]["error"], "invalid.format");
    for u in users {
        let t = truth.user(u["id"].as_i64().unwrap()).unwrap();
        assert_eq!(u["emailAddress"].as_str(), t.email.as_deref());
        if t.external {
            let email = u["emailAddress"].as_str().unwrap();
            assert!(!email.ends_with("@acme-capital.example"), "{email}");
            assert_ne!(u["company"], truth.pod_company);
        }
    }
    // local=true hides external users; nothing found is 204.
    let ext = truth.users.iter().find(|u| u.external).unwrap();
    let (code, _) = c.get(&format!("/pod/v3/users?uid={}&local=true", ext.user_id));
    assert_eq!(code, 204);
    let (code, _) = c.get("/pod/v3/users?uid=1&email=a@b.c");
    assert_eq!(code, 400, "only one search list at a time");
}

#[test]
fn v4_messages_carry_the_spec_fields_and_match_the_ground_truth() {
    let sim = sim(small().max_small_attachment_bytes(2048).build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let mut checked = 0;
    for s in &truth.streams {
        let (code, page) = c.get_json(&format!(
            "/agent/v4/stream/{}/message?since=0&limit=500",
            s.stream_id
        ));
        if code == 204 {
            continue;
        }
        for m in page.as_array().unwrap() {
            let id = url_id(&m["messageId"]).unwrap();
            assert_eq!(URL_SAFE_NO_PAD.decode(&id).unwrap().len(), 25);
            let t = truth.message(&id).unwrap();
            assert_eq!(m["timestamp"], t.timestamp);
            let html = m["message"].as_str().unwrap();
            assert!(html.starts_with("<div data-format=\"PresentationML\" data-version=\"2.0\""));
            let data: Value = serde_json::from_str(m["data"].as_str().unwrap()).unwrap();
            let mentions: Vec<i64> = data
                .as_object()
                .unwrap()
                .values()
                .filter(|e| e["type"] == "com.symphony.user.mention")
                .map(|e| e["id"][0]["value"].as_str().unwrap().parse().unwrap())
                .collect();
            let mut want = t.mentions.clone();
            let mut got = mentions.clone();
            want.sort();
            got.sort();
            assert_eq!(got, want);
            assert_eq!(m["user"]["userId"], t.sender_user_id);
            assert_eq!(m["user"]["email"].as_str(), t.sender_email.as_deref());
            assert_eq!(url_id(&m["stream"]["streamId"]).unwrap(), s.stream_id);
            assert_eq!(m["stream"]["streamType"], s.stream_type.as_str());
            assert_eq!(
                url_id(&m["parentMessageId"]).as_deref(),
                t.parent_message_id.as_deref()
            );
            assert_eq!(url_id(&m["replacing"]), t.replacing);
            assert_eq!(url_id(&m["replacedBy"]), t.replaced_by);
            assert_eq!(
                url_id(&m["initialMessageId"]).as_deref(),
                t.initial_message_id.as_deref()
            );
            let atts = m["attachments"].as_array().cloned().unwrap_or_default();
            assert_eq!(atts.len(), t.attachments.len());
            for (a, ta) in atts.iter().zip(&t.attachments) {
                assert_eq!(a["id"], ta.id);
                assert_eq!(a["name"], ta.name);
                assert_eq!(a["size"], ta.size);
                assert!(a["images"].is_array());
            }
            checked += 1;
        }
    }
    assert_eq!(checked, truth.messages.len());
    // The data set has the features connectors must cope with.
    let ms = &truth.messages;
    assert!(ms.iter().any(|m| m.replacing.is_some()));
    assert!(ms.iter().any(|m| {
        m.replacing
            .as_ref()
            .is_some_and(|r| truth.message(r).unwrap().replacing.is_some())
    }));
    assert!(
        ms.iter()
            .any(|m| m.relation == Some(symphony_sim::Relation::Reply))
    );
    assert!(
        ms.iter()
            .any(|m| m.relation == Some(symphony_sim::Relation::Forward))
    );
    assert!(ms.iter().any(|m| m.suppressed));
    assert!(ms.iter().any(|m| m.text_chars == 60_000));
    assert!(
        ms.iter()
            .any(|m| m.text.is_empty() && !m.attachments.is_empty())
    );
    assert!(
        ms.iter()
            .any(|m| !m.hashtags.is_empty() && !m.cashtags.is_empty())
    );
    assert!(ms.iter().any(|m| !m.emojis.is_empty()));
    assert!(ms.iter().any(|m| m.sender_email.is_none()));
    assert!(
        ms.iter()
            .any(|m| m.text.contains('<') && m.text.contains('&'))
    );
    assert!(ms.iter().any(|m| !m.text.is_ascii()));
    // Get one message by id.
    let one = &truth.messages[3];
    let (code, m) = c.get_json(&format!("/agent/v1/message/{}", one.message_id));
    assert_eq!(code, 200);
    assert_eq!(url_id(&m["messageId"]).unwrap(), one.message_id);
}

/// Downloads an attachment, decoding base64 as it streams; returns (size, sha256 hex).
fn download(c: &Client, sid: &str, mid: &str, file_id: &str) -> Result<(u64, String), String> {
    let (code, resp) = c.get(&format!(
        "/agent/v1/stream/{sid}/attachment?fileId={file_id}&messageId={mid}"
    ));
    if code != 200 {
        return Err(format!("status {code}"));
    }
    assert_eq!(resp.content_type(), "application/octet-stream");
    let declared: u64 = resp.header("Content-Length").unwrap().parse().unwrap();
    let mut reader = resp.into_reader();
    let mut hasher = Sha256::new();
    let (mut size, mut read) = (0u64, 0u64);
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        read += n as u64;
        pending.extend_from_slice(&buf[..n]);
        let whole = pending.len() / 4 * 4;
        let bytes = STANDARD
            .decode(&pending[..whole])
            .map_err(|e| e.to_string())?;
        size += bytes.len() as u64;
        hasher.update(&bytes);
        pending.drain(..whole);
    }
    if read != declared || !pending.is_empty() {
        return Err(format!("short body: {read} of {declared} bytes"));
    }
    Ok((size, hex::encode(hasher.finalize())))
}

#[test]
fn attachments_round_trip_through_base64_to_the_ground_truth_sha256() {
    let sim = sim(small().large_attachment_bytes(6_000_000).build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let mut n = 0;
    let mut largest = 0;
    for (m, a) in truth.attachments() {
        let got = download(&c, &m.stream_id, &m.message_id, &a.id).unwrap();
        assert_eq!(got, (a.size, a.sha256.clone()), "{}", a.name);
        n += 1;
        largest = largest.max(a.size);
    }
    assert!(n > 5);
    assert_eq!(largest, 6_000_000, "the several-MB file was streamed");
    let (m, a) = truth.attachments().next().unwrap();
    // The id decoded (raw '/', '+', '=' as sent by some clients) and double-encoded.
    let decoded = percent_encoding::percent_decode_str(&a.id)
        .decode_utf8()
        .unwrap()
        .into_owned();
    assert!(decoded.contains('/') && decoded.ends_with('='));
    let got = download(&c, &m.stream_id, &m.message_id, &decoded).unwrap();
    assert_eq!(got.1, a.sha256);
    // The pod decodes the query once: an id encoded twice names no file.
    let double = a.id.replace('%', "%25");
    assert_eq!(
        download(&c, &m.stream_id, &m.message_id, &double),
        Err("status 400".into())
    );
    // Tiny sizes cover every base64 padding case.
    let sizes: HashSet<u64> = truth.attachments().map(|(_, a)| a.size).collect();
    assert!([1, 2, 3, 4].iter().all(|s| sizes.contains(s)));
    // Wrong message or unknown file is a 400.
    let other = truth
        .messages
        .iter()
        .find(|x| x.stream_id == m.stream_id && x.message_id != m.message_id)
        .unwrap();
    assert_eq!(
        download(&c, &m.stream_id, &other.message_id, &a.id),
        Err("status 400".into())
    );
    assert!(sim.stats().attachment_downloads as usize >= n);
}

#[test]
fn a_429_burst_carries_retry_after_and_old_agents_send_400_with_retry_after() {
    let faults: Faults = "429:every=3:burst=2:retry=2:on=users".parse().unwrap();
    let sim = sim(small().faults(faults).build());
    let c = Client::new(&sim.base_url());
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (code, resp) = c.get("/pod/v3/users?uid=1");
        if code == 429 {
            assert_eq!(resp.header("Retry-After"), Some("2"));
            assert_eq!(error_body(resp)["code"], 429);
        }
        statuses.push(code);
    }
    assert_eq!(statuses, [204, 204, 429, 429, 204, 429]);
    assert_eq!(sim.stats().throttled_429, 3);

    let faults: Faults = "400:every=2:burst=1:retry=5".parse().unwrap();
    let sim = self::sim(small().faults(faults).build());
    let c = Client::new(&sim.base_url());
    let (code, _) = c.get("/pod/v3/users?uid=1");
    assert_eq!(code, 204);
    let (code, resp) = c.get("/pod/v3/users?uid=1");
    assert_eq!(code, 400);
    assert_eq!(resp.header("Retry-After"), Some("5"));
    assert_eq!(sim.stats().throttled_400, 1);
}

#[test]
fn an_expired_session_gets_401_and_logging_in_again_works() {
    let faults: Faults = "expire:after=3".parse().unwrap();
    let sim = sim(small().faults(faults).build());
    let mut c = Client::new(&sim.base_url());
    for _ in 0..3 {
        let (code, _) = c.post("/pod/v2/admin/streams/list", &json!({}));
        assert_eq!(code, 200);
    }
    let (code, resp) = c.post("/pod/v2/admin/streams/list", &json!({}));
    assert_eq!(code, 401);
    error_body(resp);
    c.relogin();
    let (code, _) = c.post("/pod/v2/admin/streams/list", &json!({}));
    assert_eq!(code, 200);
    assert_eq!(sim.stats().expired_sessions, 1);
    // Forced expiry from the test side.
    assert!(sim.expire_sessions() >= 2);
    let (code, _) = c.post("/pod/v2/admin/streams/list", &json!({}));
    assert_eq!(code, 401);
}

#[test]
fn a_connection_dropped_mid_body_is_observable_by_the_client() {
    let faults: Faults = "drop:every=2".parse().unwrap();
    let sim = sim(small()
        .large_attachment_bytes(1_000_000)
        .faults(faults)
        .build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let (m, a) = truth
        .attachments()
        .find(|(_, a)| a.size == 1_000_000)
        .unwrap();
    // First download passes, the second is cut.
    assert_eq!(
        download(&c, &m.stream_id, &m.message_id, &a.id).unwrap().1,
        a.sha256
    );
    let cut = download(&c, &m.stream_id, &m.message_id, &a.id);
    assert!(cut.is_err(), "{cut:?}");
    // Message pages too.
    let busy = truth
        .streams
        .iter()
        .max_by_key(|s| s.message_count)
        .unwrap();
    let path = format!(
        "/agent/v4/stream/{}/message?since=0&limit=100",
        busy.stream_id
    );
    let (code, resp) = c.get(&path);
    assert_eq!(code, 200);
    assert!(resp.into_string().is_ok());
    let (code, resp) = c.get(&path);
    assert_eq!(code, 200);
    let body = resp.into_string();
    assert!(
        body.as_ref()
            .map_or(true, |b| serde_json::from_str::<Value>(b).is_err()),
        "the truncated page must not parse"
    );
    assert!(body.is_err(), "the client sees a transport error");
    let st = sim.stats();
    assert_eq!(st.dropped_connections, 2);
    assert_eq!(
        st.message_pages, 2,
        "the client saw the drop, it did not retry silently"
    );
}

#[test]
fn server_errors_and_slow_responses_are_injected_deterministically() {
    let faults: Faults = "5xx:every=2:status=503:on=streams,slow:every=1:ms=150:on=users"
        .parse()
        .unwrap();
    let sim = sim(small().faults(faults).build());
    let c = Client::new(&sim.base_url());
    let codes: Vec<u16> = (0..4)
        .map(|_| c.post("/pod/v2/admin/streams/list", &json!({})).0)
        .collect();
    assert_eq!(codes, [200, 503, 200, 503]);
    let t = std::time::Instant::now();
    c.get("/pod/v3/users?uid=1");
    assert!(t.elapsed() >= Duration::from_millis(150));
    let st = sim.stats();
    assert_eq!((st.server_errors, st.slowed), (2, 1));
    assert_eq!(st.status(503), 2);
}

#[test]
fn suppressions_leave_the_lists_and_are_reported_as_message_suppressed_events() {
    let sim = sim(small().build());
    let c = Client::new(&sim.base_url());
    let before = sim.ground_truth();
    let planned: Vec<_> = before.messages.iter().filter(|m| m.suppressed).collect();
    assert!(!planned.is_empty() && planned.iter().all(|m| !m.suppression_applied));
    let body = json!({"type": "datahose", "tag": "archiver"});
    let (_, resp) = c.post("/agent/v5/events/read", &body);
    let empty: Value = resp.into_json().unwrap();
    assert_eq!(empty["events"].as_array().unwrap().len(), 0);

    assert_eq!(sim.apply_suppressions(), planned.len());
    let after = sim.ground_truth();
    assert!(after.suppressions_applied);
    let target = planned[0];
    let (_, resp) = c.get(&format!(
        "/agent/v4/stream/{}/message?since=0&limit=500",
        target.stream_id
    ));
    let listed = if resp.status() == 204 {
        Vec::new()
    } else {
        resp.into_json::<Vec<Value>>().unwrap()
    };
    assert!(
        listed
            .iter()
            .all(|m| url_id(&m["messageId"]).unwrap() != target.message_id)
    );
    let (_, resp) = c.post(
        "/agent/v5/events/read",
        &json!({"type": "datahose", "tag": "archiver", "ackId": empty["ackId"]}),
    );
    let events: Value = resp.into_json().unwrap();
    let ids: HashSet<String> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "MESSAGESUPPRESSED");
            url_id(&e["payload"]["messageSuppressed"]["messageId"]).unwrap()
        })
        .collect();
    assert_eq!(ids.len(), planned.len());
    assert!(ids.contains(&target.message_id));

    // A datafeed sees the same, plus suppressions done through the pod API.
    let (code, resp) = c.post("/agent/v5/datafeeds", &json!({}));
    assert_eq!(code, 201);
    let feed: Value = resp.into_json().unwrap();
    let other = after.messages.iter().find(|m| !m.suppressed).unwrap();
    let (code, resp) = c.post(
        &format!(
            "/pod/v1/admin/messagesuppression/{}/suppress",
            other.message_id
        ),
        &json!({}),
    );
    assert_eq!(code, 200);
    let r: Value = resp.into_json().unwrap();
    assert_eq!(
        (
            r["suppressed"].as_bool(),
            r["suppressionDate"].as_i64().unwrap() > 0
        ),
        (Some(true), true)
    );
    let (_, resp) = c.post(
        &format!("/agent/v5/datafeeds/{}/read", feed["id"].as_str().unwrap()),
        &json!({"ackId": ""}),
    );
    let events: Value = resp.into_json().unwrap();
    assert_eq!(
        events["events"].as_array().unwrap().len(),
        planned.len() + 1
    );
    assert!(
        sim.ground_truth()
            .message(&other.message_id)
            .unwrap()
            .suppression_applied
    );
}

#[test]
fn applied_mode_starts_with_suppressions_in_effect() {
    let sim = sim(small().suppressions(SuppressionMode::Applied).build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let listed: usize = truth
        .streams
        .iter()
        .map(|s| c.read_stream(&s.stream_id, 500).0.len())
        .sum();
    assert_eq!(listed, truth.listed_messages().count());
    assert!(listed < truth.messages.len());
}

#[test]
fn unknown_paths_get_404_and_wrong_methods_405_with_the_error_body() {
    let sim = sim(small().build());
    let c = Client::new(&sim.base_url());
    for path in ["/pod/v9/nothing", "/agent/v1/nothing", "/elsewhere"] {
        let (code, resp) = c.get(path);
        assert_eq!(code, 404, "{path}");
        assert_eq!(error_body(resp)["code"], 404);
    }
    let (code, resp) = c.get("/pod/v2/admin/streams/list");
    assert_eq!(code, 405);
    error_body(resp);
}

#[test]
fn the_same_seed_gives_the_same_ground_truth() {
    let cfg = small().build();
    let a: GroundTruth = symphony_sim::generate_ground_truth(&cfg).unwrap();
    let b = symphony_sim::generate_ground_truth(&cfg).unwrap();
    assert_eq!(a, b);
    let c = symphony_sim::generate_ground_truth(&small().seed(12).build()).unwrap();
    assert_ne!(a.messages[0].message_id, c.messages[0].message_id);
    // Serialises for --dump-ground-truth.
    let text = serde_json::to_string(&a).unwrap();
    let back: GroundTruth = serde_json::from_str(&text).unwrap();
    assert_eq!(back, a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_start_serves_on_a_random_port_and_shuts_down() {
    let sim = symphony_sim::start(small().port(0).build()).await.unwrap();
    assert_ne!(sim.addr().port(), 0);
    let base = sim.base_url();
    let code = tokio::task::spawn_blocking(move || {
        let c = Client::new(&base);
        c.post("/pod/v2/admin/streams/list", &json!({})).0
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    let addr = sim.addr();
    sim.shutdown().await;
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err());
}

#[test]
fn a_throttling_400_may_come_without_retry_after() {
    let faults: Faults = "400:every=2:burst=1:retry=none".parse().unwrap();
    let sim = sim(small().faults(faults).build());
    let c = Client::new(&sim.base_url());
    let (code, _) = c.get("/pod/v3/users?uid=1");
    assert_eq!(code, 204);
    let (code, resp) = c.get("/pod/v3/users?uid=1");
    assert_eq!(code, 400);
    assert_eq!(resp.header("Retry-After"), None);
    assert!(
        error_body(resp)["message"]
            .as_str()
            .unwrap()
            .contains("retry later")
    );
    assert_eq!(sim.stats().throttled_400, 1);
}

/// A message of a stream the service account is (or is not) a member of, with an
/// attachment when one exists.
fn message_where(truth: &GroundTruth, member: bool) -> &symphony_sim::TruthMessage {
    let readable = |m: &&symphony_sim::TruthMessage| {
        truth
            .streams
            .iter()
            .any(|s| s.stream_id == m.stream_id && s.service_member == member)
    };
    truth
        .messages
        .iter()
        .filter(readable)
        .find(|m| !m.attachments.is_empty())
        .or_else(|| truth.messages.iter().find(readable))
        .expect("a message in such a stream")
}

#[test]
fn messages_single_messages_and_attachments_are_refused_to_non_members_with_403() {
    let sim = sim(small().membership(Membership::Half).build());
    let truth = sim.ground_truth();
    let members = truth.streams.iter().filter(|s| s.service_member).count();
    assert_eq!(members, truth.streams.len().div_ceil(2));
    let c = Client::new(&sim.base_url());

    let theirs = message_where(&truth, false);
    let (code, resp) = c.get(&format!(
        "/agent/v4/stream/{}/message?since=0",
        theirs.stream_id
    ));
    assert_eq!(code, 403);
    assert!(
        error_body(resp)["message"]
            .as_str()
            .unwrap()
            .contains("not a member")
    );
    let (code, _) = c.get(&format!("/agent/v1/message/{}", theirs.message_id));
    assert_eq!(code, 403);
    let a = &theirs.attachments[0];
    assert_eq!(
        download(&c, &theirs.stream_id, &theirs.message_id, &a.id),
        Err("status 403".into())
    );
    assert_eq!(sim.stats().not_member, 3);

    // The same requests succeed in a stream the account belongs to.
    let ours = message_where(&truth, true);
    let (code, _) = c.get(&format!(
        "/agent/v4/stream/{}/message?since=0",
        ours.stream_id
    ));
    assert_eq!(code, 200);
    let (code, _) = c.get(&format!("/agent/v1/message/{}", ours.message_id));
    assert_eq!(code, 200);
    // The admin endpoints see every stream whatever the account's memberships.
    let (code, _) = c.get(&format!(
        "/pod/v1/admin/stream/{}/membership/list",
        theirs.stream_id
    ));
    assert_eq!(code, 200);
}

#[test]
fn a_stream_the_service_account_is_added_to_is_served_from_then_on() {
    let sim = sim(small().membership(Membership::Half).build());
    let truth = sim.ground_truth();
    let theirs = message_where(&truth, false);
    let c = Client::new(&sim.base_url());
    let list = format!("/agent/v4/stream/{}/message?since=0", theirs.stream_id);
    assert_eq!(c.get(&list).0, 403);
    assert!(sim.add_service_account(&theirs.stream_id));
    assert!(!sim.add_service_account("no-such-stream"));
    assert_eq!(c.get(&list).0, 200);
    let truth = sim.ground_truth();
    assert!(truth.stream(&theirs.stream_id).unwrap().service_member);
}

#[test]
fn a_pod_may_refuse_non_members_with_400_instead() {
    let sim = sim(small()
        .membership(Membership::None)
        .non_member_status(400)
        .build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let theirs = message_where(&truth, false);
    let (code, _) = c.get(&format!(
        "/agent/v4/stream/{}/message?since=0",
        theirs.stream_id
    ));
    assert_eq!(code, 400);
    let (code, _) = c.get(&format!("/agent/v1/message/{}", theirs.message_id));
    assert_eq!(code, 400);
    assert!(
        SimConfig::builder()
            .non_member_status(404)
            .build()
            .validate()
            .is_err()
    );
}

#[test]
fn a_pod_without_the_datahose_addon_answers_404_to_the_events_read() {
    let sim = sim(small().datahose_addon(false).build());
    let c = Client::new(&sim.base_url());
    let body = json!({"type": "datahose", "tag": "archiver"});
    let (code, resp) = c.post("/agent/v5/events/read", &body);
    assert_eq!(code, 404);
    assert!(
        error_body(resp)["message"]
            .as_str()
            .unwrap()
            .contains("datahose")
    );
    // The message API still answers.
    let room = &sim.ground_truth().streams[0];
    let (code, _) = c.get(&format!(
        "/agent/v4/stream/{}/message?since=0",
        room.stream_id
    ));
    assert_eq!(code, 200);
}

#[test]
fn admin_endpoints_need_the_user_provisioning_role() {
    let sim = sim(small().user_provisioning(false).build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let (code, resp) = c.post("/pod/v2/admin/streams/list", &json!({}));
    assert_eq!(code, 403);
    assert!(
        error_body(resp)["message"]
            .as_str()
            .unwrap()
            .contains("User Provisioning")
    );
    let room = truth
        .streams
        .iter()
        .find(|s| s.stream_type == StreamType::Room)
        .unwrap();
    for path in [
        format!("/pod/v1/admin/stream/{}/membership/list", room.stream_id),
        format!("/pod/v1/admin/room/{}/membership/list", room.stream_id),
    ] {
        assert_eq!(c.get(&path).0, 403, "{path}");
    }
    let (code, _) = c.post(
        &format!(
            "/pod/v1/admin/messagesuppression/{}/suppress",
            truth.messages[0].message_id
        ),
        &json!({}),
    );
    assert_eq!(code, 403);
    // Endpoints outside the admin API still answer.
    assert_eq!(c.get("/pod/v2/sessioninfo").0, 200);
    let (code, _) = c.get(&format!(
        "/agent/v4/stream/{}/message?since=0",
        room.stream_id
    ));
    assert_ne!(code, 403);
}

#[test]
fn membership_lists_exist_for_im_mim_and_room_only() {
    let sim = sim(small().build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    for s in &truth.streams {
        let (code, _) = c.get(&format!(
            "/pod/v1/admin/stream/{}/membership/list",
            s.stream_id
        ));
        let expected = if s.stream_type == StreamType::Post {
            400
        } else {
            200
        };
        assert_eq!(code, expected, "{:?}", s.stream_type);
    }
}

#[test]
fn ids_in_urls_must_be_url_safe_base64() {
    let sim = sim(small().build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let standard = |id: &str| STANDARD.encode(URL_SAFE_NO_PAD.decode(id).unwrap());
    let m = truth
        .messages
        .iter()
        .find(|m| standard(&m.stream_id).contains(['+', '/']))
        .expect("a stream id that differs between the alphabets");
    let sid = standard(&m.stream_id)
        .replace('+', "%2B")
        .replace('/', "%2F");
    let (code, _) = c.get(&format!("/agent/v4/stream/{sid}/message?since=0"));
    assert_eq!(code, 400);
    let padded = format!("{}%3D%3D", m.message_id);
    let (code, _) = c.get(&format!("/agent/v1/message/{padded}"));
    assert_eq!(code, 400);
    let (code, _) = c.get(&format!("/agent/v4/stream/{}/message?since=0", m.stream_id));
    assert_eq!(code, 200);
}

#[test]
fn sessions_expire_after_an_hour_by_default() {
    assert_eq!(
        SimConfig::default().session_ttl,
        Some(Duration::from_secs(3600))
    );
    let sim = sim(small().session_ttl(Duration::from_millis(200)).build());
    let c = Client::new(&sim.base_url());
    assert_eq!(c.get("/pod/v2/sessioninfo").0, 200);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(c.get("/pod/v2/sessioninfo").0, 401);
    assert_eq!(sim.stats().expired_sessions, 1);
}

#[test]
fn a_wall_post_sharing_a_message_carries_it_and_serves_its_files() {
    let sim = sim(small().build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    let post = truth
        .messages
        .iter()
        .find(|m| m.shared_message_id.is_some())
        .expect("a wall post sharing a message");
    assert_eq!(post.stream_type, StreamType::Post);
    let shared = truth
        .message(post.shared_message_id.as_deref().unwrap())
        .unwrap();
    assert!(!shared.attachments.is_empty(), "the first share has files");
    let (code, m) = c.get_json(&format!("/agent/v1/message/{}", post.message_id));
    assert_eq!(code, 200);
    let inner = &m["sharedMessage"];
    assert_eq!(url_id(&inner["messageId"]).unwrap(), shared.message_id);
    assert_eq!(
        url_id(&inner["stream"]["streamId"]).unwrap(),
        shared.stream_id
    );
    let a = &shared.attachments[0];
    assert_eq!(inner["attachments"][0]["id"], a.id);
    let got = download(&c, &post.stream_id, &post.message_id, &a.id).unwrap();
    assert_eq!(got.1, a.sha256);
    // Other messages' files are not served through the post.
    let other = truth
        .attachments()
        .find(|(m, _)| m.message_id != shared.message_id)
        .unwrap()
        .1;
    assert_eq!(
        download(&c, &post.stream_id, &post.message_id, &other.id),
        Err("status 400".into())
    );
}

#[test]
fn agent_endpoints_need_a_key_manager_token_unless_the_pod_has_simplified_key_delivery() {
    for required in [true, false] {
        let sim = sim(small().key_manager_required(required).build());
        let truth = sim.ground_truth();
        let c = Client::new(&sim.base_url());
        let path = format!(
            "{}/agent/v4/stream/{}/message?since=0",
            sim.base_url(),
            truth.streams[0].stream_id
        );
        let (code, _) = call(c.agent.get(&path).set("sessionToken", &c.session).call());
        assert_eq!(code, if required { 401 } else { 200 });
        // A token sent anyway must be valid.
        let (code, _) = call(
            c.agent
                .get(&path)
                .set("sessionToken", &c.session)
                .set("keyManagerToken", "bogus")
                .call(),
        );
        assert_eq!(code, 401);
    }
}

/// One datahose read for `tag`: the events and the new ackId.
fn read_datahose(c: &Client, tag: &str, ack: &str) -> (Vec<Value>, String) {
    let (code, resp) = c.post(
        "/agent/v5/events/read",
        &json!({"type": "datahose", "tag": tag, "ackId": ack}),
    );
    assert_eq!(code, 200);
    let list: Value = resp.into_json().unwrap();
    (
        list["events"].as_array().unwrap().clone(),
        list["ackId"].as_str().unwrap().to_string(),
    )
}

#[test]
fn the_datahose_long_polls_redelivers_unacknowledged_batches_out_of_order_and_emits_every_type() {
    let datahose = symphony_sim::DatahoseConfig {
        history: true,
        wait: Duration::from_millis(300),
        redeliver_after: Duration::from_millis(500),
        batch: 50,
    };
    let sim = sim(small().datahose(datahose).build());
    let c = Client::new(&sim.base_url());
    let log: Vec<String> = sim
        .ground_truth()
        .events
        .iter()
        .map(|e| e.event_id.clone())
        .collect();
    let ids = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    // A batch holds the next events, not in their order.
    let (first, ack1) = read_datahose(&c, "archiver", "");
    let got = ids(&first);
    assert_ne!(got, log[..50], "delivered out of order");
    let mut sorted = got.clone();
    sorted.sort_by_key(|id| log.iter().position(|l| l == id));
    assert_eq!(sorted, log[..50]);
    // The next read acknowledges it; a batch left unacknowledged comes again.
    let (second, _unacked) = read_datahose(&c, "archiver", &ack1);
    let (_, ack3) = read_datahose(&c, "archiver", "");
    std::thread::sleep(Duration::from_millis(600));
    let (fourth, _) = read_datahose(&c, "archiver", &ack3);
    let again: HashSet<String> = ids(&fourth).into_iter().collect();
    assert!(
        ids(&second).iter().all(|id| again.contains(id)),
        "redelivered"
    );
    assert!(ids(&first).iter().all(|id| !again.contains(id)), "acked");
    assert_eq!(sim.stats().redelivered_events, 50);
    // An ackId never given out is refused.
    let (code, _) = c.post(
        "/agent/v5/events/read",
        &json!({"type": "datahose", "tag": "archiver", "ackId": "dh-999999"}),
    );
    assert_eq!(code, 400);

    // Every event type; an empty read waits before answering.
    sim.apply_suppressions();
    let mut types = HashSet::new();
    let mut ack = String::new();
    loop {
        let started = std::time::Instant::now();
        let (events, next) = read_datahose(&c, "other-tag", &ack);
        ack = next;
        if events.is_empty() {
            assert!(started.elapsed() >= Duration::from_millis(300), "long poll");
            break;
        }
        for e in &events {
            types.insert(e["type"].as_str().unwrap().to_string());
            if e["type"] == "MESSAGESENT" {
                let m = &e["payload"]["messageSent"]["message"];
                assert_eq!(url_id(&m["messageId"]), url_id(&e["messageId"]));
            }
        }
    }
    for t in [
        "MESSAGESENT",
        "SHAREDPOST",
        "MESSAGESUPPRESSED",
        "USERJOINEDROOM",
        "USERLEFTROOM",
        "ROOMUPDATED",
    ] {
        assert!(types.contains(t), "{t} in {types:?}");
    }
}

#[test]
fn every_api_call_waits_the_configured_latency() {
    let latency = Duration::from_millis(150);
    let sim = sim(small().messages(20).latency(latency).build());
    let started = std::time::Instant::now();
    let c = Client::new(&sim.base_url());
    // Two logins (session and key manager), each delayed.
    assert!(started.elapsed() >= latency * 2, "{:?}", started.elapsed());
    for call in 0..3 {
        let started = std::time::Instant::now();
        let (code, _) = c.post("/pod/v2/admin/streams/list?limit=1", &json!({}));
        assert_eq!(code, 200);
        let took = started.elapsed();
        assert!(took >= latency, "call {call} took {took:?}");
    }
    // An error answer waits too.
    let started = std::time::Instant::now();
    let (code, _) = c.post("/pod/v2/admin/streams/list?limit=101", &json!({}));
    assert_eq!(code, 400);
    assert!(started.elapsed() >= latency);
    // Without latency the same call answers sooner.
    let quick = sim_quick_call();
    assert!(quick < latency, "{quick:?}");
}

/// How long a stream-list call takes on a simulator without latency.
fn sim_quick_call() -> Duration {
    let sim = sim(small().messages(20).build());
    let c = Client::new(&sim.base_url());
    let started = std::time::Instant::now();
    let (code, _) = c.post("/pod/v2/admin/streams/list?limit=1", &json!({}));
    assert_eq!(code, 200);
    started.elapsed()
}

#[test]
fn extra_streams_make_a_pod_of_thousands_of_streams_from_the_seed() {
    let cfg = || small().messages(50).extra_streams(1500, 1500, 3).build();
    let started = std::time::Instant::now();
    let truth = symphony_sim::generate_ground_truth(&cfg()).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let plain = symphony_sim::generate_ground_truth(&small().messages(50).build()).unwrap();
    assert_eq!(truth.streams.len(), plain.streams.len() + 3000);
    assert_eq!(truth.messages.len(), plain.messages.len() + 9000);
    let rooms = truth
        .streams
        .iter()
        .filter(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.starts_with("Extra room"))
        })
        .count();
    assert_eq!(rooms, 1500);
    // The same seed gives the same pod; another seed another one.
    assert_eq!(symphony_sim::generate_ground_truth(&cfg()).unwrap(), truth);
    let other = symphony_sim::generate_ground_truth(&SimConfig { seed: 12, ..cfg() }).unwrap();
    assert_ne!(other.streams, truth.streams);
    // Over HTTP: every stream is listed (100 a page) and readable.
    let sim = sim(cfg());
    let c = Client::new(&sim.base_url());
    let (_, resp) = c.post("/pod/v2/admin/streams/list?limit=100", &json!({}));
    let page: Value = resp.into_json().unwrap();
    assert_eq!(page["count"], truth.streams.len());
    let extra = truth
        .streams
        .iter()
        .rev()
        .find(|s| s.message_count == 3)
        .unwrap();
    let (ids, _) = c.read_stream(&extra.stream_id, 500);
    assert_eq!(ids.len(), 3);
}

#[test]
fn stream_info_is_served_to_members_as_the_spec_shapes_it() {
    let sim = sim(small()
        .membership(Membership::Half)
        .streams(2, 1, 2, 1)
        .build());
    let truth = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    for s in &truth.streams {
        let (code, info) = c.get_json(&format!("/pod/v2/streams/{}/info", s.stream_id));
        if !s.service_member {
            assert_eq!(code, 403, "{info}");
            assert!(info["message"].as_str().unwrap().contains("not a member"));
            continue;
        }
        assert_eq!(code, 200, "{info}");
        assert_eq!(url_id(&info["id"]).unwrap(), s.stream_id);
        assert_eq!(info["streamType"]["type"], s.stream_type.as_str());
        assert!(info["active"].is_boolean() && info["crossPod"].is_boolean());
        assert!(info.get("createdByUserId").is_none());
        match s.stream_type {
            StreamType::Room => {
                assert_eq!(info["roomAttributes"]["name"].as_str(), s.name.as_deref());
                assert!(info.get("streamAttributes").is_none());
            }
            _ => assert!(info["streamAttributes"]["members"].is_array()),
        }
    }
    let (code, _) = c.get_json("/pod/v2/streams/not+url+safe/info");
    assert_eq!(code, 400);
}

/// Every stream id the admin stream list gives for `filter`, URL-safe.
fn listed_streams(c: &Client, filter: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let (code, resp) = c.post(
            &format!("/pod/v2/admin/streams/list?skip={}&limit=100", ids.len()),
            filter,
        );
        assert_eq!(code, 200);
        let list: Value = resp.into_json().unwrap();
        let page = list["streams"].as_array().unwrap();
        ids.extend(page.iter().map(|s| url_id(&s["id"]).unwrap()));
        if page.len() < 100 {
            return ids;
        }
    }
}

#[test]
fn a_later_stream_shows_nowhere_until_created_then_everywhere_with_its_messages() {
    let datahose = symphony_sim::DatahoseConfig {
        history: true,
        wait: Duration::from_millis(50),
        ..Default::default()
    };
    let sim = sim(small()
        .messages(60)
        .later_streams(1, 1, 4)
        .datahose(datahose)
        .build());
    let before = sim.ground_truth();
    let c = Client::new(&sim.base_url());
    assert_eq!(
        listed_streams(&c, &json!({})).len(),
        before.streams.len(),
        "later streams are not listed before they are created"
    );
    // The datahose's history does not know them either.
    let mut seen = 0;
    let mut ack = String::new();
    loop {
        let (events, next) = read_datahose(&c, "later", &ack);
        if events.is_empty() {
            break;
        }
        seen += events.len();
        ack = next;
    }
    assert_eq!(seen, before.events.len());

    let room = sim.create_stream(StreamType::Room).expect("a later room");
    assert!(
        sim.create_stream(StreamType::Room).is_none(),
        "only one was held back"
    );
    let after = sim.ground_truth();
    let stream = after
        .stream(&room)
        .expect("in the ground truth once created");
    assert_eq!(stream.stream_type, StreamType::Room);
    assert!(stream.service_member && stream.active);
    assert!(stream.created_at > before.messages.iter().map(|m| m.timestamp).max().unwrap());
    let messages: Vec<&str> = after
        .messages
        .iter()
        .filter(|m| m.stream_id == room)
        .map(|m| m.message_id.as_str())
        .collect();
    assert_eq!(messages.len(), 4);
    assert_eq!(after.messages.len(), before.messages.len() + 4);
    assert!(listed_streams(&c, &json!({})).contains(&room));
    let (ids, _) = c.read_stream(&room, 50);
    assert_eq!(ids, messages, "its messages are served in order");
    // Its messages reach the datahose from its creation on.
    let (events, _) = read_datahose(&c, "later", &ack);
    let mut sent: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "MESSAGESENT")
        .map(|e| url_id(&e["payload"]["messageSent"]["message"]["messageId"]).unwrap())
        .collect();
    sent.sort();
    let mut expected: Vec<String> = messages.iter().map(|m| m.to_string()).collect();
    expected.sort();
    assert_eq!(sent, expected);
    // The IM still held back is unknown to every endpoint.
    let im = sim.create_stream(StreamType::Im).expect("a later IM");
    assert!(sim.ground_truth().stream(&im).is_some());
}

#[test]
fn a_later_stream_is_unknown_to_every_endpoint_until_created() {
    let sim = sim(small().messages(40).later_streams(0, 1, 2).build());
    // The id is known to the test only: the stream is created, read, and compared with one
    // created again in a second simulator of the same seed that keeps it back.
    let twin = self::sim(small().messages(40).later_streams(0, 1, 2).build());
    let im = twin.create_stream(StreamType::Im).unwrap();
    let message = twin
        .ground_truth()
        .messages
        .iter()
        .find(|m| m.stream_id == im)
        .unwrap()
        .message_id
        .clone();
    let c = Client::new(&sim.base_url());
    let (code, resp) = c.get(&format!("/agent/v4/stream/{im}/message?since=0"));
    assert_eq!(code, 400);
    assert!(
        error_body(resp)["message"]
            .as_str()
            .unwrap()
            .contains("Invalid stream id")
    );
    assert_eq!(c.get(&format!("/agent/v1/message/{message}")).0, 204);
    assert_eq!(c.get(&format!("/pod/v2/streams/{im}/info")).0, 400);
    assert_eq!(
        c.get(&format!("/pod/v1/admin/stream/{im}/membership/list"))
            .0,
        400
    );
    assert!(!sim.add_service_account(&im));
    assert_eq!(sim.create_stream(StreamType::Im).as_deref(), Some(&*im));
    assert_eq!(c.get(&format!("/agent/v1/message/{message}")).0, 200);
    assert_eq!(c.get(&format!("/pod/v2/streams/{im}/info")).0, 200);
}

#[test]
fn a_deactivated_room_stays_listed_as_inactive_and_readable() {
    let sim = sim(small().messages(80).build());
    let truth = sim.ground_truth();
    let room = truth
        .streams
        .iter()
        .find(|s| s.stream_type == StreamType::Room && s.active && s.message_count > 0)
        .expect("an active room with messages")
        .stream_id
        .clone();
    let im = truth
        .streams
        .iter()
        .find(|s| s.stream_type == StreamType::Im)
        .unwrap()
        .stream_id
        .clone();
    let c = Client::new(&sim.base_url());
    let path = |id: &str, active: &str| format!("/pod/v1/admin/room/{id}/setActive{active}");
    // `active` is required, and only rooms are deactivated.
    assert_eq!(c.post(&path(&room, ""), &json!({})).0, 400);
    assert_eq!(c.post(&path(&room, "?active=maybe"), &json!({})).0, 400);
    let (code, resp) = c.post(&path(&im, "?active=false"), &json!({}));
    assert_eq!(code, 400);
    assert!(
        error_body(resp)["message"]
            .as_str()
            .unwrap()
            .contains("not a room")
    );
    assert!(!sim.set_room_active(&im, false));

    let (code, resp) = c.post(&path(&room, "?active=false"), &json!({}));
    assert_eq!(code, 200);
    let detail: Value = resp.into_json().unwrap();
    assert_eq!(detail["roomSystemInfo"]["active"], false);
    assert_eq!(url_id(&detail["roomSystemInfo"]["id"]).unwrap(), room);
    assert!(detail["immutableRoomAttributes"]["public"].is_boolean());

    // Listed without a status filter (as every stream of the enterprise), with isActive
    // false; the status filter tells active from inactive.
    assert!(listed_streams(&c, &json!({})).contains(&room));
    assert!(listed_streams(&c, &json!({"status": "INACTIVE"})).contains(&room));
    assert!(!listed_streams(&c, &json!({"status": "ACTIVE"})).contains(&room));
    let (_, list) = c.get_json(&format!(
        "/pod/v2/streams/{room}/info" // the member's view
    ));
    assert_eq!(list["active"], false);
    // Its messages stay readable: the spec only stops new ones.
    let (ids, _) = c.read_stream(&room, 50);
    assert_eq!(ids.len(), truth.stream(&room).unwrap().message_count);
    assert!(!sim.ground_truth().stream(&room).unwrap().active);

    // Reactivated, it is active again.
    assert!(sim.set_room_active(&room, true));
    assert!(listed_streams(&c, &json!({"status": "ACTIVE"})).contains(&room));
    assert!(sim.ground_truth().stream(&room).unwrap().active);
}

#[test]
fn a_stream_the_service_account_is_removed_from_stays_listed_and_is_refused() {
    let sim = sim(small().messages(80).build());
    let truth = sim.ground_truth();
    let ours = message_where(&truth, true).clone();
    let c = Client::new(&sim.base_url());
    let list = format!("/agent/v4/stream/{}/message?since=0", ours.stream_id);
    assert_eq!(c.get(&list).0, 200);
    assert!(sim.remove_service_account(&ours.stream_id));
    assert!(
        !sim.remove_service_account(&ours.stream_id),
        "no longer a member"
    );
    assert_eq!(c.get(&list).0, 403);
    assert_eq!(
        c.get(&format!("/agent/v1/message/{}", ours.message_id)).0,
        403
    );
    assert_eq!(
        c.get(&format!("/pod/v2/streams/{}/info", ours.stream_id)).0,
        403
    );
    // The admin list is the enterprise's: the stream is still in it.
    assert!(listed_streams(&c, &json!({})).contains(&ours.stream_id));
    let after = sim.ground_truth();
    assert!(!after.stream(&ours.stream_id).unwrap().service_member);
    assert_eq!(after.messages.len(), truth.messages.len());
    // Added back, it is served again.
    assert!(sim.add_service_account(&ours.stream_id));
    assert_eq!(c.get(&list).0, 200);
}

#[test]
fn inline_images_are_opt_in_data_urls_whose_bytes_the_ground_truth_hashes() {
    let plain = symphony_sim::generate_ground_truth(&small().build()).unwrap();
    assert!(plain.messages.iter().all(|m| m.inline_images.is_empty()));
    let sim = sim(small().inline_images(true).build());
    let truth = sim.ground_truth();
    let with_images: Vec<_> = truth
        .messages
        .iter()
        .filter(|m| !m.inline_images.is_empty())
        .collect();
    assert!(with_images.len() >= 3, "{}", with_images.len());
    // Only the messages given an image differ.
    assert_eq!(truth.messages.len(), plain.messages.len());
    for (a, b) in truth.messages.iter().zip(&plain.messages) {
        if a.inline_images.is_empty() {
            assert_eq!(a, b);
        }
    }
    let c = Client::new(&sim.base_url());
    for m in with_images {
        let (code, page) = c.get_json(&format!(
            "/agent/v4/stream/{}/message?since={}&limit=500",
            m.stream_id, m.timestamp
        ));
        assert_eq!(code, 200);
        let served = page
            .as_array()
            .unwrap()
            .iter()
            .find(|v| url_id(&v["messageId"]).as_deref() == Some(m.message_id.as_str()))
            .unwrap();
        let markup = served["message"].as_str().unwrap();
        let (_, rest) = markup
            .split_once("<img src=\"data:image/svg+xml;base64,")
            .expect("an <img> with a data URL");
        let bytes = STANDARD.decode(&rest[..rest.find('"').unwrap()]).unwrap();
        assert_eq!(m.inline_images[0].media_type, "image/svg+xml");
        assert_eq!(bytes.len() as u64, m.inline_images[0].size);
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            m.inline_images[0].sha256
        );
        assert!(bytes.starts_with(b"<svg xmlns=\"http://www.w3.org/2000/svg\""));
    }
}
