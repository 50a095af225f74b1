//! The export as a set of named files: a ZIP archive or an unzipped folder.
//! Names use `/` and are relative to the export's root (the folder holding
//! `users.json` and `channels.json`, even when the ZIP wraps everything in a
//! top-level folder).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use connector_sdk::SourceError;

/// Largest JSON file read whole (a day of one channel, `users.json`).
pub const MAX_JSON_BYTES: u64 = 256 << 20;

/// Where a file of the export is.
#[derive(Debug, Clone)]
enum Entry {
    /// Index in the ZIP's central directory.
    Zip(usize),
    /// Path on the (guest) file system.
    File(PathBuf),
}

/// An opened export.
pub struct Archive {
    path: String,
    zip: Option<zip::ZipArchive<File>>,
    entries: BTreeMap<String, (Entry, u64)>,
}

fn open_error(path: &str, e: std::io::Error) -> SourceError {
    connector_sdk::files::unreadable("the Slack export", path, e)
}

/// Whether the export at `path` can be found (without reading it).
pub fn exists(path: &str) -> Result<(), SourceError> {
    std::fs::metadata(path)
        .map(drop)
        .map_err(|e| open_error(path, e))
}

impl Archive {
    /// Opens a `.zip` file or a folder.
    pub fn open(path: &str) -> Result<Archive, SourceError> {
        let meta = std::fs::metadata(path).map_err(|e| open_error(path, e))?;
        let mut raw: Vec<(String, Entry, u64)> = Vec::new();
        let zip = if meta.is_dir() {
            walk(Path::new(path), "", &mut raw)?;
            None
        } else {
            let file = File::open(path).map_err(|e| open_error(path, e))?;
            let mut zip = zip::ZipArchive::new(file).map_err(|e| {
                SourceError::invalid_config(format!(
                    "{path} is not a readable ZIP archive: {e}; give the Slack export ZIP or the \
                     folder it unzips to"
                ))
            })?;
            for i in 0..zip.len() {
                let f = zip.by_index_raw(i).map_err(|e| {
                    SourceError::permanent(format!("{path}: ZIP entry {i} is unreadable: {e}"))
                })?;
                if f.is_file() {
                    let name = f.name().map_err(|e| {
                        SourceError::permanent(format!("{path}: ZIP entry {i} has a bad name: {e}"))
                    })?;
                    raw.push((name.replace('\\', "/"), Entry::Zip(i), f.size()));
                }
            }
            Some(zip)
        };
        // The root is the folder of the shallowest users.json/channels.json.
        let root = raw
            .iter()
            .map(|(n, _, _)| n.as_str())
            .filter(|n| {
                n.rsplit('/')
                    .next()
                    .is_some_and(|f| f == "users.json" || f == "channels.json")
            })
            .min_by_key(|n| n.matches('/').count())
            .map(|n| n.rsplit_once('/').map_or("", |(dir, _)| dir).to_string())
            .ok_or_else(|| {
                SourceError::invalid_config(format!(
                    "{path} is not a Slack export: it holds no users.json or channels.json"
                ))
            })?;
        let prefix = if root.is_empty() {
            String::new()
        } else {
            format!("{root}/")
        };
        let entries = raw
            .into_iter()
            .filter_map(|(name, entry, size)| {
                name.strip_prefix(&prefix)
                    .map(|rel| (rel.to_string(), (entry, size)))
            })
            .collect();
        Ok(Archive {
            path: path.to_string(),
            zip,
            entries,
        })
    }

    /// Whether the export holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The size of `name`, if the export holds it.
    pub fn size(&self, name: &str) -> Option<u64> {
        self.entries.get(name).map(|(_, size)| *size)
    }

    /// Every name in the export, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The names directly inside folder `dir` (no sub-folders), sorted.
    pub fn files_in(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        self.entries
            .range(prefix.clone()..)
            .take_while(|(n, _)| n.starts_with(&prefix))
            .filter(|(n, _)| !n[prefix.len()..].contains('/'))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Reads `name` whole (at most [`MAX_JSON_BYTES`]).
    pub fn read(&mut self, name: &str) -> Result<Vec<u8>, SourceError> {
        let (entry, size) = self
            .entries
            .get(name)
            .cloned()
            .ok_or_else(|| SourceError::permanent(format!("the export has no {name}")))?;
        if size > MAX_JSON_BYTES {
            return Err(SourceError::permanent(format!(
                "{name} in the export is {size} bytes, more than the {MAX_JSON_BYTES} read at once"
            )));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        match entry {
            Entry::File(p) => {
                File::open(&p)
                    .and_then(|mut f| f.read_to_end(&mut bytes))
                    .map_err(SourceError::from)?;
            }
            Entry::Zip(i) => {
                let zip = self.zip.as_mut().expect("zip entries come from a zip");
                let mut f = zip.by_index(i).map_err(|e| {
                    SourceError::permanent(format!("{}: cannot read {name}: {e}", self.path))
                })?;
                f.read_to_end(&mut bytes).map_err(|e| {
                    SourceError::permanent(format!("{}: cannot read {name}: {e}", self.path))
                })?;
            }
        }
        Ok(bytes)
    }

    /// A reader over `name` that owns its file handle, for streaming a large
    /// file out in chunks.
    pub fn open_reader(&mut self, name: &str) -> Result<Box<dyn Read>, SourceError> {
        let (entry, _) = self
            .entries
            .get(name)
            .cloned()
            .ok_or_else(|| SourceError::permanent(format!("the export has no {name}")))?;
        match entry {
            Entry::File(p) => Ok(Box::new(File::open(&p)?)),
            Entry::Zip(i) => {
                let zip = self.zip.as_mut().expect("zip entries come from a zip");
                let f = zip.by_index_raw(i).map_err(|e| {
                    SourceError::permanent(format!("{}: cannot read {name}: {e}", self.path))
                })?;
                if f.encrypted() {
                    return Err(SourceError::permanent(format!(
                        "{}: {name} is encrypted",
                        self.path
                    )));
                }
                let start = f.data_start().ok_or_else(|| {
                    SourceError::permanent(format!("{}: {name} has no data offset", self.path))
                })?;
                let (method, compressed) = (f.compression(), f.compressed_size());
                drop(f);
                let mut file = File::open(&self.path)?;
                file.seek(SeekFrom::Start(start))?;
                let raw = file.take(compressed);
                match method {
                    zip::CompressionMethod::Stored => Ok(Box::new(raw)),
                    zip::CompressionMethod::Deflated => {
                        Ok(Box::new(flate2::read::DeflateDecoder::new(raw)))
                    }
                    other => Err(SourceError::permanent(format!(
                        "{}: {name} uses ZIP compression {other:?}; only stored and deflated \
                         entries are supported (re-zip the export)",
                        self.path
                    ))),
                }
            }
        }
    }
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, Entry, u64)>) -> Result<(), SourceError> {
    let entries = std::fs::read_dir(dir).map_err(|e| open_error(&dir.display().to_string(), e))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel_name = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), &rel_name, out)?;
        } else if meta.is_file() {
            out.push((rel_name, Entry::File(entry.path()), meta.len()));
        }
    }
    Ok(())
}
