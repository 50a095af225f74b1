//! What the sink reads from Microsoft Graph's answers, as plain functions
//! of the answer's text: no request is made here. The sink's requests use
//! them, and so does the `graph_json` fuzz target in `fuzz/`. None of them
//! fails: an answer that is not what Graph documents reads as empty (no
//! id, no code, the first 200 characters as the message), and the request
//! that got it decides what that means.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::PENDING_PROPERTY;

/// Longest `Retry-After` honoured at once.
pub const MAX_WAIT: Duration = Duration::from_secs(120);

/// A 2xx answer's body as JSON; `Null` when it is empty or not JSON (a
/// 204, or a proxy's HTML page).
pub fn body(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Code and message of Graph's error body `{"error": {"code": …,
/// "message": …, "innerError": …}}`: an empty code when there is none,
/// and the body's first 200 characters when there is no message.
pub fn error(text: &str) -> (String, String) {
    let parsed = body(text);
    let code = parsed["error"]["code"].as_str().unwrap_or("").to_string();
    let message = parsed["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| text.chars().take(200).collect());
    (code, message)
}

/// Seconds of a `Retry-After` header; `None` unless it is a whole number
/// of seconds (Graph does not send the HTTP-date form).
pub fn retry_after(header: &str) -> Option<u64> {
    header.trim().parse().ok()
}

/// How long to wait before try `attempt` (1, 2, …) after a throttled
/// answer: its `Retry-After`, else an exponential backoff (1 s, 2 s, 4 s,
/// up to 64 s); never more than [`MAX_WAIT`].
pub fn throttle_wait(retry_after: Option<u64>, attempt: u32) -> Duration {
    Duration::from_secs(retry_after.unwrap_or(1 << attempt.saturating_sub(1).min(6))).min(MAX_WAIT)
}

/// The `id` of a created item (message, folder); `None` when the answer
/// has none.
pub fn id(created: &Value) -> Option<String> {
    created["id"].as_str().map(str::to_string)
}

/// The id of the first folder of a `childFolders` list (`{"value":
/// [{"id": …}, …]}`), the one a `displayName` filter found.
pub fn first_id(list: &Value) -> Option<String> {
    list["value"]
        .as_array()
        .and_then(|v| v.first())
        .and_then(id)
}

/// `uploadUrl` of a `createUploadSession` answer.
pub fn upload_url(session: &Value) -> Option<String> {
    session["uploadUrl"].as_str().map(str::to_string)
}

/// Where an upload session goes on after a 200–202 answer to the PUT of
/// the bytes before `end` of `total`: the start of the answer's first
/// `nextExpectedRanges` (`"12345-"` or `"12345-67890"`), else `end`; after
/// a 201 (the attachment is complete), `total`.
pub fn next_upload_start(status: u16, text: &str, end: usize, total: usize) -> usize {
    if status == 201 {
        return total;
    }
    body(text)["nextExpectedRanges"]
        .as_array()
        .and_then(|r| r.first())
        .and_then(|r| r.as_str())
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(end)
}

/// What a folder holds: Message-ID (without brackets) → message id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Contents {
    /// Complete messages.
    pub complete: HashMap<String, String>,
    /// Messages still marked pending (a run stopped while adding their
    /// attachments): not delivered, to delete before creating again.
    pub incomplete: HashMap<String, Vec<String>>,
}

impl Contents {
    /// Adds the messages of one page of a folder's message list
    /// (`{"value": [{"id", "internetMessageId",
    /// "singleValueExtendedProperties"}], "@odata.nextLink"}`) and returns
    /// the next page's URL. A message without an id or Message-ID is left
    /// out; one whose [`PENDING_PROPERTY`] is "1" is incomplete.
    pub fn add_page(&mut self, page: &Value) -> Option<String> {
        for m in page["value"].as_array().into_iter().flatten() {
            let (Some(mid), Some(id)) = (m["internetMessageId"].as_str(), m["id"].as_str()) else {
                continue;
            };
            let mid = mid.trim().trim_matches(['<', '>']).to_string();
            let pending = m["singleValueExtendedProperties"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| {
                    p["id"]
                        .as_str()
                        .is_some_and(|i| i.eq_ignore_ascii_case(PENDING_PROPERTY))
                        && p["value"] == "1"
                });
            if pending {
                self.incomplete.entry(mid).or_default().push(id.to_string());
            } else {
                self.complete.insert(mid, id.to_string());
            }
        }
        page["@odata.nextLink"].as_str().map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_gives_its_code_and_message_and_any_other_body_its_start() {
        let (code, message) = error(
            r#"{"error":{"code":"ErrorItemNotFound","message":"The specified object was not found in the store.","innerError":{"date":"2024-05-02T09:14:07","request-id":"6a8b"}}}"#,
        );
        assert_eq!(code, "ErrorItemNotFound");
        assert_eq!(message, "The specified object was not found in the store.");
        let html = format!("<html>{}</html>", "é".repeat(300));
        let (code, message) = error(&html);
        assert_eq!(code, "");
        assert_eq!(message.chars().count(), 200);
        assert!(html.starts_with(&message));
    }

    #[test]
    fn retry_after_is_whole_seconds_and_waits_are_capped() {
        assert_eq!(retry_after(" 10 "), Some(10));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(throttle_wait(Some(10), 1), Duration::from_secs(10));
        assert_eq!(throttle_wait(Some(u64::MAX), 1), MAX_WAIT);
        assert_eq!(throttle_wait(None, 3), Duration::from_secs(4));
        assert_eq!(throttle_wait(None, u32::MAX), Duration::from_secs(64));
    }

    #[test]
    fn an_upload_goes_on_where_the_server_expects_and_ends_at_201() {
        let ranges = r#"{"expirationDateTime":"2019-09-25T01:09:30.7671707Z","nextExpectedRanges":["12345-55232","77829-99375"]}"#;
        assert_eq!(next_upload_start(200, ranges, 500, 1000), 12345);
        assert_eq!(next_upload_start(200, "", 500, 1000), 500);
        assert_eq!(next_upload_start(201, ranges, 500, 1000), 1000);
    }

    #[test]
    fn a_page_of_messages_splits_complete_from_pending_and_names_the_next() {
        let page = body(&format!(
            r#"{{"value":[
                {{"id":"a","internetMessageId":" <one@x> "}},
                {{"id":"b","internetMessageId":"<two@x>","singleValueExtendedProperties":[{{"id":"{}","value":"1"}}]}},
                {{"id":"c"}}],
              "@odata.nextLink":"https://graph.microsoft.com/v1.0/next"}}"#,
            PENDING_PROPERTY.to_ascii_lowercase()
        ));
        let mut contents = Contents::default();
        assert_eq!(
            contents.add_page(&page).as_deref(),
            Some("https://graph.microsoft.com/v1.0/next")
        );
        assert_eq!(
            contents.complete,
            HashMap::from([("one@x".into(), "a".into())])
        );
        assert_eq!(
            contents.incomplete,
            HashMap::from([("two@x".into(), vec!["b".into()])])
        );
        assert_eq!(
            first_id(&body(r#"{"value":[{"id":"f1"},{"id":"f2"}]}"#)).as_deref(),
            Some("f1")
        );
        assert_eq!(first_id(&body(r#"{"value":[]}"#)), None);
    }
}
