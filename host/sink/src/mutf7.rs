//! IMAP's modified UTF-7 (RFC 3501, 5.1.3): how mailbox names travel over
//! IMAP, and how Dovecot's Maildir++ layout names folders on disk.

use base64::Engine as _;

/// `name` in modified UTF-7: printable ASCII as is (`&` as `&-`), anything
/// else as `&<modified base64 of UTF-16BE>-`.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    encode_into(name, &mut out, |_, _| false);
    out
}

/// Appends `name` in modified UTF-7 to `out`; `ascii` may write a printable
/// ASCII character its own way and return `true` (Maildir++ escapes `.`
/// and `\`), otherwise it is written as [`encode`] does.
pub fn encode_into(name: &str, out: &mut String, ascii: impl Fn(char, &mut String) -> bool) {
    let mut wide: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut wide, out);
            if ascii(c, out) {
                continue;
            }
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            wide.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut wide, out);
}

/// Writes pending UTF-16 units as a modified-base64 run `&…-`.
fn flush(wide: &mut Vec<u16>, out: &mut String) {
    if wide.is_empty() {
        return;
    }
    let bytes: Vec<u8> = wide.iter().flat_map(|u| u.to_be_bytes()).collect();
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    out.push('&');
    out.push_str(&encoded.replace('/', ","));
    out.push('-');
    wide.clear();
}

/// Decodes modified UTF-7; `None` when it is not valid.
pub fn decode(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after.find('-')?;
        let run = &after[..end];
        if run.is_empty() {
            out.push('&');
        } else {
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(run.replace(',', "/"))
                .ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_utf7_decodes_what_it_encodes() {
        for name in [
            "Entwürfe",
            "日本語",
            "R&D",
            "Chat 😀 ~x",
            "plain",
            "&&",
            "a,b/c",
        ] {
            assert_eq!(decode(&encode(name)).unwrap(), name, "{name}");
        }
        assert_eq!(encode("a,b/c"), "a,b/c");
        assert!(decode("&ZeVn").is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_folder_name_round_trips_as_printable_ascii(name in ".*") {
            let encoded = encode(&name);
            proptest::prop_assert!(encoded.bytes().all(|b| (b' '..=b'~').contains(&b)));
            proptest::prop_assert_eq!(decode(&encoded), Some(name));
        }
    }
}
