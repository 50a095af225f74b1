//! The audit trail of admin actions: who did what, from where, to which
//! connector, and when. It is append-only and hash-chained: each record's
//! SHA-256 covers the SHA-256 of the record before it, so a record changed,
//! removed or inserted afterwards breaks the chain at that record, and
//! [`verify_chain`] names it. One function ([`record_sha256`]) computes
//! the hashes for every backend; the backends serialize appends (across
//! processes and machines) so that the chain never forks.

use connector_model::digest::sha256_hex;

use crate::error::StateError;

/// The `prev_sha256` of the first record: 64 zeros.
pub const GENESIS_SHA256: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an admin did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// Signed in to the console.
    SignIn,
    /// Tried to sign in and was refused (a wrong password, an unknown user).
    SignInFailed,
    /// Signed out of the console.
    SignOut,
    /// Added a connector.
    ConnectorCreated,
    /// Changed a connector's settings (the detail says what changed).
    ConnectorChanged,
    /// Removed a connector.
    ConnectorDeleted,
    /// Asked for a run at once ("Run now", `connector run-now`), whatever
    /// the schedule says.
    RunStarted,
    /// Paused a connector: no run starts until it is resumed.
    Paused,
    /// Resumed a paused connector.
    Resumed,
    /// Redelivered a connector's quarantine.
    Redelivered,
    /// Changed a connector's mapping of participants to mailboxes.
    MappingChanged,
    /// Downloaded a run's admin log.
    LogDownloaded,
    /// Exported the audit trail itself.
    AuditExported,
}

impl AuditAction {
    /// Every action, in the order declared.
    pub const ALL: [AuditAction; 13] = [
        AuditAction::SignIn,
        AuditAction::SignInFailed,
        AuditAction::SignOut,
        AuditAction::ConnectorCreated,
        AuditAction::ConnectorChanged,
        AuditAction::ConnectorDeleted,
        AuditAction::RunStarted,
        AuditAction::Paused,
        AuditAction::Resumed,
        AuditAction::Redelivered,
        AuditAction::MappingChanged,
        AuditAction::LogDownloaded,
        AuditAction::AuditExported,
    ];

    /// The stored (and hashed, and exported) name, in kebab case:
    /// `sign-in`, `run-started`, …
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::SignIn => "sign-in",
            AuditAction::SignInFailed => "sign-in-failed",
            AuditAction::SignOut => "sign-out",
            AuditAction::ConnectorCreated => "connector-created",
            AuditAction::ConnectorChanged => "connector-changed",
            AuditAction::ConnectorDeleted => "connector-deleted",
            AuditAction::RunStarted => "run-started",
            AuditAction::Paused => "paused",
            AuditAction::Resumed => "resumed",
            AuditAction::Redelivered => "redelivered",
            AuditAction::MappingChanged => "mapping-changed",
            AuditAction::LogDownloaded => "log-downloaded",
            AuditAction::AuditExported => "audit-exported",
        }
    }

    /// The action stored as `s` (see [`AuditAction::as_str`]).
    pub fn parse(s: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One admin action, as the caller reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// When, in milliseconds since the Unix epoch (the caller's clock).
    pub at_ms: i64,
    /// Who: the console user's name or e-mail address, or `cli:<OS user>`
    /// for the command line.
    pub actor: String,
    /// From where: the client's IP address, or `local` for the command line.
    pub source: String,
    /// What.
    pub action: AuditAction,
    /// The connector acted on, or empty when none (a sign-in).
    pub target: String,
    /// Anything more: free text or JSON (a change's diff, a reason).
    pub detail: String,
}

/// An entry as the trail stores it: numbered and chained.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Its place in the trail: 1 for the first, then one more each.
    pub seq: u64,
    /// What happened.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// The SHA-256 (hex) of the record before it ([`GENESIS_SHA256`] for
    /// the first).
    pub prev_sha256: String,
    /// This record's SHA-256 (hex), by [`record_sha256`].
    pub sha256: String,
}

impl AuditRecord {
    /// The record that follows a trail whose last record is `head` (`None`
    /// for an empty trail): its number, link and hash.
    pub fn chained(head: Option<&AuditHead>, entry: AuditEntry) -> AuditRecord {
        let (seq, prev_sha256) = match head {
            Some(h) => (h.seq + 1, h.sha256.clone()),
            None => (1, GENESIS_SHA256.to_string()),
        };
        let sha256 = record_sha256(&prev_sha256, seq, &entry);
        AuditRecord {
            seq,
            entry,
            prev_sha256,
            sha256,
        }
    }
}

/// Where the trail ends: its last record's number and SHA-256, which the
/// store keeps apart from the records (so that a removed last record is
/// found too).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditHead {
    /// The last record's number (how many records were appended).
    pub seq: u64,
    /// The last record's SHA-256.
    pub sha256: String,
}

/// Which records a listing returns, newest first. Unset filters match all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records about this connector (`""`: those about none).
    pub target: Option<String>,
    /// Only records of this actor.
    pub actor: Option<String>,
    /// Only records of this action.
    pub action: Option<AuditAction>,
    /// Only records before this number (the next page of a listing: the
    /// smallest `seq` of the last page).
    pub before_seq: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

/// The audit trail's table.
pub trait AuditTrail {
    /// Appends `entry` as the next record, numbered and chained to the last
    /// one in one transaction that holds the trail's head locked, so that
    /// appends by several processes (a fleet's workers) form one chain.
    fn append_audit(&mut self, entry: &AuditEntry) -> Result<AuditRecord, StateError>;

    /// Up to `limit` records numbered after `after_seq`, oldest first (all
    /// of them, page by page, from `after_seq` 0).
    fn audit_records(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditRecord>, StateError>;

    /// The records `query` selects, newest first.
    fn search_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StateError>;

    /// Where the trail ends; `None` before the first append.
    fn audit_head(&self) -> Result<Option<AuditHead>, StateError>;
}

/// Appends `bytes` as a length-prefixed field.
fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The SHA-256 (hex) of a record: over its predecessor's SHA-256, its
/// number and every field of its entry, each length-prefixed (a 64-bit
/// little-endian length, then the bytes; numbers as 8 little-endian
/// bytes), after a version tag, so that no two records encode alike.
pub fn record_sha256(prev_sha256: &str, seq: u64, entry: &AuditEntry) -> String {
    let mut out = Vec::with_capacity(256 + entry.detail.len());
    field(&mut out, b"connector-audit-v1");
    field(&mut out, prev_sha256.as_bytes());
    field(&mut out, &seq.to_le_bytes());
    field(&mut out, &entry.at_ms.to_le_bytes());
    field(&mut out, entry.actor.as_bytes());
    field(&mut out, entry.source.as_bytes());
    field(&mut out, entry.action.as_str().as_bytes());
    field(&mut out, entry.target.as_bytes());
    field(&mut out, entry.detail.as_bytes());
    sha256_hex(&out)
}

/// The first record at which the chain is broken, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The record's fields no longer give its stored SHA-256: it was
    /// changed after it was appended.
    #[error(
        "audit record {seq} was changed after it was written: its content hashes to {computed_sha256}, not to its stored SHA-256 {stored_sha256}"
    )]
    ContentChanged {
        /// The record.
        seq: u64,
        /// The SHA-256 it was stored with.
        stored_sha256: String,
        /// The SHA-256 of what it holds now.
        computed_sha256: String,
    },
    /// The record does not name its predecessor's SHA-256: a record
    /// before it was replaced, or it was put in from elsewhere.
    #[error(
        "audit record {seq} does not follow the record before it: it links to {prev_sha256}, but the record before it has SHA-256 {expected_prev}"
    )]
    LinkBroken {
        /// The record.
        seq: u64,
        /// The predecessor's SHA-256 it names.
        prev_sha256: String,
        /// The SHA-256 the predecessor has.
        expected_prev: String,
    },
    /// The record numbered `seq` is not in the trail: it was removed (or
    /// the trail ends before the head says it does).
    #[error("audit record {seq} is missing: {found}")]
    Missing {
        /// The missing record's number.
        seq: u64,
        /// What was found in its place.
        found: String,
    },
    /// The last record is not the one the trail's head recorded when it
    /// was appended: it was replaced, hash and all.
    #[error(
        "audit record {seq}, the last, was replaced after it was written: its SHA-256 is {record_sha256}, but the trail's head recorded {head_sha256}"
    )]
    LastReplaced {
        /// The last record.
        seq: u64,
        /// Its SHA-256 now.
        record_sha256: String,
        /// The SHA-256 the head recorded.
        head_sha256: String,
    },
    /// Records follow the one the trail's head names as the last: they
    /// were put in around the store, not appended through it.
    #[error(
        "audit records {seq} to {last} were not appended through the connector: the trail's head names record {} as the last", seq - 1
    )]
    Unrecorded {
        /// The first record put in around the store.
        seq: u64,
        /// The last record stored.
        last: u64,
    },
}

impl ChainBreak {
    /// The number of the first broken (or missing) record.
    pub fn seq(&self) -> u64 {
        match self {
            ChainBreak::ContentChanged { seq, .. }
            | ChainBreak::LinkBroken { seq, .. }
            | ChainBreak::Missing { seq, .. }
            | ChainBreak::LastReplaced { seq, .. }
            | ChainBreak::Unrecorded { seq, .. } => *seq,
        }
    }
}

/// Checks a trail record by record, in order, from its first: for records
/// read a page at a time.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_seq: u64,
    prev_sha256: String,
}

impl Default for ChainVerifier {
    fn default() -> ChainVerifier {
        ChainVerifier {
            next_seq: 1,
            prev_sha256: GENESIS_SHA256.to_string(),
        }
    }
}

impl ChainVerifier {
    /// Checks the next record: its number follows the last one's, its
    /// content gives its SHA-256, and it links to the last one.
    pub fn check(&mut self, record: &AuditRecord) -> Result<(), ChainBreak> {
        if record.seq != self.next_seq {
            return Err(ChainBreak::Missing {
                seq: self.next_seq,
                found: format!("the next record stored is {}", record.seq),
            });
        }
        let computed = record_sha256(&record.prev_sha256, record.seq, &record.entry);
        if computed != record.sha256 {
            return Err(ChainBreak::ContentChanged {
                seq: record.seq,
                stored_sha256: record.sha256.clone(),
                computed_sha256: computed,
            });
        }
        if record.prev_sha256 != self.prev_sha256 {
            return Err(ChainBreak::LinkBroken {
                seq: record.seq,
                prev_sha256: record.prev_sha256.clone(),
                expected_prev: self.prev_sha256.clone(),
            });
        }
        self.next_seq += 1;
        self.prev_sha256.clone_from(&record.sha256);
        Ok(())
    }

    /// How many records were checked.
    pub fn checked(&self) -> u64 {
        self.next_seq - 1
    }

    /// Checks that the trail ends where `head` (the store's record of its
    /// last append) says; returns how many records were checked.
    pub fn finish(self, head: Option<&AuditHead>) -> Result<u64, ChainBreak> {
        let checked = self.checked();
        let appended = head.map_or(0, |h| h.seq);
        if appended > checked {
            return Err(ChainBreak::Missing {
                seq: checked + 1,
                found: format!(
                    "the trail ends at record {checked}, but {appended} record(s) were appended"
                ),
            });
        }
        if appended < checked {
            return Err(ChainBreak::Unrecorded {
                seq: appended + 1,
                last: checked,
            });
        }
        match head {
            Some(h) if h.sha256 != self.prev_sha256 => Err(ChainBreak::LastReplaced {
                seq: checked,
                record_sha256: self.prev_sha256,
                head_sha256: h.sha256.clone(),
            }),
            _ => Ok(checked),
        }
    }
}

/// Checks a whole trail, `records` from the first in order: returns the
/// first record at which it is broken.
pub fn verify_chain(records: &[AuditRecord]) -> Result<(), ChainBreak> {
    let mut verifier = ChainVerifier::default();
    records.iter().try_for_each(|r| verifier.check(r))
}

/// An action read back from the store.
pub fn parse_action(text: &str) -> Result<AuditAction, StateError> {
    AuditAction::parse(text).ok_or_else(|| StateError::Corrupt {
        what: "audit action",
        message: format!("`{text}` (written by a newer release?)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(detail: &str) -> AuditEntry {
        AuditEntry {
            at_ms: 1_000,
            actor: "alice@example.com".into(),
            source: "10.0.0.1".into(),
            action: AuditAction::Paused,
            target: "chat".into(),
            detail: detail.into(),
        }
    }

    fn chain(n: usize) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let head = out.last().map(|r| AuditHead {
                seq: r.seq,
                sha256: r.sha256.clone(),
            });
            out.push(AuditRecord::chained(head.as_ref(), entry(&format!("d{i}"))));
        }
        out
    }

    #[test]
    fn every_action_parses_back_from_its_name() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("dance"), None);
    }

    #[test]
    fn fields_cannot_shift_into_each_other() {
        let mut a = entry("");
        a.actor = "ab".into();
        a.source = "c".into();
        let mut b = entry("");
        b.actor = "a".into();
        b.source = "bc".into();
        assert_ne!(
            record_sha256(GENESIS_SHA256, 1, &a),
            record_sha256(GENESIS_SHA256, 1, &b)
        );
    }

    #[test]
    fn a_chain_built_by_appending_verifies_and_starts_from_zeros() {
        let records = chain(3);
        assert_eq!(records[0].prev_sha256, GENESIS_SHA256);
        assert_eq!(records[2].seq, 3);
        assert_eq!(verify_chain(&records), Ok(()));
    }

    #[test]
    fn a_changed_field_is_named_by_its_record() {
        let mut records = chain(3);
        records[1].entry.detail = "edited".into();
        let err = verify_chain(&records).unwrap_err();
        assert!(
            matches!(err, ChainBreak::ContentChanged { seq: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_record_rehashed_after_a_change_breaks_the_next_link() {
        let mut records = chain(3);
        records[1].entry.actor = "mallory".into();
        records[1].sha256 = record_sha256(&records[1].prev_sha256, 2, &records[1].entry);
        let err = verify_chain(&records).unwrap_err();
        assert!(
            matches!(err, ChainBreak::LinkBroken { seq: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_removed_record_is_missing_by_its_number() {
        let mut records = chain(4);
        records.remove(1);
        let err = verify_chain(&records).unwrap_err();
        assert_eq!(err.seq(), 2);
        assert!(matches!(err, ChainBreak::Missing { .. }), "{err}");
    }

    fn head_of(r: &AuditRecord) -> AuditHead {
        AuditHead {
            seq: r.seq,
            sha256: r.sha256.clone(),
        }
    }

    fn checked(records: &[AuditRecord]) -> ChainVerifier {
        let mut verifier = ChainVerifier::default();
        for r in records {
            verifier.check(r).unwrap();
        }
        verifier
    }

    #[test]
    fn a_replaced_last_record_is_found_by_the_head() {
        let mut records = chain(3);
        let head = head_of(&records[2]);
        records[2].entry.detail = "other".into();
        records[2].sha256 = record_sha256(&records[2].prev_sha256, 3, &records[2].entry);
        let err = checked(&records).finish(Some(&head)).unwrap_err();
        assert!(
            matches!(err, ChainBreak::LastReplaced { seq: 3, .. }),
            "{err}"
        );
        assert_eq!(checked(&records).finish(Some(&head_of(&records[2]))), Ok(3));
    }

    #[test]
    fn records_past_the_head_were_not_appended_through_the_store() {
        let records = chain(3);
        let err = checked(&records)
            .finish(Some(&head_of(&records[1])))
            .unwrap_err();
        assert!(
            matches!(err, ChainBreak::Unrecorded { seq: 3, last: 3 }),
            "{err}"
        );
        let err = checked(&records).finish(None).unwrap_err();
        assert_eq!(err.seq(), 1);
    }

    #[test]
    fn a_removed_last_record_is_found_by_the_head() {
        let mut records = chain(3);
        let head = AuditHead {
            seq: 3,
            sha256: records[2].sha256.clone(),
        };
        records.pop();
        let mut verifier = ChainVerifier::default();
        for r in &records {
            verifier.check(r).unwrap();
        }
        let err = verifier.finish(Some(&head)).unwrap_err();
        assert!(matches!(err, ChainBreak::Missing { seq: 3, .. }), "{err}");
    }
}
