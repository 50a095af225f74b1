//! Microsoft Graph's answers as the Graph sink reads them (error bodies,
//! `Retry-After`, created messages and folders, folder lists, pages of a
//! folder's messages, upload sessions and their PUTs) and the identity
//! platform's token answer. The input is a body, or `Name: value` header
//! lines, a blank line and a body.
#![no_main]

use std::time::Instant;

use connector_oauth::{TokenAnswer, read_token_answer, renewal_time};
use connector_sink_graph::UPLOAD_CHUNK;
use connector_sink_graph::answers::{self, Contents};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The sink reads bodies as lossy UTF-8.
    let text = String::from_utf8_lossy(data);
    let (head, body) = if text.starts_with(['{', '[']) {
        ("", &*text)
    } else {
        text.split_once("\r\n\r\n")
            .or_else(|| text.split_once("\n\n"))
            .unwrap_or(("", &text))
    };
    for line in head.lines() {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("retry-after")
        {
            let seconds = answers::retry_after(value);
            for attempt in 0..=7 {
                let _ = answers::throttle_wait(seconds, attempt);
            }
        }
    }
    let _ = answers::error(body);
    let json = answers::body(body);
    let _ = answers::id(&json);
    let _ = answers::first_id(&json);
    let _ = answers::upload_url(&json);
    let _ = Contents::default().add_page(&json);
    for status in [200, 201, 202] {
        let _ = answers::next_upload_start(status, body, UPLOAD_CHUNK, 3 * UPLOAD_CHUNK);
    }
    for status in [200, 400, 401, 429, 503] {
        if let TokenAnswer::Granted { lifetime, .. } = read_token_answer(status, body) {
            let _ = renewal_time(Instant::now(), lifetime);
        }
    }
});
