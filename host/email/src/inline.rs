//! Inline images: attachments an HTML body shows through `cid:` URLs
//! (RFC 2392).
//!
//! A plugin marks an attachment inline by giving it an id that is a
//! Content-ID (`left@right`, each side a dot-atom of RFC 5322) and by
//! referring to it from its HTML body as `cid:` followed by that id
//! (percent-encoded where RFC 2392 asks for it). Such an attachment is
//! written with `Content-ID: <id>` and `Content-Disposition: inline`,
//! beside the body in a `multipart/related` part; every other attachment
//! stays an ordinary one.

use std::collections::BTreeSet;

/// The Content-IDs the HTML refers to through `cid:` URLs (scheme matched
/// without regard to case), percent-decoded; a URL that does not decode to
/// UTF-8 is left out.
pub(crate) fn referenced_content_ids(html: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("cid:") {
        let start = from + at + "cid:".len();
        // A URL starts an attribute value (quoted or not) or follows `(` in
        // CSS `url(`; `acid:` or `/cid:` are not URLs of the scheme.
        let boundary = lower[..from + at]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '=' | '('));
        let end = html[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')'))
            .map_or(html.len(), |n| start + n);
        if boundary && let Some(id) = percent_decode(&html[start..end]) {
            ids.insert(id);
        }
        from = end.max(start);
    }
    ids
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result
/// is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// True when `id` can be written as a Content-ID: `left@right`, each side
/// a dot-atom (atext characters, dots only between them).
pub(crate) fn is_content_id(id: &str) -> bool {
    let Some((left, right)) = id.split_once('@') else {
        return false;
    };
    is_dot_atom(left) && is_dot_atom(right)
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_urls_are_found_decoded_and_other_schemes_ignored() {
        let html = r#"<img src="cid:chart.1@inline"><img src='CID:a%2Fb@x'> <p>acid:no@x</p> url(cid:bg@y) <img src="cid:bad%zz@x"><img src="https://e.example/cid:z@w">"#;
        let ids: Vec<String> = referenced_content_ids(html).into_iter().collect();
        assert_eq!(ids, ["a/b@x", "bg@y", "chart.1@inline"]);
    }

    #[test]
    fn only_left_at_right_dot_atoms_are_content_ids() {
        for good in ["a@b", "image-1-0f3a@symphony.inline", "x+y/z=@h"] {
            assert!(is_content_id(good), "{good}");
        }
        for bad in [
            "", "a", "@b", "a@", "a@b@c", "a..b@c", ".a@b", "a b@c", "a@b.", "é@b", "a<b@c",
        ] {
            assert!(!is_content_id(bad), "{bad}");
        }
    }
}
