//! How the backends store the values they keep as JSON text, and the rules
//! they share when writing: one place for both backends, so that they read
//! and write the same forms and fail with the same errors.

use std::collections::BTreeMap;

use connector_model::limits::{self, KvLimit};
use connector_model::{Conversation, Person};

use crate::error::StateError;
use crate::fleet::Fingerprint;
use crate::records::{QuarantineEntry, RunCounts};

/// `value` as JSON; a value that cannot be written is reported as
/// [`StateError::Corrupt`] about `what`.
fn to_json<T: serde::Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(|e| StateError::Corrupt {
        what,
        message: e.to_string(),
    })
}

/// `text` read as JSON; unreadable text is reported as
/// [`StateError::Corrupt`] about `what`.
fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> Result<T, StateError> {
    serde_json::from_str(text).map_err(|e| StateError::Corrupt {
        what,
        message: e.to_string(),
    })
}

/// The value stored as `text`, read with `parse`; `what` names it when the
/// text is not one it knows ([`StateError::Corrupt`]).
pub fn parse_stored<T>(
    what: &'static str,
    text: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StateError> {
    parse(text).ok_or_else(|| StateError::Corrupt {
        what,
        message: format!("`{text}`"),
    })
}

/// A fingerprint of a connector's files (a lease's, or a worker's for one
/// connector) as stored.
pub fn fingerprint_json(fingerprint: &Fingerprint) -> Result<String, StateError> {
    to_json("lease fingerprint", fingerprint)
}

/// A stored fingerprint, read back.
pub fn parse_fingerprint(text: &str) -> Result<Fingerprint, StateError> {
    from_json("lease fingerprint", text)
}

/// A worker's connectors with their fingerprints, as stored.
pub fn worker_connectors_json(
    connectors: &BTreeMap<String, Fingerprint>,
) -> Result<String, StateError> {
    to_json("worker's connector list", connectors)
}

/// A worker's stored connectors, read back.
pub fn parse_worker_connectors(text: &str) -> Result<BTreeMap<String, Fingerprint>, StateError> {
    from_json("worker's connector list", text)
}

/// A list of mailboxes or participants, as stored (a JSON array).
pub fn json_list(list: &[String]) -> Result<String, StateError> {
    to_json("list", list)
}

/// A list of mailboxes or participants stored by [`json_list`].
pub fn parse_list(text: &str) -> Result<Vec<String>, StateError> {
    from_json("list of mailboxes or participants", text)
}

/// The unmapped participants of each quarantined message, as stored (JSON).
pub fn unmapped_lists(entries: &[QuarantineEntry]) -> Result<Vec<String>, StateError> {
    entries
        .iter()
        .map(|q| to_json("unmapped participant list", &q.unmapped))
        .collect()
}

/// The unmapped participants of a quarantined message, stored by
/// [`unmapped_lists`].
pub fn parse_unmapped(text: &str) -> Result<Vec<Person>, StateError> {
    from_json("unmapped participant list", text)
}

/// A conversation's description, as stored (JSON).
pub fn conversation_json(conversation: &Conversation) -> Result<String, StateError> {
    to_json("conversation description", conversation)
}

/// A conversation's description stored by [`conversation_json`].
pub fn parse_conversation(text: &str) -> Result<Conversation, StateError> {
    from_json("conversation description", text)
}

/// Checks a plugin key/value write of `connector` against the size limits
/// and the quota ([`connector_model::limits::check_kv_write`]), `others`
/// being the bytes of the connector's other keys and values.
pub fn check_kv_write(
    connector: &str,
    key: &str,
    value: &[u8],
    others: u64,
) -> Result<(), StateError> {
    limits::check_kv_write(key, value, others).map_err(|limit| match limit {
        KvLimit::TooLarge { what, size, limit } => StateError::TooLarge { what, size, limit },
        KvLimit::Quota { needed, limit } => StateError::QuotaExceeded {
            connector: connector.to_string(),
            needed,
            limit,
        },
    })
}

/// The refusal of a page of `connector` committed with a `fence` that is
/// no longer the connector's lease token.
pub fn fenced(connector: &str, fence: u64) -> StateError {
    StateError::Fenced {
        connector: connector.to_string(),
        token: fence,
    }
}

/// A count as a database column stores it (a signed 64-bit integer; a
/// count too large for one is stored as the largest).
pub fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count read from a database column (a negative one reads as 0).
pub fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The `runs` table's count columns, in the order of [`RunCounts::values`].
pub const RUN_COUNT_COLUMNS: [&str; 8] = [
    "pages",
    "items_from_source",
    "items_for_import",
    "imported",
    "skipped_duplicates",
    "failed",
    "quarantined",
    "partially_imported",
];

impl RunCounts {
    /// The counts in the `runs` table's column order: pages, items from
    /// source, items for import, imported, skipped duplicates, failed,
    /// quarantined, partially imported.
    pub fn values(&self) -> [u64; 8] {
        [
            self.pages,
            self.items_from_source,
            self.items_for_import,
            self.imported,
            self.skipped_duplicates,
            self.failed,
            self.quarantined,
            self.partially_imported,
        ]
    }

    /// The counts from values in the order of [`RunCounts::values`].
    pub fn from_values(c: [u64; 8]) -> RunCounts {
        RunCounts {
            pages: c[0],
            items_from_source: c[1],
            items_for_import: c[2],
            imported: c[3],
            skipped_duplicates: c[4],
            failed: c[5],
            quarantined: c[6],
            partially_imported: c[7],
        }
    }

    /// The counts as the `runs` table's columns store them, in the order
    /// of [`RunCounts::values`].
    pub fn columns(&self) -> [i64; 8] {
        self.values().map(to_i64)
    }

    /// The counts read back from the columns [`RunCounts::columns`] gives,
    /// in the same order.
    pub fn from_columns(columns: [i64; 8]) -> RunCounts {
        RunCounts::from_values(columns.map(to_u64))
    }
}
