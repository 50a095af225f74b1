//! Files in the folders the operator grants (`[grants] files` in the
//! connector file, read-only inside the sandbox at the guest paths it
//! names). A path outside them does not exist for the plugin.

use std::fs::File;

use crate::SourceError;

/// The error for `what` at `path` that cannot be read. A path in no granted
/// folder is a configuration error that names it, says it is outside the
/// granted folders and how to grant one (the sandbox only answers "not
/// found", WASI's `os error 44`, which says neither); a missing file in a
/// granted folder, or one the plugin may not read, is a configuration error
/// naming the file; anything else is the I/O error it is.
pub fn unreadable(what: &str, path: &str, e: std::io::Error) -> SourceError {
    match e.kind() {
        std::io::ErrorKind::NotFound if granted_folder(path).is_none() => {
            SourceError::invalid_config(format!(
                "cannot open {what} {path}: it is not inside a folder granted to the plugin \
                 (inside the sandbox only the granted folders exist); grant the folder that \
                 holds it in the connector file, e.g. `[grants] files = {{ \"/export\" = \
                 \"/folder/on/disk\" }}`, and give the path inside it (here `/export/...`)"
            ))
        }
        std::io::ErrorKind::NotFound => {
            let folder = granted_folder(path).unwrap_or_default();
            SourceError::invalid_config(format!(
                "cannot open {what} {path}: there is no such file in the granted folder {folder}; \
                 check the file name, or the folder on disk that `[grants] files` of the \
                 connector file maps to {folder}"
            ))
        }
        std::io::ErrorKind::PermissionDenied => SourceError::invalid_config(format!(
            "cannot open {what} {path}: {e}; make the file readable by the user the connector \
             runs as"
        )),
        _ => SourceError::from(e),
    }
}

/// The deepest folder above `path` that exists in the sandbox (other than
/// `/`): a granted folder, or one inside it. `None` when `path` is in no
/// granted folder.
fn granted_folder(path: &str) -> Option<String> {
    std::path::Path::new(path)
        .ancestors()
        .skip(1)
        .filter(|dir| dir.parent().is_some() && !dir.as_os_str().is_empty())
        .find(|dir| dir.is_dir())
        .map(|dir| dir.display().to_string())
}

/// Opens `what` at `path`, a guest path inside a granted folder.
pub fn open(what: &str, path: &str) -> Result<File, SourceError> {
    File::open(path).map_err(|e| unreadable(what, path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_in_no_granted_folder_is_named_with_the_grant_to_add() {
        let err = open("the export", "/no/such/export.jsonl").unwrap_err();
        let text = format!("{err:?}");
        assert!(text.contains("/no/such/export.jsonl"), "{text}");
        assert!(text.contains("not inside a folder granted"), "{text}");
        assert!(text.contains("[grants] files"), "{text}");
        assert!(!text.contains("os error"), "{text}");
    }

    #[test]
    fn a_missing_file_in_an_existing_folder_names_that_folder() {
        let dir = std::env::temp_dir();
        let path = dir.join("connector-sdk-no-such-file.jsonl");
        let err = open("the export", path.to_str().unwrap()).unwrap_err();
        let text = format!("{err:?}");
        assert!(
            text.contains("no such file in the granted folder"),
            "{text}"
        );
        assert!(text.contains(&dir.display().to_string()), "{text}");
    }
}
