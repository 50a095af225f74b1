//! Throughput of each host stage, per message: the plugin boundary (a page
//! of messages across WIT), email building, mapping and the Maildir write.
//!
//! Run with `cargo bench -p connector-e2e --bench stages`.

use std::hint::black_box;

use connector_e2e::{build_plugin, workspace_root};
use connector_host::config::PluginManifest;
use connector_host::config::manifest::package;
use connector_host::convert::EmailConverter;
use connector_host::map::{Mailbox, UserMap};
use connector_host::model::{Conversation, ConversationKind, Message, MessageKind, Person};
use connector_host::plugin::{Capabilities, SecretStore, loader};
use connector_host::sink::{Delivery, MaildirSink, Sink};
use connector_host::wasm::PluginEngine;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn person(i: usize) -> Person {
    Person {
        id: format!("u-{i}"),
        display_name: Some(format!("User Number {i}")),
        email: Some(format!("user{i}@example.test")),
    }
}

fn conversation() -> Conversation {
    Conversation {
        id: "room-1".into(),
        kind: ConversationKind::Room,
        name: Some("Trading desk — rates".into()),
        participants: (0..3).map(person).collect(),
    }
}

/// A chat message of about 1 KB of text.
fn message(i: usize) -> Message {
    Message {
        id: format!("msg-{i}"),
        conversation_id: "room-1".into(),
        sender: person(i % 3),
        sent_at: 1_767_000_000_000 + i as i64,
        kind: MessageKind::Chat,
        relations: Vec::new(),
        text: Some("Price update for the desk: 10y at 4.12, 2s10s flatter. ".repeat(18)),
        html: None,
        attachments: Vec::new(),
        source_sha256: "0".repeat(64),
        properties: Vec::new(),
    }
}

fn convert(c: &mut Criterion) {
    let converter = EmailConverter::new("bench", "Bench");
    let conv = conversation();
    let msg = message(1);
    let mut g = c.benchmark_group("convert");
    g.throughput(Throughput::Elements(1));
    g.bench_function("email_1kb", |b| {
        b.iter(|| black_box(converter.convert(black_box(&msg), &conv).unwrap()))
    });
    g.finish();
}

fn map(c: &mut Criterion) {
    let overrides: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("ext-{i}"), format!("ext{i}@example.test")))
        .collect();
    let users = UserMap::from_pairs(overrides, vec!["example.test".into()]).unwrap();
    let conv = conversation();
    let sender = person(0);
    let mut g = c.benchmark_group("map");
    g.throughput(Throughput::Elements(1));
    g.bench_function("fan_out_3_participants", |b| {
        b.iter(|| black_box(users.fan_out(black_box(&conv.participants), &sender)))
    });
    g.finish();
}

fn maildir(c: &mut Criterion) {
    let converter = EmailConverter::new("bench", "Bench");
    let conv = conversation();
    let dir = tempfile::tempdir().unwrap();
    let mut sink = MaildirSink::new(dir.path().to_path_buf(), false);
    let mailbox = Mailbox::new("user0@example.test").unwrap();
    let mut next = 0usize;
    let mut g = c.benchmark_group("sink");
    const BATCH: usize = 100;
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("maildir_write_1kb_batch_100", |b| {
        b.iter_batched(
            || {
                next += BATCH;
                (next - BATCH..next)
                    .map(|i| converter.convert(&message(i), &conv).unwrap())
                    .collect::<Vec<_>>()
            },
            |emails| {
                let batch: Vec<Delivery<'_>> = emails
                    .iter()
                    .map(|email| Delivery {
                        mailbox: &mailbox,
                        folder: "INBOX/Bench",
                        email,
                    })
                    .collect();
                for r in sink.deliver(&batch) {
                    r.unwrap();
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn boundary(c: &mut Criterion) {
    let wasm = build_plugin("misbehaving-plugin");
    let dir = tempfile::tempdir().unwrap();
    let manifest_path = package(
        &workspace_root().join("tests/plugins/misbehaving/manifest.toml"),
        &wasm,
        dir.path(),
    )
    .unwrap();
    let manifest = PluginManifest::load(&manifest_path).unwrap();
    let engine = PluginEngine::new(None).unwrap();
    let caps = Capabilities::none(&manifest);
    let mut plugin = loader::load(&engine, &manifest, caps, SecretStore::default(), None).unwrap();
    let mut g = c.benchmark_group("boundary");
    for per_page in [100usize, 500] {
        let config = format!(r#"{{"pages": 4000000000, "per_page": {per_page}, "mode": "none"}}"#);
        let mut session = plugin.open(&config, None).unwrap();
        g.throughput(Throughput::Elements(per_page as u64));
        g.bench_function(format!("page_of_{per_page}"), |b| {
            b.iter(|| black_box(session.next_page().unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, convert, map, maildir, boundary);
criterion_main!(benches);
