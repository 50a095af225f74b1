//! Escaping text for HTML, for the emails' HTML bodies and the status page.

/// `text` with `&`, `<`, `>` and `"` escaped: safe in element content and
/// double-quoted attributes.
pub fn escape(text: &str) -> String {
    escape_with(text, false)
}

/// Like [`escape`], and `'` too: safe in single-quoted attributes as well.
pub fn escape_all_quotes(text: &str) -> String {
    escape_with(text, true)
}

fn escape_with(text: &str, apostrophe: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' if apostrophe => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped_and_apostrophes_only_when_asked() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c'");
        assert_eq!(escape_all_quotes("'"), "&#39;");
    }
}
