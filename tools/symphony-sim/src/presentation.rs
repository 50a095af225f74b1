//! Builds a message's PresentationML (`message`), its EntityJSON (`data`) and, in step, the
//! plain text a reader is expected to extract from it (the ground truth's `text`).
//!
//! Plain-text rule: the text nodes in document order, entities decoded; `<br/>` and the start
//! and end of each block (`p`, `li`, `tr`, `pre`, `h1`..`h6`, `table`, `ul`, `ol`) give a line
//! break (never two in a row, none at the start or end); table cells in a row are separated
//! by a tab. Text inside `<pre>` keeps its own line breaks.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::truth::TruthInlineImage;

/// Escapes text for XHTML element content and attribute values.
pub(crate) fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
}

/// A rendered message.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rendered {
    pub presentation: String,
    pub data: String,
    pub text: String,
    pub mentions: Vec<i64>,
    pub hashtags: Vec<String>,
    pub cashtags: Vec<String>,
    pub emojis: Vec<String>,
    pub images: Vec<TruthInlineImage>,
}

/// Incremental PresentationML writer.
pub(crate) struct MessageBuilder {
    html: String,
    text: String,
    entities: Map<String, Value>,
    next_entity: u32,
    r: Rendered,
}

impl MessageBuilder {
    /// Starts the `<div data-format="PresentationML" ...>` root; `wysiwyg` adds the class the
    /// desktop client sets.
    pub fn new(wysiwyg: bool) -> Self {
        let mut html = String::from(r#"<div data-format="PresentationML" data-version="2.0""#);
        if wysiwyg {
            html.push_str(r#" class="wysiwyg""#);
        }
        html.push('>');
        MessageBuilder {
            html,
            text: String::new(),
            entities: Map::new(),
            next_entity: 0,
            r: Rendered::default(),
        }
    }

    fn line_break(&mut self) {
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
    }

    /// Plain text (escaped in the markup).
    pub fn text(&mut self, s: &str) -> &mut Self {
        escape(s, &mut self.html);
        self.text.push_str(s);
        self
    }

    /// Opens a block element (`p`, `li`, `ul`, `ol`, `pre`, `h2`...).
    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.line_break();
        self.html.push('<');
        self.html.push_str(tag);
        self.html.push('>');
        self
    }

    /// Closes a block element.
    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.html.push_str("</");
        self.html.push_str(tag);
        self.html.push('>');
        self.line_break();
        self
    }

    /// An inline element around plain text (`b`, `i`, `code`...).
    pub fn inline(&mut self, tag: &str, s: &str) -> &mut Self {
        self.html.push('<');
        self.html.push_str(tag);
        self.html.push('>');
        self.text(s);
        self.html.push_str("</");
        self.html.push_str(tag);
        self.html.push('>');
        self
    }

    /// A line break.
    pub fn br(&mut self) -> &mut Self {
        self.html.push_str("<br/>");
        self.text.push('\n');
        self
    }

    /// A `<pre>` block whose text keeps its line breaks.
    pub fn pre(&mut self, s: &str) -> &mut Self {
        self.open("pre");
        self.text(s);
        self.close("pre")
    }

    /// A link whose label is its URL.
    pub fn link(&mut self, url: &str) -> &mut Self {
        self.html.push_str("<a href=\"");
        escape(url, &mut self.html);
        self.html.push_str("\">");
        self.text(url);
        self.html.push_str("</a>");
        self
    }

    /// An image shown inline: `<img src="data:<media type>;base64,...">` (no text).
    pub fn image(&mut self, media_type: &str, bytes: &[u8]) -> &mut Self {
        self.html.push_str("<img src=\"data:");
        escape(media_type, &mut self.html);
        self.html.push_str(";base64,");
        self.html.push_str(&STANDARD.encode(bytes));
        self.html.push_str("\"/>");
        self.r.images.push(TruthInlineImage {
            media_type: media_type.to_string(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        });
        self
    }

    fn entity(&mut self, visible: &str, value: Value) {
        let key = self.next_entity.to_string();
        self.next_entity += 1;
        self.html
            .push_str("<span class=\"entity\" data-entity-id=\"");
        self.html.push_str(&key);
        self.html.push_str("\">");
        self.text(visible);
        self.html.push_str("</span>");
        self.entities.insert(key, value);
    }

    /// A user mention `@Display Name` (`com.symphony.user.mention`).
    pub fn mention(&mut self, user_id: i64, display_name: &str) -> &mut Self {
        self.entity(
            &format!("@{display_name}"),
            json!({
                "id": [{"type": "com.symphony.user.userId", "value": user_id.to_string()}],
                "type": "com.symphony.user.mention",
                "version": "1.0"
            }),
        );
        self.r.mentions.push(user_id);
        self
    }

    /// A hashtag `#tag` (`org.symphony.oss.taxonomy`, hashtag id type).
    pub fn hashtag(&mut self, tag: &str) -> &mut Self {
        self.entity(
            &format!("#{tag}"),
            json!({
                "id": [{"type": "org.symphony.oss.taxonomy.hashtag", "value": tag}],
                "type": "org.symphony.oss.taxonomy",
                "version": "1.0"
            }),
        );
        self.r.hashtags.push(tag.to_string());
        self
    }

    /// A cashtag `$TICKER` (`org.symphony.oss.taxonomy`, ticker id type).
    pub fn cashtag(&mut self, ticker: &str) -> &mut Self {
        self.entity(
            &format!("${ticker}"),
            json!({
                "id": [{"type": "org.symphony.oss.fin.security.id.ticker", "value": ticker}],
                "type": "org.symphony.oss.taxonomy",
                "version": "1.0"
            }),
        );
        self.r.cashtags.push(ticker.to_string());
        self
    }

    /// An emoji entity (`com.symphony.emoji`) shown as its Unicode character.
    pub fn emoji(&mut self, shortcode: &str, unicode: &str) -> &mut Self {
        self.entity(
            unicode,
            json!({
                "type": "com.symphony.emoji",
                "version": "1.0",
                "data": {
                    "shortcode": shortcode,
                    "annotation": shortcode.replace('_', " "),
                    "unicode": unicode,
                    "size": "normal"
                }
            }),
        );
        self.r.emojis.push(shortcode.to_string());
        self
    }

    /// A table with a header row.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) -> &mut Self {
        self.open("table");
        self.html.push_str("<thead>");
        self.row("th", header.iter().map(|s| s.to_string()));
        self.html.push_str("</thead><tbody>");
        for row in rows {
            self.row("td", row.iter().cloned());
        }
        self.html.push_str("</tbody>");
        self.close("table")
    }

    fn row(&mut self, cell: &str, cells: impl Iterator<Item = String>) {
        self.open("tr");
        for (i, c) in cells.enumerate() {
            if i > 0 {
                self.text.push('\t');
            }
            self.html.push('<');
            self.html.push_str(cell);
            self.html.push('>');
            escape(&c, &mut self.html);
            self.text.push_str(&c);
            self.html.push_str("</");
            self.html.push_str(cell);
            self.html.push('>');
        }
        self.close("tr");
    }

    /// Closes the root and returns markup, entity JSON and expected plain text.
    pub fn finish(mut self) -> Rendered {
        self.html.push_str("</div>");
        let mut r = self.r;
        r.presentation = self.html;
        r.data = Value::Object(self.entities).to_string();
        r.text = self.text.trim_matches('\n').to_string();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_escapes_markup_and_tracks_plain_text_and_entities() {
        let mut b = MessageBuilder::new(true);
        b.open("p")
            .text("Hi ")
            .mention(42, "Zoë <Z>")
            .text(" & ")
            .hashtag("rates")
            .text(" ")
            .cashtag("AAPL")
            .text(" ")
            .emoji("thumbsup", "👍")
            .close("p");
        b.table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        b.pre("x < y\nz");
        b.image("image/svg+xml", b"<svg/>");
        let r = b.finish();
        assert!(r.presentation.starts_with(
            r#"<div data-format="PresentationML" data-version="2.0" class="wysiwyg"><p>Hi <span class="entity" data-entity-id="0">@Zoë &lt;Z&gt;</span> &amp; "#
        ));
        assert_eq!(
            r.text,
            "Hi @Zoë <Z> & #rates $AAPL 👍\na\tb\n1\t2\nx < y\nz"
        );
        let data: Value = serde_json::from_str(&r.data).unwrap();
        assert_eq!(data["0"]["type"], "com.symphony.user.mention");
        assert_eq!(data["0"]["id"][0]["value"], "42");
        assert_eq!(data["3"]["data"]["unicode"], "👍");
        assert_eq!(r.mentions, vec![42]);
        assert!(
            r.presentation
                .ends_with(r#"</pre><img src="data:image/svg+xml;base64,PHN2Zy8+"/></div>"#)
        );
        assert_eq!(r.images.len(), 1);
        assert_eq!(r.images[0].size, 6);
    }
}
