//! Symphony's JSON answers (pod, agent and key manager): each API type
//! read from the input, and messages and events normalized as the session
//! does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use symphony::api::{self, V4Event, V4Message};
use symphony::config::StreamType;
use symphony::normalize::{self, MessageParts, ParentKind};
use symphony::presentation;

fn listed(raw: &str, msg: &V4Message) {
    let entities = presentation::parse_entities(msg.data.as_deref());
    let users = |_| None;
    let mut rendered =
        presentation::render(msg.message.as_deref().unwrap_or(""), &entities, &users);
    if let Some(shared) = &msg.shared_message {
        let shared_entities = presentation::parse_entities(shared.data.as_deref());
        let inner = presentation::render(
            shared.message.as_deref().unwrap_or(""),
            &shared_entities,
            &users,
        );
        rendered = normalize::with_shared(rendered, &inner, "someone");
    }
    for file in msg.files() {
        let _ = normalize::media_type(file.name.as_deref().unwrap_or(""));
        let _ = api::canonical_id(&file.id);
    }
    let _ = normalize::message(
        msg,
        MessageParts {
            raw,
            stream_id: "s",
            stream_type: StreamType::Room,
            parent: msg.parent_message_id.as_ref().map(|_| ParentKind::Reply),
            known_sender: None,
            rendered,
            attachments: Vec::new(),
        },
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) {
        for raw in items {
            if let Ok(msg) = serde_json::from_str::<V4Message>(raw.get()) {
                listed(raw.get(), &msg);
            }
        }
    }
    if let Ok(msg) = serde_json::from_str::<V4Message>(text) {
        listed(text, &msg);
    }
    if let Ok(list) = serde_json::from_str::<api::EventList<'_>>(text) {
        for raw in list.events {
            if let Ok(ev) = serde_json::from_str::<V4Event>(raw.get()) {
                let _ = normalize::event(raw.get(), &ev);
            }
            if let Ok(sent) = serde_json::from_str::<api::SentEvent>(raw.get()) {
                let _ = sent;
            }
        }
    }
    let _ = serde_json::from_str::<api::StreamList>(text);
    let _ = serde_json::from_str::<api::MembershipList>(text);
    let _ = serde_json::from_str::<api::UserList>(text);
    let _ = serde_json::from_str::<Vec<api::RoomMember>>(text);
    let _ = serde_json::from_str::<api::Token>(text);
    let _ = serde_json::from_str::<api::ErrorBody>(text);
});
