//! Header value encoding that survives a round trip exactly.
//!
//! mail-builder folds and encodes headers well, but it writes short ASCII
//! values as they are, and a parser then collapses runs of white space,
//! trims the ends and decodes anything that looks like an encoded word. An
//! archive must give back exactly what the source said, so every value here
//! is either written plainly, when the plain form is unambiguous, or as a
//! run of RFC 2047 encoded words, which decode to the exact text.

use std::borrow::Cow;

use base64::Engine as _;

/// Longest encoded word RFC 2047 allows.
const MAX_WORD: usize = 75;
/// Line length RFC 5322 asks writers to stay within.
const LINE: usize = 78;
/// Longest word written plainly: as long as an encoded word, so that a
/// fold before it keeps the line within 78 characters.
const MAX_PLAIN_WORD: usize = MAX_WORD + 1;
/// Longest first line of a plainly written header: a short value (a hash, a
/// UUID) after a long header name stays readable rather than encoded; RFC
/// 5322 only requires lines below 998 characters.
const MAX_PLAIN_FIRST_LINE: usize = 120;
/// Smallest budget for the first word, when the header name is long.
const MIN_FIRST_WORD: usize = 24;
/// `=?utf-8?Q?` + `?=`.
const WORD_OVERHEAD: usize = 12;

/// Encodes an unstructured header value (`Subject`, `X-…`).
///
/// `column` is where the value starts on the first line (the header name's
/// length plus two). The result uses single spaces only, so mail-builder's
/// folding (which breaks lines at spaces) keeps it intact.
pub(crate) fn unstructured(value: &str, column: usize) -> Cow<'_, str> {
    if value.is_empty() || is_plain(value, column, |_| true) {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(encoded_words(value, column))
    }
}

/// Encodes a display name for an address header: a quoted string when that
/// is unambiguous, else encoded words.
pub(crate) fn phrase(value: &str, column: usize) -> String {
    // One more for the opening quote.
    if is_plain(value, column + 1, |b| b != b'"' && b != b'\\') {
        format!("\"{value}\"")
    } else {
        encoded_words(value, column)
    }
}

/// Whether `value` can be written as it is and still parse back unchanged:
/// printable ASCII, single spaces between words, no space at either end, no
/// text that looks like an encoded word, and words short enough to fold
/// (the first line may exceed 78 characters, up to 120, rather than encode
/// a short value after a long header name).
fn is_plain(value: &str, column: usize, allowed: impl Fn(u8) -> bool) -> bool {
    let bytes = value.as_bytes();
    if bytes.first().is_none_or(|&b| b == b' ') || bytes.last() == Some(&b' ') {
        return false;
    }
    let mut first_word = None;
    let mut word = 0;
    let mut previous = 0u8;
    for &b in bytes {
        if !(b' '..=b'~').contains(&b) || !allowed(b) || (previous == b'=' && b == b'?') {
            return false;
        }
        if b == b' ' {
            if previous == b' ' {
                return false;
            }
            first_word.get_or_insert(word);
            word = 0;
        } else {
            word += 1;
            if word > MAX_PLAIN_WORD {
                return false;
            }
        }
        previous = b;
    }
    column + first_word.unwrap_or(word) <= MAX_PLAIN_FIRST_LINE
}

/// Characters written as they are inside a "Q" encoded word. This is the
/// set RFC 2047 allows in a phrase, so the same words work in display names
/// and in unstructured text.
fn q_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'!' | b'*' | b'+' | b'-' | b'/')
}

fn q_len(c: char) -> usize {
    if c == ' ' || (c.is_ascii() && q_literal(c as u8)) {
        1
    } else {
        3 * c.len_utf8()
    }
}

fn push_q(out: &mut String, c: char) {
    if c == ' ' {
        out.push('_');
    } else if c.is_ascii() && q_literal(c as u8) {
        out.push(c);
    } else {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            out.push_str(&format!("={b:02X}"));
        }
    }
}

/// Writes `value` as encoded words of at most 75 characters, split only
/// between characters (each word decodes to valid UTF-8 on its own), joined
/// by single spaces, which decoders drop between adjacent encoded words.
/// "Q" is used when it is shorter than "B", which keeps mostly-ASCII values
/// readable in the raw message.
pub(crate) fn encoded_words(value: &str, column: usize) -> String {
    let q_total: usize = value.chars().map(q_len).sum();
    let b_total = value.len().div_ceil(3) * 4;
    let first_budget = LINE.saturating_sub(column).clamp(MIN_FIRST_WORD, MAX_WORD);
    let mut words: Vec<String> = Vec::new();
    let budget_for = |words: &Vec<String>| {
        if words.is_empty() {
            first_budget
        } else {
            MAX_WORD
        }
    };

    if q_total <= b_total {
        let mut payload = String::new();
        for c in value.chars() {
            if !payload.is_empty() && WORD_OVERHEAD + payload.len() + q_len(c) > budget_for(&words)
            {
                words.push(format!("=?utf-8?Q?{payload}?="));
                payload.clear();
            }
            push_q(&mut payload, c);
        }
        words.push(format!("=?utf-8?Q?{payload}?="));
    } else {
        let mut start = 0;
        let mut end = 0;
        for (i, c) in value.char_indices() {
            let next = i + c.len_utf8();
            let encoded = (next - start).div_ceil(3) * 4;
            if end > start && WORD_OVERHEAD + encoded > budget_for(&words) {
                words.push(b_word(&value[start..end]));
                start = end;
            }
            end = next;
        }
        words.push(b_word(&value[start..end]));
    }
    words.join(" ")
}

fn b_word(s: &str) -> String {
    format!(
        "=?utf-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_ascii_stays_plain() {
        assert_eq!(unstructured("Team room", 9), "Team room");
        assert_eq!(phrase("Alice Smith", 6), "\"Alice Smith\"");
    }

    #[test]
    fn ambiguous_ascii_is_encoded() {
        for value in ["two  spaces", " lead", "trail ", "=?x?Q?y?=", "tab\there"] {
            assert!(unstructured(value, 9).starts_with("=?utf-8?"), "{value:?}");
        }
        assert!(phrase("say \"hi\"", 6).starts_with("=?utf-8?"));
    }

    #[test]
    fn encoded_words_never_exceed_75_characters_or_split_characters() {
        let value = "é😀x".repeat(200);
        let encoded = encoded_words(&value, 60);
        for word in encoded.split(' ') {
            assert!(word.len() <= MAX_WORD, "{word}");
            assert!(word.starts_with("=?utf-8?") && word.ends_with("?="));
        }
    }
}
