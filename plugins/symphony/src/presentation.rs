//! PresentationML (the XHTML `<div data-format="PresentationML" ...>` of a
//! `V4Message.message`, with its entities in `V4Message.data`) into
//! sanitized HTML and readable plain text.
//!
//! The markup is tokenized with `quick-xml` (tolerant settings: unmatched end
//! tags, dangling `&`), built into a small tree (unclosed elements are closed
//! at the end, stray end tags ignored), then rendered twice:
//!
//! * **HTML**: an allow-list of elements (paragraphs, line breaks, bold,
//!   italic, underline, strike, code, pre, lists, tables, headings,
//!   quotes) with an allow-list of attributes (`href` of links with an
//!   `http`, `https` or `mailto` URL; `colspan`/`rowspan`; `start`).
//!   Scripts, styles, frames and forms' controls are dropped, other
//!   unknown elements are replaced by their content, and every event
//!   handler, style and class of the source is dropped. An image whose
//!   `src` is a base64 `data:image/...` URL (MessageML's way to embed a
//!   small image) becomes an [`InlineImage`] the HTML shows as
//!   `<img src="cid:...">`; every other image (a remote URL the reader's
//!   client would fetch) is dropped.
//! * **Text**: text nodes in order; a line break around each block
//!   (paragraphs, list items, table rows, `pre`, headings...) and for each
//!   `<br/>`; table cells separated by ` | `; code kept verbatim; links as
//!   `text <url>`; mentions as `@Name <email>`; hashtags `#tag`; cashtags
//!   `$TICK`; emoji as their Unicode character.
//!
//! Markup the tokenizer cannot read falls back to text: tags are stripped,
//! entities decoded, and the HTML is that text escaped.

use std::cell::RefCell;
use std::collections::HashMap;

use base64::Engine as _;
use quick_xml::events::{BytesStart, Event};

/// Elements nested deeper than this are flattened into their parent.
const MAX_DEPTH: usize = 128;
/// Largest embedded image kept, decoded (MessageML advises 25 KB per
/// message); a larger one is dropped like a remote image.
pub const MAX_INLINE_IMAGE_BYTES: usize = 1024 * 1024;
/// The right side of every inline image's id, which is also its Content-ID.
const INLINE_ID_DOMAIN: &str = "inline.symphony";

/// An image the markup embeds as a `data:` URL, to be attached inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineImage {
    /// Attachment id and Content-ID, `image-<n>@inline.symphony` (`n` from
    /// 1 in document order), which the HTML names as `cid:<id>`.
    pub id: String,
    /// File name, `image-<n>.<subtype>`.
    pub file_name: String,
    /// The data URL's media type (`image/png`).
    pub media_type: String,
    /// The decoded bytes.
    pub bytes: Vec<u8>,
}

fn inline_image_id(n: usize) -> String {
    format!("image-{n}@{INLINE_ID_DOMAIN}")
}

/// The media type and bytes of a base64 `data:image/...` URL.
fn decode_image_url(src: &str) -> Option<(String, Vec<u8>)> {
    let src = src.trim();
    let rest = src
        .get(..5)?
        .eq_ignore_ascii_case("data:")
        .then(|| &src[5..])?;
    let (meta, payload) = rest.split_once(',')?;
    let (media_type, params) = meta.split_once(';').unwrap_or((meta, ""));
    let media_type = media_type.trim().to_ascii_lowercase();
    let subtype = media_type.strip_prefix("image/")?;
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let base64 = params
        .split(';')
        .any(|p| p.trim().eq_ignore_ascii_case("base64"));
    if !token(subtype) || !base64 {
        return None;
    }
    let compact: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
        .filter(|b| !b.is_empty() && b.len() <= MAX_INLINE_IMAGE_BYTES)?;
    Some((media_type, bytes))
}

/// Gives `image` the id and file name of the `n`th image.
fn number_image(image: &mut InlineImage, n: usize) {
    let subtype = image.media_type.trim_start_matches("image/");
    let ext = subtype.split('+').next().unwrap_or(subtype);
    image.file_name = format!("image-{n}.{ext}");
    image.id = inline_image_id(n);
}

/// Renumbers `images` (and the `cid:` URLs of `html` naming them) from
/// `first`, so that two bodies' images can go in one message.
pub fn renumber_images(html: &mut String, images: &mut [InlineImage], first: usize) {
    // From the last, so that no new id is one still to be replaced.
    for (i, image) in images.iter_mut().enumerate().rev() {
        let old = format!("src=\"cid:{}\"", image.id);
        number_image(image, first + i);
        *html = html.replace(&old, &format!("src=\"cid:{}\"", image.id));
    }
}

/// A user a mention refers to, as the plugin knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MentionedUser {
    /// Display name.
    pub name: String,
    /// Email address, when known.
    pub email: Option<String>,
}

/// A message body in both forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// Plain text (empty for a message without text).
    pub text: String,
    /// Sanitized HTML (empty for a message without text).
    pub html: String,
    /// True when the markup could not be read and was turned into text.
    pub fallback: bool,
    /// Images the markup embeds, in document order; the HTML shows each
    /// through its `cid:` URL.
    pub images: Vec<InlineImage>,
}

/// An entity of the message's `data` (EntityJSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// `com.symphony.user.mention`.
    Mention {
        /// The user's id.
        user_id: Option<i64>,
    },
    /// `org.symphony.oss.taxonomy` with a hashtag id.
    Hashtag(String),
    /// `org.symphony.oss.taxonomy` with a ticker id.
    Cashtag(String),
    /// `com.symphony.emoji`.
    Emoji {
        /// The character(s), when given.
        unicode: Option<String>,
        /// The shortcode, when given.
        shortcode: Option<String>,
    },
    /// Any other entity: shown as its markup's text.
    Other,
}

/// Parses the `data` JSON string (a map of entity id → entity). Anything
/// unreadable yields no entities.
pub fn parse_entities(data: Option<&str>) -> HashMap<String, Entity> {
    let mut out = HashMap::new();
    let Some(data) = data.filter(|d| !d.trim().is_empty()) else {
        return out;
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(data) else {
        return out;
    };
    for (key, value) in map {
        out.insert(key, entity(&value));
    }
    out
}

/// The user ids the entities mention, in no particular order.
pub fn mentioned_users(entities: &HashMap<String, Entity>) -> Vec<i64> {
    let mut ids: Vec<i64> = entities
        .values()
        .filter_map(|e| match e {
            Entity::Mention { user_id } => *user_id,
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn entity(value: &serde_json::Value) -> Entity {
    let kind = value.get("type").and_then(|t| t.as_str()).unwrap_or("");
    let ids: Vec<(&str, String)> = value
        .get("id")
        .and_then(|i| i.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|item| {
                    Some((item.get("type")?.as_str()?, json_text(item.get("value")?)?))
                })
                .collect()
        })
        .unwrap_or_default();
    let find = |wanted: &str| {
        ids.iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(wanted))
            .map(|(_, v)| v.clone())
    };
    match kind {
        "com.symphony.user.mention" => Entity::Mention {
            user_id: find("com.symphony.user.userId").and_then(|v| v.trim().parse().ok()),
        },
        "com.symphony.emoji" => {
            let data = value.get("data");
            let field = |k: &str| {
                data.and_then(|d| d.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .filter(|s| !s.is_empty())
            };
            Entity::Emoji {
                unicode: field("unicode"),
                shortcode: field("shortcode"),
            }
        }
        _ => {
            if let Some(tag) = find("org.symphony.oss.taxonomy.hashtag") {
                Entity::Hashtag(tag)
            } else if let Some(ticker) = find("org.symphony.oss.fin.security.id.ticker") {
                Entity::Cashtag(ticker)
            } else {
                Entity::Other
            }
        }
    }
}

/// Unicode for the common emoji shortcodes, for emoji entities that carry
/// only a shortcode.
fn emoji_for_shortcode(code: &str) -> Option<&'static str> {
    Some(match code.trim_matches(':') {
        "thumbsup" | "+1" | "thumbs_up" => "👍",
        "thumbsdown" | "-1" | "thumbs_down" => "👎",
        "smile" => "😄",
        "smiley" => "😃",
        "grinning" => "😀",
        "joy" => "😂",
        "wink" => "😉",
        "blush" => "😊",
        "heart" => "❤️",
        "rocket" => "🚀",
        "warning" => "⚠️",
        "white_check_mark" => "✅",
        "x" => "❌",
        "fire" => "🔥",
        "tada" => "🎉",
        "clap" => "👏",
        "pray" => "🙏",
        "eyes" => "👀",
        "ok_hand" => "👌",
        "wave" => "👋",
        "100" => "💯",
        "thinking_face" | "thinking" => "🤔",
        "cry" => "😢",
        "star" => "⭐",
        "chart_with_upwards_trend" => "📈",
        "chart_with_downwards_trend" => "📉",
        "moneybag" => "💰",
        "heavy_check_mark" => "✔️",
        _ => return None,
    })
}

// ---- tree --------------------------------------------------------------------------------------

#[derive(Debug)]
enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_ascii_whitespace().any(|x| x == class))
    }
}

fn is_void(name: &str) -> bool {
    matches!(
        name,
        "br" | "hr"
            | "img"
            | "col"
            | "input"
            | "wbr"
            | "meta"
            | "link"
            | "area"
            | "base"
            | "source"
    )
}

fn element_from(start: &BytesStart<'_>) -> Element {
    let name = String::from_utf8_lossy(start.local_name().as_ref()).to_ascii_lowercase();
    let mut attrs = Vec::new();
    for attr in start.attributes().with_checks(false).flatten() {
        let key = String::from_utf8_lossy(attr.key.local_name().as_ref()).to_ascii_lowercase();
        let raw = String::from_utf8_lossy(&attr.value);
        attrs.push((key, decode_entities(&raw)));
    }
    Element {
        name,
        attrs,
        children: Vec::new(),
    }
}

/// Builds the tree; `None` when the tokenizer gives up.
fn parse_tree(markup: &str) -> Option<Element> {
    let mut reader = quick_xml::Reader::from_str(markup);
    {
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        config.allow_dangling_amp = true;
        config.check_comments = false;
        config.expand_empty_elements = false;
    }
    let mut stack: Vec<Element> = vec![Element::default()];
    // How many start tags were flattened away per name, so their end tags
    // do not close an ancestor.
    let mut flattened: HashMap<String, usize> = HashMap::new();
    loop {
        let event = reader.read_event().ok()?;
        match event {
            Event::Start(start) => {
                let el = element_from(&start);
                if is_void(&el.name) {
                    push_node(&mut stack, Node::Element(el));
                } else if stack.len() > MAX_DEPTH {
                    *flattened.entry(el.name).or_default() += 1;
                } else {
                    stack.push(el);
                }
            }
            Event::Empty(start) => {
                push_node(&mut stack, Node::Element(element_from(&start)));
            }
            Event::End(end) => {
                let name = String::from_utf8_lossy(end.local_name().as_ref()).to_ascii_lowercase();
                if let Some(n) = flattened.get_mut(&name).filter(|n| **n > 0) {
                    *n -= 1;
                    continue;
                }
                if let Some(i) = stack.iter().rposition(|e| e.name == name)
                    && i > 0
                {
                    while stack.len() > i {
                        close_top(&mut stack);
                    }
                }
            }
            Event::Text(text) => {
                let raw = String::from_utf8_lossy(&text);
                push_text(&mut stack, &decode_entities(&raw));
            }
            Event::GeneralRef(r) => {
                let name = String::from_utf8_lossy(&r);
                push_text(&mut stack, &decode_entities(&format!("&{name};")));
            }
            Event::CData(data) => {
                push_text(&mut stack, &String::from_utf8_lossy(&data));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    while stack.len() > 1 {
        close_top(&mut stack);
    }
    stack.pop()
}

fn push_node(stack: &mut [Element], node: Node) {
    if let Some(top) = stack.last_mut() {
        top.children.push(node);
    }
}

fn push_text(stack: &mut [Element], text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(top) = stack.last_mut() {
        if let Some(Node::Text(prev)) = top.children.last_mut() {
            prev.push_str(text);
        } else {
            top.children.push(Node::Text(text.to_string()));
        }
    }
}

fn close_top(stack: &mut Vec<Element>) {
    if let Some(el) = stack.pop() {
        push_node(stack, Node::Element(el));
    }
}

/// Decodes character references (`&#38;`, `&#x1F600;`) and the common HTML
/// named entities; anything else is kept as written.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[1..]
            .char_indices()
            .take(33)
            .find(|(_, c)| *c == ';')
            .map(|(j, _)| j + 1);
        let decoded = end.and_then(|end| named_or_numeric(&rest[1..end]).map(|c| (c, end)));
        match decoded {
            Some((text, end)) => {
                out.push_str(&text);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn named_or_numeric(name: &str) -> Option<String> {
    if let Some(num) = name.strip_prefix('#') {
        let code = if let Some(hex) = num.strip_prefix(['x', 'X']) {
            u32::from_str_radix(hex, 16).ok()?
        } else {
            num.parse::<u32>().ok()?
        };
        return char::from_u32(code)
            .filter(|c| *c != '\0')
            .map(String::from);
    }
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "sect" => '§',
        "para" => '¶',
        "deg" => '°',
        "plusmn" => '±',
        "times" => '×',
        "divide" => '÷',
        "shy" => '\u{ad}',
        "zwj" => '\u{200d}',
        "zwnj" => '\u{200c}',
        _ => return None,
    };
    Some(c.to_string())
}

// ---- rendering ---------------------------------------------------------------------------------

/// Elements dropped with their content.
fn is_dropped(name: &str) -> bool {
    matches!(
        name,
        "script"
            | "style"
            | "head"
            | "title"
            | "template"
            | "noscript"
            | "iframe"
            | "frame"
            | "frameset"
            | "object"
            | "embed"
            | "applet"
            | "svg"
            | "math"
            | "canvas"
            | "video"
            | "audio"
            | "select"
            | "textarea"
            | "button"
            | "input"
            | "img"
            | "meta"
            | "link"
            | "base"
    )
}

/// Elements that start and end a line in the text.
fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "li"
            | "ul"
            | "ol"
            | "dl"
            | "dt"
            | "dd"
            | "pre"
            | "table"
            | "tr"
            | "caption"
            | "blockquote"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "hr"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "form"
            | "card"
            | "expandable-card"
    )
}

/// Elements kept in the HTML (without any of their source attributes but
/// those [`safe_attrs`] allows).
fn is_allowed(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "span"
            | "br"
            | "hr"
            | "b"
            | "strong"
            | "i"
            | "em"
            | "u"
            | "s"
            | "strike"
            | "del"
            | "ins"
            | "sub"
            | "sup"
            | "small"
            | "mark"
            | "code"
            | "pre"
            | "kbd"
            | "samp"
            | "blockquote"
            | "q"
            | "ul"
            | "ol"
            | "li"
            | "dl"
            | "dt"
            | "dd"
            | "table"
            | "thead"
            | "tbody"
            | "tfoot"
            | "tr"
            | "th"
            | "td"
            | "caption"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "a"
    )
}

/// A link target when it is an absolute `http`, `https` or `mailto` URL.
pub fn safe_href(href: &str) -> Option<String> {
    let cleaned: String = href
        .trim()
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect();
    let (scheme, rest) = cleaned.split_once(':')?;
    let scheme = scheme.to_ascii_lowercase();
    let ok = match scheme.as_str() {
        "http" | "https" => rest.starts_with("//") && rest.len() > 2,
        "mailto" => !rest.is_empty(),
        _ => false,
    };
    ok.then(|| format!("{scheme}:{rest}"))
}

fn digits(v: &str, max: u32) -> Option<String> {
    let v = v.trim();
    let n: u32 = v.parse().ok()?;
    (v.bytes().all(|b| b.is_ascii_digit()) && (1..=max).contains(&n)).then(|| n.to_string())
}

fn safe_attrs(el: &Element) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match el.name.as_str() {
        "td" | "th" => {
            for key in ["colspan", "rowspan"] {
                if let Some(v) = el.attr(key).and_then(|v| digits(v, 1000)) {
                    out.push((key, v));
                }
            }
        }
        "ol" => {
            if let Some(v) = el.attr("start").and_then(|v| digits(v, 1_000_000)) {
                out.push(("start", v));
            }
        }
        _ => {}
    }
    out
}

/// Escapes text for HTML content and attribute values.
pub fn escape_html(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

/// What an entity or entity-like element shows.
enum Shown {
    Mention { name: String, email: Option<String> },
    Hashtag(String),
    Cashtag(String),
    Emoji(String),
}

struct Renderer<'a> {
    entities: &'a HashMap<String, Entity>,
    users: &'a dyn Fn(i64) -> Option<MentionedUser>,
    /// Embedded images met while writing the HTML.
    images: RefCell<Vec<InlineImage>>,
}

/// Text collected with the block rule: at most one line break in a row,
/// none at the start.
#[derive(Default)]
struct TextOut {
    s: String,
}

impl TextOut {
    fn push(&mut self, t: &str) {
        self.s.push_str(t);
    }

    fn line_break(&mut self) {
        if !self.s.is_empty() && !self.s.ends_with('\n') {
            self.s.push('\n');
        }
    }
}

fn inner_text_of(el: &Element) -> String {
    let mut s = String::new();
    fn walk(el: &Element, s: &mut String) {
        for c in &el.children {
            match c {
                Node::Text(t) => s.push_str(t),
                Node::Element(e) if !is_dropped(&e.name) => walk(e, s),
                Node::Element(_) => {}
            }
        }
    }
    walk(el, &mut s);
    s
}

impl Renderer<'_> {
    /// What an element shows when it is an entity (`<span class="entity"
    /// data-entity-id>`) or a MessageML shorthand (`<mention>`, `<hash>`,
    /// `<cash>`, `<emoji>`).
    fn shown(&self, el: &Element) -> Option<Shown> {
        let inner = || inner_text_of(el);
        let mention = |user_id: Option<i64>, email: Option<String>, fallback: String| {
            let user = user_id.and_then(|id| (self.users)(id));
            let name = match (&user, fallback.trim().trim_start_matches('@')) {
                (Some(u), _) if !u.name.trim().is_empty() => u.name.clone(),
                (_, f) if !f.is_empty() => f.to_string(),
                _ => user_id.map(|id| id.to_string()).unwrap_or_default(),
            };
            let email = user.and_then(|u| u.email).or(email);
            Shown::Mention { name, email }
        };
        match el.name.as_str() {
            "mention" => {
                return Some(mention(
                    el.attr("uid").and_then(|v| v.trim().parse().ok()),
                    el.attr("email").map(str::to_string),
                    inner(),
                ));
            }
            "hash" => return el.attr("tag").map(|t| Shown::Hashtag(t.to_string())),
            "cash" => return el.attr("tag").map(|t| Shown::Cashtag(t.to_string())),
            "emoji" => {
                let code = el.attr("shortcode").unwrap_or_default();
                let text = emoji_for_shortcode(code)
                    .map(str::to_string)
                    .or_else(|| Some(inner()).filter(|t| !t.trim().is_empty()))
                    .unwrap_or_else(|| format!(":{code}:"));
                return Some(Shown::Emoji(text));
            }
            _ => {}
        }
        if !el.has_class("entity") {
            return None;
        }
        let entity = self.entities.get(el.attr("data-entity-id")?)?;
        Some(match entity {
            Entity::Mention { user_id } => mention(*user_id, None, inner()),
            Entity::Hashtag(tag) => Shown::Hashtag(tag.trim_start_matches('#').to_string()),
            Entity::Cashtag(tick) => Shown::Cashtag(tick.trim_start_matches('$').to_string()),
            Entity::Emoji { unicode, shortcode } => {
                let text = unicode
                    .clone()
                    .or_else(|| {
                        shortcode
                            .as_deref()
                            .and_then(emoji_for_shortcode)
                            .map(str::to_string)
                    })
                    .or_else(|| Some(inner()).filter(|t| !t.trim().is_empty()))
                    .unwrap_or_else(|| format!(":{}:", shortcode.as_deref().unwrap_or("emoji")));
                Shown::Emoji(text)
            }
            Entity::Other => return None,
        })
    }

    fn text(&self, el: &Element, out: &mut TextOut, in_pre: bool) {
        for child in &el.children {
            match child {
                Node::Text(t) => {
                    if in_pre || !(t.contains('\n') && t.trim().is_empty()) {
                        out.push(t);
                    }
                }
                Node::Element(e) => self.text_element(e, out, in_pre),
            }
        }
    }

    fn text_element(&self, el: &Element, out: &mut TextOut, in_pre: bool) {
        let name = el.name.as_str();
        if is_dropped(name) {
            return;
        }
        if let Some(shown) = self.shown(el) {
            match shown {
                Shown::Mention { name, email } => {
                    out.push("@");
                    out.push(&name);
                    if let Some(email) = email {
                        out.push(" <");
                        out.push(&email);
                        out.push(">");
                    }
                }
                Shown::Hashtag(t) => {
                    out.push("#");
                    out.push(&t);
                }
                Shown::Cashtag(t) => {
                    out.push("$");
                    out.push(&t);
                }
                Shown::Emoji(e) => out.push(&e),
            }
            return;
        }
        match name {
            "br" => out.push("\n"),
            "a" => {
                let mut label = TextOut::default();
                self.text(el, &mut label, in_pre);
                let label = label.s.trim().to_string();
                match el.attr("href").and_then(safe_href) {
                    Some(url) => {
                        let bare = url.strip_prefix("mailto:").unwrap_or(&url);
                        if label.is_empty() {
                            out.push(bare);
                        } else if label == url || label == bare {
                            out.push(&label);
                        } else {
                            out.push(&label);
                            out.push(" <");
                            out.push(bare);
                            out.push(">");
                        }
                    }
                    None => out.push(&label),
                }
            }
            "tr" => {
                out.line_break();
                let mut cells = Vec::new();
                for child in &el.children {
                    if let Node::Element(cell) = child
                        && matches!(cell.name.as_str(), "td" | "th")
                    {
                        let mut c = TextOut::default();
                        self.text(cell, &mut c, in_pre);
                        let one_line = c.s.split_whitespace().collect::<Vec<_>>().join(" ");
                        cells.push(one_line);
                    }
                }
                out.push(&cells.join(" | "));
                out.line_break();
            }
            _ if is_block(name) => {
                out.line_break();
                self.text(el, out, in_pre || name == "pre");
                out.line_break();
            }
            _ => self.text(el, out, in_pre),
        }
    }

    fn html(&self, el: &Element, out: &mut String) {
        for child in &el.children {
            match child {
                Node::Text(t) => escape_html(t, out),
                Node::Element(e) => self.html_element(e, out),
            }
        }
    }

    fn html_element(&self, el: &Element, out: &mut String) {
        let name = el.name.as_str();
        if name == "img"
            && let Some((media_type, bytes)) = el.attr("src").and_then(decode_image_url)
        {
            let mut images = self.images.borrow_mut();
            let mut image = InlineImage {
                id: String::new(),
                file_name: String::new(),
                media_type,
                bytes,
            };
            number_image(&mut image, images.len() + 1);
            out.push_str("<img src=\"cid:");
            out.push_str(&image.id);
            out.push('"');
            if let Some(alt) = el.attr("alt") {
                out.push_str(" alt=\"");
                escape_html(alt, out);
                out.push('"');
            }
            out.push('>');
            images.push(image);
            return;
        }
        if is_dropped(name) {
            return;
        }
        if let Some(shown) = self.shown(el) {
            match shown {
                Shown::Mention { name, email } => match email {
                    Some(email) => {
                        out.push_str("<a href=\"mailto:");
                        escape_html(&email, out);
                        out.push_str("\">@");
                        escape_html(&name, out);
                        out.push_str("</a>");
                    }
                    None => {
                        out.push_str("<b>@");
                        escape_html(&name, out);
                        out.push_str("</b>");
                    }
                },
                Shown::Hashtag(t) => {
                    out.push_str("<b>#");
                    escape_html(&t, out);
                    out.push_str("</b>");
                }
                Shown::Cashtag(t) => {
                    out.push_str("<b>$");
                    escape_html(&t, out);
                    out.push_str("</b>");
                }
                Shown::Emoji(e) => escape_html(&e, out),
            }
            return;
        }
        if !is_allowed(name) {
            self.html(el, out);
            return;
        }
        if name == "a" {
            match el.attr("href").and_then(safe_href) {
                Some(url) => {
                    out.push_str("<a href=\"");
                    escape_html(&url, out);
                    out.push_str("\" rel=\"noopener noreferrer\">");
                    self.html(el, out);
                    out.push_str("</a>");
                }
                None => self.html(el, out),
            }
            return;
        }
        out.push('<');
        out.push_str(name);
        for (key, value) in safe_attrs(el) {
            out.push(' ');
            out.push_str(key);
            out.push_str("=\"");
            escape_html(&value, out);
            out.push('"');
        }
        if matches!(name, "br" | "hr") {
            out.push('>');
            return;
        }
        out.push('>');
        self.html(el, out);
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
}

/// Strips tags (anything from `<` followed by a letter, `/`, `!` or `?` up
/// to the next `>`) and decodes entities.
pub fn strip_tags(markup: &str) -> String {
    let mut out = String::with_capacity(markup.len());
    let mut chars = markup.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = markup[i + c.len_utf8()..].chars().next();
        if c == '<' && next.is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?'))
        {
            let mut tag = String::new();
            for (_, c) in chars.by_ref() {
                if c == '>' {
                    break;
                }
                tag.push(c);
            }
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            if name == "br" || is_block(&name) {
                out.push('\n');
            }
        } else {
            out.push(c);
        }
    }
    decode_entities(&out)
}

fn text_to_html(text: &str) -> String {
    let mut html = String::from("<div>");
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            html.push_str("<br>");
        }
        escape_html(line, &mut html);
    }
    html.push_str("</div>");
    html
}

fn finish_text(s: &str) -> String {
    s.trim_matches(|c: char| c == '\n' || c == '\r').to_string()
}

/// Converts a message's PresentationML (`message`) and EntityJSON (`data`)
/// into text and sanitized HTML; `users` looks up mentioned users.
pub fn render(
    message: &str,
    entities: &HashMap<String, Entity>,
    users: &dyn Fn(i64) -> Option<MentionedUser>,
) -> Rendered {
    let trimmed = message.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Rendered::default();
    }
    if !trimmed.starts_with('<') {
        let text = finish_text(&decode_entities(trimmed));
        return Rendered {
            html: text_to_html(&text),
            text,
            fallback: false,
            images: Vec::new(),
        };
    }
    let Some(tree) = parse_tree(trimmed) else {
        let text = finish_text(strip_tags(trimmed).trim());
        return Rendered {
            html: if text.is_empty() {
                String::new()
            } else {
                text_to_html(&text)
            },
            text,
            fallback: true,
            images: Vec::new(),
        };
    };
    let renderer = Renderer {
        entities,
        users,
        images: RefCell::new(Vec::new()),
    };
    let mut text = TextOut::default();
    renderer.text(&tree, &mut text, false);
    let text = finish_text(&text.s);
    let mut html = String::with_capacity(trimmed.len());
    renderer.html(&tree, &mut html);
    let images = renderer.images.into_inner();
    // A message whose markup holds no text at all (attachment-only).
    if text.trim().is_empty() && images.is_empty() && !html.contains("<hr") && !html.contains("<td")
    {
        return Rendered::default();
    }
    Rendered {
        text,
        html,
        fallback: false,
        images,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(id: i64) -> Option<MentionedUser> {
        match id {
            42 => Some(MentionedUser {
                name: "Zoë Müller".into(),
                email: Some("zoe.muller@acme.example".into()),
            }),
            43 => Some(MentionedUser {
                name: "Wei Zhang".into(),
                email: None,
            }),
            _ => None,
        }
    }

    fn pml(body: &str) -> String {
        format!(
            r#"<div data-format="PresentationML" data-version="2.0" class="wysiwyg">{body}</div>"#
        )
    }

    fn go(body: &str, data: &str) -> Rendered {
        render(&pml(body), &parse_entities(Some(data)), &users)
    }

    #[test]
    fn mentions_hashtags_cashtags_emoji() {
        let data = r#"{
            "0": {"id": [{"type": "com.symphony.user.userId", "value": "42"}], "type": "com.symphony.user.mention", "version": "1.0"},
            "1": {"id": [{"type": "org.symphony.oss.taxonomy.hashtag", "value": "rates"}], "type": "org.symphony.oss.taxonomy", "version": "1.0"},
            "2": {"id": [{"type": "org.symphony.oss.fin.security.id.ticker", "value": "AAPL"}], "type": "org.symphony.oss.taxonomy", "version": "1.0"},
            "3": {"type": "com.symphony.emoji", "version": "1.0", "data": {"shortcode": "thumbsup", "annotation": "thumbsup", "unicode": "👍", "size": "normal"}},
            "4": {"id": [{"type": "com.symphony.user.userId", "value": 43}], "type": "com.symphony.user.mention"},
            "5": {"id": [{"type": "com.symphony.user.userId", "value": "99"}], "type": "com.symphony.user.mention"},
            "6": {"type": "com.symphony.emoji", "data": {"shortcode": "rocket"}}
        }"#;
        let r = go(
            r#"<p>Hi <span class="entity" data-entity-id="0">@Zoë Müller</span> &amp; <span class="entity" data-entity-id="4">@Wei Zhang</span> and <span class="entity" data-entity-id="5">@Ghost User</span>: <span class="entity" data-entity-id="1">#rates</span> <span class="entity" data-entity-id="2">$AAPL</span> <span class="entity" data-entity-id="3">👍</span><span class="entity" data-entity-id="6">:rocket:</span></p>"#,
            data,
        );
        assert_eq!(
            r.text,
            "Hi @Zoë Müller <zoe.muller@acme.example> & @Wei Zhang and @Ghost User: #rates $AAPL 👍🚀"
        );
        assert!(
            r.html
                .contains(r#"<a href="mailto:zoe.muller@acme.example">@Zoë Müller</a>"#),
            "{}",
            r.html
        );
        assert!(r.html.contains("<b>@Wei Zhang</b>"));
        assert!(r.html.contains("<b>#rates</b>") && r.html.contains("<b>$AAPL</b>"));
        assert!(!r.fallback);
        let mut ids = mentioned_users(&parse_entities(Some(data)));
        ids.sort();
        assert_eq!(ids, [42, 43, 99]);
    }

    #[test]
    fn messageml_shorthands() {
        let r = render(
            r#"<div><mention uid="42"/> <mention email="x@y.example">Xavier</mention> <hash tag="q3"/> <cash tag="MSFT"/> <emoji shortcode="smile"/></div>"#,
            &HashMap::new(),
            &users,
        );
        assert_eq!(
            r.text,
            "@Zoë Müller <zoe.muller@acme.example> @Xavier <x@y.example> #q3 $MSFT 😄"
        );
    }

    #[test]
    fn tables_lists_and_blocks() {
        let r = go(
            "<p>Positions:</p><table><thead><tr><th>Ticker</th><th>Qty</th></tr></thead><tbody><tr><td>AAPL</td><td>-120</td></tr><tr><td><b>BRK.B</b></td><td colspan=\"2\" onclick=\"x()\">5</td></tr></tbody></table><p>Agenda:</p><ul><li>One</li><li>Two</li></ul><p>a<br/>b</p>",
            "{}",
        );
        assert_eq!(
            r.text,
            "Positions:\nTicker | Qty\nAAPL | -120\nBRK.B | 5\nAgenda:\nOne\nTwo\na\nb"
        );
        assert!(
            r.html.contains("<table><thead><tr><th>Ticker</th>"),
            "{}",
            r.html
        );
        assert!(r.html.contains(r#"<td colspan="2">5</td>"#));
        assert!(!r.html.contains("onclick"));
        assert!(r.html.contains("<ul><li>One</li><li>Two</li></ul>"));
        assert!(r.html.contains("a<br>b"));
    }

    #[test]
    fn code_is_kept_verbatim() {
        let r = go(
            "<p>Run <code>SELECT * FROM t WHERE a &gt; 1 &amp;&amp; b &lt; 2;</code> then:</p><pre>fn main() {\n    println!(\"&lt;hello&gt; &amp; bye\");\n}</pre>",
            "",
        );
        assert_eq!(
            r.text,
            "Run SELECT * FROM t WHERE a > 1 && b < 2; then:\nfn main() {\n    println!(\"<hello> & bye\");\n}"
        );
        assert!(
            r.html
                .contains("<code>SELECT * FROM t WHERE a &gt; 1 &amp;&amp; b &lt; 2;</code>")
        );
        assert!(r.html.contains(
            "<pre>fn main() {\n    println!(&quot;&lt;hello&gt; &amp; bye&quot;);\n}</pre>"
        ));
    }

    #[test]
    fn links() {
        let r = go(
            r#"<p>See <a href="https://www.example.com/research/note?id=42&amp;lang=en">https://www.example.com/research/note?id=42&amp;lang=en</a> or <a href="https://x.example/a">the note</a> or <a href="mailto:ops@acme.example">ops@acme.example</a>, <a href="javascript:alert(1)">click</a>, <a href=" JaVaScRiPt:alert(1)">again</a>, <a href="HTTPS://Y.example">Y</a>.</p>"#,
            "{}",
        );
        assert_eq!(
            r.text,
            "See https://www.example.com/research/note?id=42&lang=en or the note <https://x.example/a> or ops@acme.example, click, again, Y <https://Y.example>."
        );
        assert!(r.html.contains(r#"<a href="https://www.example.com/research/note?id=42&amp;lang=en" rel="noopener noreferrer">"#), "{}", r.html);
        assert!(r.html.contains(r#"<a href="mailto:ops@acme.example""#));
        assert!(
            !r.html.to_ascii_lowercase().contains("javascript"),
            "{}",
            r.html
        );
        assert!(r.html.contains("click"));
    }

    #[test]
    fn script_injection_is_neutralized() {
        let r = go(
            r#"<p onmouseover="steal()" style="color:red">Hello<script>alert('x')</script><style>p{}</style><img src="https://evil.example/pixel.gif" onerror="alert(1)"/><iframe src="https://evil.example"></iframe><svg onload="x()"><text>svg</text></svg></p><form action="https://evil.example"><input value="v"/><button>Go</button>label</form><a href="data:text/html;base64,PHNjcmlwdD4=">data</a><a href="vbscript:x">vb</a><object data="x.swf"></object>&lt;script&gt;alert(2)&lt;/script&gt;"#,
            "{}",
        );
        let lower = r.html.to_ascii_lowercase();
        for bad in [
            "<script",
            "onmouseover",
            "onerror",
            "onload",
            "style=",
            "<img",
            "<iframe",
            "<svg",
            "<form",
            "<input",
            "<button",
            "javascript",
            "data:",
            "vbscript",
            "<object",
            "evil",
        ] {
            assert!(!lower.contains(bad), "{bad} in {}", r.html);
        }
        assert!(r.html.contains("&lt;script&gt;alert(2)&lt;/script&gt;"));
        assert_eq!(r.text, "Hello\nlabel\ndatavb<script>alert(2)</script>");
    }

    #[test]
    fn malformed_markup_falls_back_or_recovers_without_panicking() {
        let recovered = go("<p>open <b>bold <i>both</p> after</b></u> tail", "{}");
        assert_eq!(recovered.text, "open bold both\n after tail");
        assert!(!recovered.fallback);
        for bad in [
            "<div data-format=\"PresentationML\"><p>unclosed",
            "<div><p a=\"x>broken</p>",
            "<div>1 < 2 and 3 > 2</div>",
            "<div><<<>>></div>",
            "<div>&amp &bogus; &#xZZ; &#0; &#1114112;</div>",
            "<",
            "<div",
            "</div>",
            "<!-- only a comment",
            "<div><![CDATA[ raw <b> ]]></div>",
            "<div>\u{0}\u{1}</div>",
            "<?xml version=\"1.0\"?><div>x</div>",
        ] {
            let r = render(bad, &HashMap::new(), &users);
            assert!(!r.html.to_ascii_lowercase().contains("<script"), "{bad}");
            let _ = (r.text, r.fallback);
        }
        let r = render("<div>1 < 2 and 3 > 2</div>", &HashMap::new(), &users);
        assert!(r.text.contains('2'), "{:?}", r.text);
        let r = render("<div>&amp &bogus; &#xZZ;</div>", &HashMap::new(), &users);
        assert_eq!(r.text, "&amp &bogus; &#xZZ;");
        let r = render("<div><![CDATA[ raw <b> ]]></div>", &HashMap::new(), &users);
        assert_eq!(r.text, " raw <b> ");
        // Entities JSON that is not JSON, or not an object, is ignored.
        assert!(parse_entities(Some("not json")).is_empty());
        assert!(parse_entities(Some("[1,2]")).is_empty());
        let r = render(
            &pml(r#"<span class="entity" data-entity-id="9">@Someone</span>"#),
            &parse_entities(Some("{\"9\": 5}")),
            &users,
        );
        assert_eq!(r.text, "@Someone");
    }

    #[test]
    fn deep_nesting_is_flattened() {
        let mut m = String::new();
        for _ in 0..5000 {
            m.push_str("<span><b>");
        }
        m.push_str("deep");
        for _ in 0..5000 {
            m.push_str("</b></span>");
        }
        let r = render(&pml(&m), &HashMap::new(), &users);
        assert_eq!(r.text, "deep");
    }

    #[test]
    fn sixty_thousand_characters() {
        let mut long: String = "Grüße 日本 ".chars().cycle().take(59_999).collect();
        long.push('.');
        let mut escaped = String::new();
        escape_html(&long, &mut escaped);
        let r = go(&format!("<p>{escaped}</p>"), "{}");
        assert_eq!(r.text.chars().count(), 60_000);
        assert_eq!(r.text, long);
        assert!(r.html.len() > 60_000);
    }

    #[test]
    fn plain_and_empty_messages() {
        let r = render("just text &amp; more", &HashMap::new(), &users);
        assert_eq!(r.text, "just text & more");
        assert_eq!(r.html, "<div>just text &amp; more</div>");
        let r = render(&pml(""), &HashMap::new(), &users);
        assert_eq!((r.text.as_str(), r.html.as_str()), ("", ""));
        let r = render("", &HashMap::new(), &users);
        assert_eq!(r.text, "");
    }

    #[test]
    fn unicode_specials_and_whitespace() {
        let r = go(
            "<p>Use &lt;b&gt;tags&lt;/b&gt; &amp; &quot;quotes&quot; literally: a&lt;b &amp;&amp; c&gt;d</p><p>Zero-width joiner\u{200d}here and no-break\u{a0}space &nbsp;x</p>\n  <ul>\n    <li>Combining: e\u{301}</li>\n  </ul>",
            "{}",
        );
        assert_eq!(
            r.text,
            "Use <b>tags</b> & \"quotes\" literally: a<b && c>d\nZero-width joiner\u{200d}here and no-break\u{a0}space \u{a0}x\nCombining: e\u{301}"
        );
        assert!(
            r.html
                .contains("Use &lt;b&gt;tags&lt;/b&gt; &amp; &quot;quotes&quot;")
        );
    }

    #[test]
    fn hrefs() {
        assert_eq!(
            safe_href(" https://a.example/x "),
            Some("https://a.example/x".into())
        );
        assert_eq!(safe_href("HTTP://a"), Some("http://a".into()));
        assert_eq!(safe_href("mailto:a@b"), Some("mailto:a@b".into()));
        assert_eq!(safe_href("java\nscript:alert(1)"), None);
        assert_eq!(safe_href("/relative"), None);
        assert_eq!(safe_href("https:"), None);
        assert_eq!(safe_href("ftp://x"), None);
    }

    #[test]
    fn strip_tags_fallback() {
        assert_eq!(
            strip_tags("<p>a</p><p>b &amp; c</p>x<br/>y 1 < 2 <b>z</b>"),
            "\na\n\nb & c\nx\ny 1 < 2 z"
        );
    }

    #[test]
    fn tags_are_stripped_from_markup_with_non_ascii_text() {
        // Found by the presentation fuzz target: stripping tags sliced the
        // markup inside a multi-byte character and panicked.
        assert_eq!(strip_tags("plain é<b>x</b> ü"), "plain éx ü");
    }

    #[test]
    fn embedded_data_url_images_are_shown_by_cid_and_remote_ones_dropped() {
        let r = go(
            r#"<p>Chart:</p><img src="data:image/svg+xml;base64,PHN2Zy8+" alt="a &lt;b&gt;"/><img src="https://evil.example/p.gif"/><img src="data:text/html;base64,PHA+"/><img src="DATA:Image/PNG;charset=x;base64, AAEC "/><img src="data:image/png;base64,@@"/>"#,
            "{}",
        );
        assert_eq!(r.text, "Chart:");
        assert_eq!(
            r.html,
            r#"<div><p>Chart:</p><img src="cid:image-1@inline.symphony" alt="a &lt;b&gt;"><img src="cid:image-2@inline.symphony"></div>"#
        );
        let got: Vec<(&str, &str, &str, &[u8])> = r
            .images
            .iter()
            .map(|i| {
                (
                    i.id.as_str(),
                    i.file_name.as_str(),
                    i.media_type.as_str(),
                    i.bytes.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "image-1@inline.symphony",
                    "image-1.svg",
                    "image/svg+xml",
                    b"<svg/>".as_slice()
                ),
                (
                    "image-2@inline.symphony",
                    "image-2.png",
                    "image/png",
                    [0u8, 1, 2].as_slice()
                ),
            ]
        );
        // An image alone is a body; one too large is dropped like a remote one.
        let alone = go(r#"<img src="data:image/gif;base64,R0lG"/>"#, "{}");
        assert_eq!((alone.text.as_str(), alone.images.len()), ("", 1));
        let big =
            base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_INLINE_IMAGE_BYTES + 1]);
        let too_big = go(
            &format!(r#"<p>x</p><img src="data:image/png;base64,{big}"/>"#),
            "{}",
        );
        assert!(too_big.images.is_empty() && !too_big.html.contains("<img"));
    }
}
