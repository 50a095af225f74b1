//! Files people change through the console (the accounts file, a user
//! map): each is replaced whole, through a temporary file beside it.

use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same folder,
/// synced before it takes the file's place, so a crash leaves the old file
/// or the new one, never half of one. The new file is readable by its
/// owner only (mode 0600).
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
