//! Symphony PresentationML and EntityJSON into text and sanitized HTML.
//! The input is the message, then a NUL byte, then the entity data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use symphony::presentation::{self, MentionedUser};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (message, entities) = text.split_once('\0').unwrap_or((&text, ""));
    let entities = presentation::parse_entities((!entities.is_empty()).then_some(entities));
    let _ = presentation::mentioned_users(&entities);
    let users = |id: i64| {
        (id % 2 == 0).then(|| MentionedUser {
            name: format!("User {id}"),
            email: Some(format!("u{id}@example.com")),
        })
    };
    let rendered = presentation::render(message, &entities, &users);
    assert!(
        !rendered.html.to_ascii_lowercase().contains("<script"),
        "rendered HTML must never contain a script element"
    );
    let _ = presentation::strip_tags(message);
    let _ = presentation::decode_entities(message);
    let _ = presentation::safe_href(message);
});
