//! Throughput of each host stage, per message: the plugin boundary (a page
//! of messages across WIT), the Symphony plugin's PresentationML conversion
//! (natively), email building, mapping and the Maildir write.
//!
//! Run with `cargo bench -p connector-e2e --bench stages` (about two
//! minutes on 2 cores once built; the defaults below keep each benchmark
//! short, `-- --measurement-time 10` for steadier figures).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use connector_e2e::{build_plugin, workspace_root};
use connector_email::EmailConverter;
use connector_host::map::UserMap;
use connector_model::Mailbox;
use connector_model::{Conversation, ConversationKind, Message, MessageKind, Person};
use connector_runtime::PluginManifest;
use connector_runtime::manifest::package;
use connector_runtime::wasm::PluginEngine;
use connector_runtime::{Capabilities, SecretStore};
use connector_runtime::{PluginContext, loader};
use connector_sink::{Delivery, Sink};
use connector_sink_maildir::MaildirSink;
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

/// About 1 KB of PresentationML with the usual entities: a mention, a
/// hashtag, a cashtag, an emoji, a link, bold text and a list.
const PRESENTATION_ML: &str = r#"<div data-format="PresentationML" data-version="2.0" class="wysiwyg"><p>Morning <span class="entity" data-entity-id="0">@Zoë Trader</span>, the <b>10y</b> is at 4.12 and 2s10s flattened again; see <a href="https://example.test/research/rates?id=42">the note</a> &amp; the desk's view below <span class="entity" data-entity-id="1">#rates</span> <span class="entity" data-entity-id="2">$TLT</span> <span class="entity" data-entity-id="3">👍</span></p><ul><li>Bund auction covered 1.9x, tails small</li><li>Gilts under pressure after CPI, <i>watch</i> the long end</li><li>UST supply on Thursday: 7y, sizes unchanged</li></ul><p>Positions: flat duration, long 5y vs short 30y. Anyone who wants to discuss the curve trade, ping me before noon; otherwise we keep the stops where they are and revisit after the data. Thanks all, and please keep the chat on topic for compliance.</p></div>"#;

const ENTITIES: &str = r#"{"0":{"id":[{"type":"com.symphony.user.userId","value":"71811853189212"}],"type":"com.symphony.user.mention"},"1":{"id":[{"type":"org.symphony.oss.taxonomy.hashtag","value":"rates"}],"type":"org.symphony.oss.taxonomy","version":"1.0"},"2":{"id":[{"type":"org.symphony.oss.fin.security.id.ticker","value":"TLT"}],"type":"org.symphony.oss.taxonomy","version":"1.0"},"3":{"type":"com.symphony.emoji","version":"1.0","data":{"unicode":"👍","annotation":"thumbsup"}}}"#;

fn presentation(c: &mut Criterion) {
    use symphony::presentation::{MentionedUser, parse_entities, render};
    let users = |id: i64| {
        (id == 71_811_853_189_212).then(|| MentionedUser {
            name: "Zoë Trader".into(),
            email: Some("zoe@example.test".into()),
        })
    };
    let mut g = c.benchmark_group("presentationml");
    g.throughput(Throughput::Elements(1));
    g.bench_function("render_1kb", |b| {
        b.iter(|| {
            let entities: HashMap<_, _> = parse_entities(Some(black_box(ENTITIES)));
            black_box(render(black_box(PRESENTATION_ML), &entities, &users))
        })
    });
    g.finish();
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
    let context = PluginContext::new(caps, SecretStore::default());
    let mut plugin = loader::load(&engine, &manifest, context).unwrap();
    let mut g = c.benchmark_group("boundary");
    for per_page in [100usize, 500] {
        let config = format!(r#"{{"pages": 4000000000, "per_page": {per_page}, "mode": "none"}}"#);
        let mut session = plugin.open(&config, None, None).unwrap();
        g.throughput(Throughput::Elements(per_page as u64));
        g.bench_function(format!("page_of_{per_page}"), |b| {
            b.iter(|| black_box(session.next_page().unwrap()))
        });
    }
    g.finish();
}

/// Short runs: the whole bench stays within a few minutes on 2 cores.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = presentation, convert, map, maildir, boundary
}
criterion_main!(benches);
