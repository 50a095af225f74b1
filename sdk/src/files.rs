//! Files in the folders the operator grants (`[grants] files` in the
//! connector file, read-only inside the sandbox at the guest paths it
//! names). A path outside them does not exist for the plugin.

use std::fs::File;

use crate::SourceError;

/// The error for `what` at `path` that cannot be read: a missing or
/// forbidden file is a configuration error that says how to grant its
/// folder; anything else is the I/O error it is.
pub fn unreadable(what: &str, path: &str, e: std::io::Error) -> SourceError {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            SourceError::invalid_config(format!(
                "cannot open {what} {path}: {e}; the plugin sees only the folders the connector \
                 file grants: add `[grants] files = {{ \"/export\" = \"/folder/on/disk\" }}` and \
                 give the path inside it (here `/export/...`)"
            ))
        }
        _ => SourceError::from(e),
    }
}

/// Opens `what` at `path`, a guest path inside a granted folder.
pub fn open(what: &str, path: &str) -> Result<File, SourceError> {
    File::open(path).map_err(|e| unreadable(what, path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_says_how_to_grant_its_folder() {
        let err = open("the export", "/no/such/export.jsonl").unwrap_err();
        let text = format!("{err:?}");
        assert!(text.contains("[grants] files"), "{text}");
        assert!(text.contains("/no/such/export.jsonl"), "{text}");
    }
}
