//! A Slack export ZIP, read natively as the plugin reads it: opened,
//! paged through to the end, and every file stored inside read in chunks.
//!
//! An input starting with `PK` is the ZIP itself (truncated archives, bad
//! central directories, sizes that lie, compression bombs). Any other input
//! describes entries (names such as `../x` or `/abs`, symlinks, folders,
//! stored or deflated contents) that are zipped first, so the reader's own
//! logic sees well-formed archives too.
#![no_main]

use std::io::{Read, Write};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use slack_export::config::Config;
use slack_export::reader::{Checkpoint, Reader};
use zip::write::SimpleFileOptions;

/// Bytes read from one attachment at most: a real export's files are read
/// to their end, a bomb's are not.
const ATTACHMENT_READ_CAP: u64 = 1 << 20;

#[derive(Arbitrary, Debug)]
enum Kind {
    Stored,
    Deflated,
    Folder,
    Symlink,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    name: Name,
    kind: Kind,
    contents: Vec<u8>,
}

/// Names near the ones an export holds, so entries land where the reader
/// looks.
#[derive(Arbitrary, Debug)]
enum Name {
    Users,
    Channels,
    Groups,
    Mpims,
    Dms,
    Day(u8, u8),
    Upload(u8, String),
    Other(String),
}

impl Name {
    fn path(&self) -> String {
        match self {
            Name::Users => "users.json".into(),
            Name::Channels => "channels.json".into(),
            Name::Groups => "groups.json".into(),
            Name::Mpims => "mpims.json".into(),
            Name::Dms => "dms.json".into(),
            Name::Day(folder, day) => {
                format!("c{}/2024-01-{:02}.json", folder % 4, day % 31 + 1)
            }
            Name::Upload(id, name) => format!("__uploads/F{}/{name}", id % 4),
            Name::Other(name) => name.clone(),
        }
    }
}

fn zipped(entries: &[Entry]) -> Option<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for entry in entries {
        let path = entry.name.path();
        let options = SimpleFileOptions::default().compression_method(match entry.kind {
            Kind::Deflated => zip::CompressionMethod::Deflated,
            _ => zip::CompressionMethod::Stored,
        });
        match entry.kind {
            Kind::Folder => zip.add_directory(path, options).ok()?,
            Kind::Symlink => zip
                .add_symlink(path, String::from_utf8_lossy(&entry.contents), options)
                .ok()?,
            Kind::Stored | Kind::Deflated => {
                zip.start_file(path, options).ok()?;
                zip.write_all(&entry.contents).ok()?;
            }
        }
    }
    Some(zip.finish().ok()?.into_inner())
}

fuzz_target!(|data: &[u8]| {
    let archive = if data.starts_with(b"PK") {
        data.to_vec()
    } else {
        let Ok(entries) = Vec::<Entry>::arbitrary_take_rest(Unstructured::new(data)) else {
            return;
        };
        let Some(bytes) = zipped(&entries) else {
            return;
        };
        bytes
    };
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("slack.zip");
    std::fs::write(&path, &archive).expect("the input is written");
    let config = Config::parse(&format!(
        r#"{{"path": {:?}, "page_size": 7, "download_files": false}}"#,
        path.display().to_string()
    ))
    .expect("a valid configuration");
    let Ok(mut reader) = Reader::open(config, None::<Checkpoint>) else {
        return;
    };
    for _ in 0..10_000 {
        let Ok(page) = reader.next_page() else {
            break;
        };
        for message in &page.messages {
            for attachment in &message.attachments {
                let Some(file) = reader.deferred_path(&message.id, &attachment.id) else {
                    continue;
                };
                let file = file.to_string();
                if let Ok(r) = reader.archive_mut().open_reader(&file) {
                    let _ = std::io::copy(&mut r.take(ATTACHMENT_READ_CAP), &mut std::io::sink());
                }
            }
        }
        if page.complete {
            break;
        }
    }
});
