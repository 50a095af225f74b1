//! Maps participants to the mailboxes that archive their messages.
//!
//! A person's mailbox comes from the operator's override CSV first (by the
//! person's source id), otherwise from the email address the source knows,
//! optionally only for the organisation's own domains. People without a
//! mailbox are reported as unmapped, so their messages can be quarantined
//! instead of dropped; those the plugin marks as belonging to other
//! organisations are, by default ([`ExternalPolicy::Name`]), named and not
//! quarantined.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use connector_model::is_plain_address;
use connector_model::{Mailbox, Message, Person};

/// What every mapping error adds about the CSV's expected shape.
const CSV_HINT: &str =
    "the file needs a header row `ExternalUserId,Mailbox` and one `id,address` pair per line";

/// Why the mapping could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The override file could not be read.
    #[error("cannot read the mapping file {}: {source}; check the `overrides` path in the connector's [mapping] table", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The override file a connector file names in `[mapping] overrides`
    /// could not be read (the file system's reason is in the text only, so
    /// it is said once however the error is shown).
    #[error("cannot read the mapping CSV {} ({reason}), which {} names in [mapping] overrides; create it ({CSV_HINT}), or correct or remove that `overrides` line", csv.display(), connector.display())]
    Overrides {
        /// The CSV.
        csv: PathBuf,
        /// The connector file naming it.
        connector: PathBuf,
        /// What the file system said.
        reason: std::io::Error,
    },
    /// The header row lacks the needed columns.
    #[error("the header row of {} is `{found}`, which has no `ExternalUserId` and `Mailbox` (or `O365UserMailbox`) columns; {CSV_HINT}", path.display())]
    MissingColumns {
        /// The file.
        path: PathBuf,
        /// The header row as read.
        found: String,
    },
    /// A line of the override file is wrong.
    #[error("{}, line {line}: {message}; {hint}", path.display())]
    InvalidLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// A person id is mapped twice to different mailboxes.
    #[error("{}, line {line}: `{id}` is mapped to {second} but line {first_line} maps it to {first}; keep one line per ExternalUserId", path.display())]
    ConflictingOverride {
        /// The file.
        path: PathBuf,
        /// The line of the second mapping.
        line: u64,
        /// The line of the first mapping.
        first_line: u64,
        /// The person id.
        id: String,
        /// The first mailbox.
        first: Mailbox,
        /// The second mailbox.
        second: Mailbox,
    },
    /// An address is not a usable mailbox.
    #[error(transparent)]
    InvalidMailbox(#[from] connector_model::InvalidAddress),
    /// A domain in the `domains` list is not a domain name.
    #[error(
        "`{value}` in the mapping's `domains` is not a domain name; write names such as example.com, without `@` or spaces"
    )]
    InvalidDomain {
        /// The value given.
        value: String,
    },
}

/// What becomes of a message's external participants (people the plugin
/// marks as belonging to other organisations) who have no mailbox. Whose
/// address maps is still decided by the overrides and `domains`: an
/// external person who maps receives the message like anyone else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExternalPolicy {
    /// Named in the email (To) and in the admin log, not quarantined: a
    /// message is complete once every internal participant has it.
    #[default]
    Name,
    /// Treated like any unmapped participant: the message is kept in the
    /// quarantine until they are mapped.
    Quarantine,
}

/// Where each participant's mail goes.
#[derive(Debug, Clone, Default)]
pub struct UserMap {
    overrides: HashMap<String, Mailbox>,
    domains: Vec<String>,
    external: ExternalPolicy,
    /// Whether a person without an override maps by their email.
    no_email_matching: bool,
}

/// The mailboxes that receive one message, and the people who have none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FanOut {
    /// Each mailbox once, in the order its first person appeared (sender
    /// first, then participants).
    pub mailboxes: Vec<Mailbox>,
    /// People without a mailbox, each once, in the same order: the message
    /// is quarantined for them.
    pub unmapped: Vec<Person>,
    /// External people without a mailbox under [`ExternalPolicy::Name`]:
    /// named, not quarantined.
    pub external: Vec<Person>,
}

impl UserMap {
    /// Loads the override CSV (when given) and the list of domains that map
    /// automatically (empty: every valid email maps).
    ///
    /// The CSV has a header row with an `ExternalUserId` column and a
    /// `Mailbox` (or Purview's `O365UserMailbox`) column, in any order and
    /// case; other columns are ignored, cells are trimmed.
    pub fn load(overrides_csv: Option<&Path>, domains: Vec<String>) -> Result<UserMap, MapError> {
        match overrides_csv {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| MapError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                UserMap::from_csv(path, &bytes, domains)
            }
            None => UserMap::from_pairs(Vec::<(String, String)>::new(), domains),
        }
    }

    /// The map [`UserMap::load`] makes of an override CSV's text, which
    /// errors name as `path`.
    pub fn from_csv(path: &Path, bytes: &[u8], domains: Vec<String>) -> Result<UserMap, MapError> {
        Ok(UserMap {
            overrides: parse_csv(path, bytes)?,
            domains: check_domains(domains)?,
            ..UserMap::default()
        })
    }

    /// Checks the text of an override CSV as [`UserMap::load`] would read
    /// it from `path`; returns how many people it maps.
    pub fn check_csv(path: &Path, bytes: &[u8]) -> Result<usize, MapError> {
        Ok(parse_csv(path, bytes)?.len())
    }

    /// The same map, mapping people without an override by their email
    /// (`true`, the default) or only by the overrides (`false`).
    pub fn with_email_matching(self, on: bool) -> UserMap {
        UserMap {
            no_email_matching: !on,
            ..self
        }
    }

    /// The same map with `policy` for external participants.
    pub fn with_external(self, policy: ExternalPolicy) -> UserMap {
        UserMap {
            external: policy,
            ..self
        }
    }

    /// A map from in-memory `(person id, mailbox)` pairs, checked like the
    /// CSV (errors name `<pairs>` and the pair's 1-based position).
    pub fn from_pairs<I, S, T>(pairs: I, domains: Vec<String>) -> Result<UserMap, MapError>
    where
        I: IntoIterator<Item = (S, T)>,
        S: AsRef<str>,
        T: AsRef<str>,
    {
        let path = Path::new("<pairs>");
        let mut overrides = Overrides::default();
        for (i, (id, mailbox)) in pairs.into_iter().enumerate() {
            overrides.add(path, i as u64 + 1, id.as_ref(), mailbox.as_ref())?;
        }
        Ok(UserMap {
            overrides: overrides.map,
            domains: check_domains(domains)?,
            ..UserMap::default()
        })
    }

    /// The domains that map automatically (lower case); empty means all.
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// How many person ids the override file maps.
    pub fn override_count(&self) -> usize {
        self.overrides.len()
    }

    /// The mailbox of `person`: the override for their id, else (unless
    /// email matching is off) their email when it is a valid address (in
    /// one of the domains, when domains are set).
    pub fn resolve(&self, person: &Person) -> Option<Mailbox> {
        if let Some(mailbox) = self.overrides.get(&person.id) {
            return Some(mailbox.clone());
        }
        if self.no_email_matching {
            return None;
        }
        let mailbox = Mailbox::new(person.email.as_deref()?).ok()?;
        if self.domains.is_empty() || self.domains.iter().any(|d| d == mailbox.domain()) {
            Some(mailbox)
        } else {
            None
        }
    }

    /// The mailboxes for a message: the sender's and every participant's,
    /// each once. People are told apart by id; the sender counts as a
    /// participant even when the conversation does not list them.
    pub fn fan_out(&self, participants: &[Person], sender: &Person) -> FanOut {
        let mut out = FanOut::default();
        let mut people = HashSet::new();
        let mut mailboxes = HashSet::new();
        for person in std::iter::once(sender).chain(participants) {
            if !people.insert(person.id.as_str()) {
                continue;
            }
            match self.resolve(person) {
                Some(mailbox) => {
                    if mailboxes.insert(mailbox.clone()) {
                        out.mailboxes.push(mailbox);
                    }
                }
                None => out.unmapped.push(person.clone()),
            }
        }
        out
    }

    /// [`UserMap::fan_out`] for `message` in a conversation of
    /// `participants`, with the policy for external participants applied to
    /// those the message names as external.
    pub fn fan_out_message(&self, message: &Message, participants: &[Person]) -> FanOut {
        let mut out = self.fan_out(participants, &message.sender);
        if self.external == ExternalPolicy::Name && !out.unmapped.is_empty() {
            let external: HashSet<&str> = message.external_participants().collect();
            (out.external, out.unmapped) = std::mem::take(&mut out.unmapped)
                .into_iter()
                .partition(|p| external.contains(p.id.as_str()));
        }
        out
    }
}

/// Overrides being collected, with the line each came from.
#[derive(Default)]
struct Overrides {
    map: HashMap<String, Mailbox>,
    lines: HashMap<String, u64>,
}

impl Overrides {
    fn add(&mut self, path: &Path, line: u64, id: &str, mailbox: &str) -> Result<(), MapError> {
        let id = id.trim();
        if id.is_empty() {
            return Err(MapError::InvalidLine {
                path: path.to_path_buf(),
                line,
                message: "the ExternalUserId is empty".to_string(),
                hint: "give the person's id in the source system",
            });
        }
        let mailbox = Mailbox::new(mailbox).map_err(|_| MapError::InvalidLine {
            path: path.to_path_buf(),
            line,
            message: format!("`{}` is not a mailbox address", mailbox.trim()),
            hint: "write a plain address such as alice@example.com",
        })?;
        match self.map.get(id) {
            Some(first) if *first != mailbox => Err(MapError::ConflictingOverride {
                path: path.to_path_buf(),
                line,
                first_line: self.lines[id],
                id: id.to_string(),
                first: first.clone(),
                second: mailbox,
            }),
            Some(_) => Ok(()),
            None => {
                self.lines.insert(id.to_string(), line);
                self.map.insert(id.to_string(), mailbox);
                Ok(())
            }
        }
    }
}

fn parse_csv(path: &Path, bytes: &[u8]) -> Result<HashMap<String, Mailbox>, MapError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let csv_error = |e: csv::Error| MapError::InvalidLine {
        path: path.to_path_buf(),
        line: e.position().map_or(1, |p| p.line()),
        message: match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("found {len} fields where the header row has {expected_len}"),
            csv::ErrorKind::Utf8 { .. } => "the line is not valid UTF-8".to_string(),
            _ => e.to_string(),
        },
        hint: CSV_HINT,
    };
    let headers = reader.headers().map_err(csv_error)?.clone();
    let column = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let (Some(id_col), Some(mailbox_col)) = (
        column(&["ExternalUserId"]),
        column(&["Mailbox", "O365UserMailbox"]),
    ) else {
        return Err(MapError::MissingColumns {
            path: path.to_path_buf(),
            found: headers.iter().collect::<Vec<_>>().join(","),
        });
    };

    let mut overrides = Overrides::default();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let id = record.get(id_col).unwrap_or_default();
        let mailbox = record.get(mailbox_col).unwrap_or_default();
        overrides.add(path, line, id, mailbox)?;
    }
    Ok(overrides.map)
}

fn check_domains(domains: Vec<String>) -> Result<Vec<String>, MapError> {
    let mut out: Vec<String> = Vec::with_capacity(domains.len());
    for value in domains {
        let domain = value.trim().trim_start_matches('@').to_ascii_lowercase();
        if !is_plain_address(&format!("x@{domain}")) {
            return Err(MapError::InvalidDomain { value });
        }
        if !out.contains(&domain) {
            out.push(domain);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn person(id: &str, email: Option<&str>) -> Person {
        Person {
            id: id.to_string(),
            display_name: None,
            email: email.map(str::to_string),
        }
    }

    fn csv_file(content: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content.as_bytes()).unwrap();
        file
    }

    fn mailbox(s: &str) -> Mailbox {
        Mailbox::new(s).unwrap()
    }

    #[test]
    fn mailbox_is_lower_cased_and_validated() {
        let m = Mailbox::new(" Alice@Example.COM ").unwrap();
        assert_eq!(m.as_str(), "alice@example.com");
        assert_eq!(m.to_string(), "alice@example.com");
        assert_eq!(m.domain(), "example.com");
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "a b@example.com",
            "../x@example.com",
            "a/b@example.com",
            ".a@example.com",
            "ünï@example.com",
            "a@exa_mple.com",
        ] {
            let err = Mailbox::new(bad).unwrap_err();
            assert!(err.to_string().contains("plain address"), "{bad}: {err}");
        }
    }

    #[test]
    fn override_by_person_id_wins_over_email() {
        let file = csv_file("ExternalUserId,Mailbox\nu-1, Archive.Alice@corp.example \n");
        let map = UserMap::load(Some(file.path()), Vec::new()).unwrap();
        assert_eq!(map.override_count(), 1);
        assert_eq!(
            map.resolve(&person("u-1", Some("alice@gmail.com"))),
            Some(mailbox("archive.alice@corp.example"))
        );
    }

    #[test]
    fn purview_header_name_bom_extra_columns_and_any_column_order_are_accepted() {
        let file =
            csv_file("\u{feff}Note,O365UserMailbox,externaluserid\nceo,boss@corp.example,u-9\n");
        let map = UserMap::load(Some(file.path()), Vec::new()).unwrap();
        assert_eq!(
            map.resolve(&person("u-9", None)),
            Some(mailbox("boss@corp.example"))
        );
    }

    #[test]
    fn email_maps_automatically_without_domains() {
        let map = UserMap::load(None, Vec::new()).unwrap();
        assert_eq!(
            map.resolve(&person("u", Some("Bob@Anything.example"))),
            Some(mailbox("bob@anything.example"))
        );
        assert_eq!(map.resolve(&person("u", None)), None);
        assert_eq!(map.resolve(&person("u", Some("not an address"))), None);
    }

    #[test]
    fn domains_restrict_automatic_mapping_to_exact_domains_case_insensitively() {
        let map =
            UserMap::load(None, vec!["Corp.Example".into(), "@other.example".into()]).unwrap();
        assert_eq!(map.domains(), ["corp.example", "other.example"]);
        assert!(map.resolve(&person("a", Some("a@CORP.example"))).is_some());
        assert!(map.resolve(&person("b", Some("b@other.example"))).is_some());
        assert!(
            map.resolve(&person("c", Some("c@sub.corp.example")))
                .is_none()
        );
        assert!(
            map.resolve(&person("d", Some("d@corp.example.evil")))
                .is_none()
        );
        assert!(map.resolve(&person("e", Some("e@gmail.com"))).is_none());
    }

    #[test]
    fn overrides_apply_outside_the_domains() {
        let map = UserMap::from_pairs(
            [("ext-1", "guest@corp.example")],
            vec!["corp.example".into()],
        )
        .unwrap();
        assert_eq!(
            map.resolve(&person("ext-1", Some("x@partner.example"))),
            Some(mailbox("guest@corp.example"))
        );
    }

    #[test]
    fn invalid_domain_is_an_error() {
        let err = UserMap::load(None, vec!["not a domain".into()]).unwrap_err();
        assert!(matches!(err, MapError::InvalidDomain { .. }));
        assert!(err.to_string().contains("example.com"), "{err}");
    }

    #[test]
    fn malformed_csv_line_names_file_and_line() {
        let file =
            csv_file("ExternalUserId,Mailbox\nu-1,a@corp.example\nu-2,b@corp.example,extra\n");
        let err = UserMap::load(Some(file.path()), Vec::new()).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, MapError::InvalidLine { line: 3, .. }),
            "{text}"
        );
        assert!(text.contains(&file.path().display().to_string()), "{text}");
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("ExternalUserId,Mailbox"), "{text}");
    }

    #[test]
    fn invalid_mailbox_in_csv_names_file_and_line() {
        let file = csv_file("ExternalUserId,Mailbox\n\nu-1,a@corp.example\nu-2,not-an-address\n");
        let err = UserMap::load(Some(file.path()), Vec::new()).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, MapError::InvalidLine { line: 4, .. }),
            "{text}"
        );
        assert!(text.contains("`not-an-address`"), "{text}");
        assert!(text.contains("alice@example.com"), "{text}");
    }

    #[test]
    fn empty_id_in_csv_is_an_error() {
        let file = csv_file("ExternalUserId,Mailbox\n,a@corp.example\n");
        let err = UserMap::load(Some(file.path()), Vec::new()).unwrap_err();
        assert!(
            matches!(err, MapError::InvalidLine { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_columns_are_an_error_with_the_expected_header() {
        let file = csv_file("id,address\nu-1,a@corp.example\n");
        let err = UserMap::load(Some(file.path()), Vec::new()).unwrap_err();
        assert!(matches!(err, MapError::MissingColumns { .. }));
        assert!(err.to_string().contains("`id,address`"), "{err}");
    }

    #[test]
    fn conflicting_overrides_are_an_error_but_repeats_are_not() {
        let ok = UserMap::from_pairs(
            [("u", "a@corp.example"), ("u", "A@corp.example")],
            Vec::new(),
        );
        assert!(ok.is_ok());
        let file = csv_file("ExternalUserId,Mailbox\nu,a@corp.example\nu,b@corp.example\n");
        let err = UserMap::load(Some(file.path()), Vec::new()).unwrap_err();
        assert!(
            matches!(
                err,
                MapError::ConflictingOverride {
                    line: 3,
                    first_line: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_a_read_error_naming_it() {
        let err = UserMap::load(Some(Path::new("/nonexistent/map.csv")), Vec::new()).unwrap_err();
        assert!(matches!(err, MapError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/map.csv"));
    }

    #[test]
    fn non_utf8_line_is_an_error_naming_the_line() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"ExternalUserId,Mailbox\nu\xff,a@corp.example\n")
            .unwrap();
        let err = UserMap::load(Some(file.path()), Vec::new()).unwrap_err();
        assert!(
            matches!(err, MapError::InvalidLine { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn fan_out_includes_sender_deduplicates_and_keeps_order() {
        let map = UserMap::from_pairs([("u-shared", "alice@corp.example")], Vec::new()).unwrap();
        let sender = person("u-s", Some("sender@corp.example"));
        let participants = vec![
            person("u-b", Some("bob@corp.example")),
            person("u-x", None),
            person("u-a", Some("Alice@corp.example")),
            person("u-shared", None),
            person("u-b", Some("bob@corp.example")),
            person("u-x", None),
            person("u-y", Some("broken")),
        ];
        let out = map.fan_out(&participants, &sender);
        assert_eq!(
            out.mailboxes,
            vec![
                mailbox("sender@corp.example"),
                mailbox("bob@corp.example"),
                mailbox("alice@corp.example"),
            ]
        );
        let unmapped: Vec<&str> = out.unmapped.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(unmapped, ["u-x", "u-y"]);
    }

    fn message_with_external(sender: Person, external: &str) -> Message {
        Message {
            id: "m".into(),
            conversation_id: "c".into(),
            sender,
            sent_at: 0,
            kind: connector_model::MessageKind::Chat,
            relations: Vec::new(),
            text: None,
            html: None,
            attachments: Vec::new(),
            source_sha256: String::new(),
            properties: vec![(
                connector_model::EXTERNAL_PARTICIPANTS_PROPERTY.into(),
                external.into(),
            )],
        }
    }

    #[test]
    fn external_participants_without_a_mailbox_are_named_not_unmapped_by_default() {
        let map = UserMap::load(None, vec!["corp.example".into()]).unwrap();
        let sender = person("ext-1", Some("x@partner.example"));
        let participants = vec![
            person("u", Some("u@corp.example")),
            person("ext-2", Some("y@corp.example")),
            person("nobody", None),
        ];
        let message = message_with_external(sender.clone(), "ext-1,ext-2");
        let out = map.fan_out_message(&message, &participants);
        assert_eq!(
            out.mailboxes,
            [mailbox("u@corp.example"), mailbox("y@corp.example")],
            "an external person whose address maps still receives it"
        );
        assert_eq!(out.external, std::slice::from_ref(&sender));
        assert_eq!(out.unmapped, [person("nobody", None)]);

        let strict = map.with_external(ExternalPolicy::Quarantine);
        let out = strict.fan_out_message(&message, &participants);
        assert!(out.external.is_empty());
        assert_eq!(out.unmapped, [sender, person("nobody", None)]);
    }

    #[test]
    fn unmapped_sender_is_reported() {
        let map = UserMap::load(None, vec!["corp.example".into()]).unwrap();
        let sender = person("ext", Some("ext@partner.example"));
        let out = map.fan_out(&[person("u", Some("u@corp.example"))], &sender);
        assert_eq!(out.mailboxes, vec![mailbox("u@corp.example")]);
        assert_eq!(out.unmapped, vec![sender]);
    }
}
