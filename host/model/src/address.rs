//! Email addresses: which ones the host treats as plain, and the
//! [`Mailbox`] an email is delivered to.

use std::fmt;

/// A mailbox address, lower-cased and checked to be a plain ASCII address
/// (also safe as a folder name on disk: no `/`, no leading dot).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Mailbox(String);

/// A value that is not a plain `local@domain` address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a mailbox address; write a plain address such as alice@example.com")]
pub struct InvalidAddress {
    /// The value given.
    pub value: String,
}

impl Mailbox {
    /// Checks and lower-cases an address such as `Alice@Example.com`.
    pub fn new(address: &str) -> Result<Mailbox, InvalidAddress> {
        let trimmed = address.trim();
        if is_plain_address(trimmed) {
            Ok(Mailbox(trimmed.to_ascii_lowercase()))
        } else {
            Err(InvalidAddress {
                value: address.to_string(),
            })
        }
    }

    /// A mailbox that skips the checks, for tests of how consumers (sinks,
    /// reports) treat names that [`Mailbox::new`] would refuse.
    #[doc(hidden)]
    pub fn new_unchecked(address: &str) -> Mailbox {
        Mailbox(address.to_string())
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Mailbox {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Characters RFC 5322 allows in an atom, except `/` (kept out because
/// addresses also name folders on disk).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-=?^_`{|}~".contains(&b)
}

/// Whether `email` is a plain ASCII `local@domain` address (dot-atom local
/// part, domain of letters, digits, `-` and dots).
pub fn is_plain_address(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let dot_atom = |s: &str, part: fn(u8) -> bool| {
        !s.is_empty() && s.split('.').all(|p| !p.is_empty() && p.bytes().all(part))
    };
    local.len() <= 64
        && domain.len() <= 253
        && dot_atom(local, is_atext)
        && dot_atom(domain, |b| b.is_ascii_alphanumeric() || b == b'-')
        && domain
            .split('.')
            .all(|label| !label.starts_with('-') && !label.ends_with('-') && label.len() <= 63)
}
