//! Spool files: where an email too big for memory is written.

use std::fs::File;
use std::io;
use std::path::Path;

/// Write buffer of a spool file.
pub(crate) const SPOOL_BUFFER: usize = 256 * 1024;

/// A new, empty spool file for an email in `dir`, removed when its path is
/// dropped.
pub(crate) fn new_spool_file(dir: &Path) -> io::Result<(File, tempfile::TempPath)> {
    let file = tempfile::Builder::new()
        .prefix("email-")
        .suffix(".eml")
        .tempfile_in(dir)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot create an email spool file in {}: {e}",
                    dir.display()
                ),
            )
        })?;
    Ok(file.into_parts())
}
