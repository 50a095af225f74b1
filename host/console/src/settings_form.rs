//! A settings form made from a JSON Schema that a plugin ships: one field
//! per property, in the schema's order, typed by the property's `type`,
//! `enum`, `format`, `minimum` and `maximum`; and the form's answers read
//! back into the JSON object the plugin takes. The plugin's own
//! `validate-config` remains the judge of the result; the schema only
//! shapes the form and catches what a form can (a missing required value,
//! a number out of range).
//!
//! Understood: an object of `string` (with `format: uri`), `integer`,
//! `number`, `boolean`, `enum` (of any JSON values), arrays of strings and
//! arrays of an `enum`. Any other property is edited as JSON text.

use std::collections::BTreeMap;
use std::fmt;

use maud::{Markup, html};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Why a settings schema cannot make a form.
#[derive(Debug, thiserror::Error)]
#[error(
    "the plugin's settings schema cannot make a form: {0}; fix the schema file its manifest names (settings-schema)"
)]
pub struct SchemaError(String);

/// A plugin's settings form.
#[derive(Debug, Clone)]
pub struct SettingsForm {
    fields: Vec<Field>,
}

/// What the form's answers lack or get wrong, by property name.
pub type FormProblems = BTreeMap<String, String>;

#[derive(Debug, Clone)]
struct Field {
    name: String,
    title: String,
    description: Option<String>,
    required: bool,
    default: Option<Value>,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Text { uri: bool },
    Integer { min: Option<f64>, max: Option<f64> },
    Number { min: Option<f64>, max: Option<f64> },
    Boolean,
    Choice(Vec<Value>),
    Choices(Vec<Value>),
    Lines,
    Json,
}

#[derive(Deserialize)]
struct Root {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    properties: Properties,
    #[serde(default)]
    required: Vec<String>,
}

#[derive(Deserialize, Default)]
struct Property {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<Value>,
    #[serde(default, rename = "enum")]
    choices: Option<Vec<Value>>,
    #[serde(default)]
    default: Option<Value>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    minimum: Option<f64>,
    #[serde(default)]
    maximum: Option<f64>,
    #[serde(default)]
    items: Option<Box<Property>>,
}

/// The properties in the order the schema lists them (a JSON object's
/// order, which a map would lose).
#[derive(Default)]
struct Properties(Vec<(String, Property)>);

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Properties, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Properties;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of property schemas")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Properties, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Property>()? {
                    out.push(entry);
                }
                Ok(Properties(out))
            }
        }
        d.deserialize_map(InOrder)
    }
}

impl Property {
    fn type_is(&self, name: &str) -> bool {
        match &self.kind {
            Some(Value::String(t)) => t == name,
            Some(Value::Array(ts)) => ts.iter().any(|t| t == name),
            _ => false,
        }
    }

    fn kind(&self) -> Kind {
        if let Some(choices) = &self.choices {
            return Kind::Choice(choices.clone());
        }
        if self.type_is("boolean") {
            Kind::Boolean
        } else if self.type_is("integer") {
            Kind::Integer {
                min: self.minimum,
                max: self.maximum,
            }
        } else if self.type_is("number") {
            Kind::Number {
                min: self.minimum,
                max: self.maximum,
            }
        } else if self.type_is("string") {
            Kind::Text {
                uri: matches!(self.format.as_deref(), Some("uri" | "url")),
            }
        } else if self.type_is("array") {
            match self.items.as_deref() {
                Some(Property {
                    choices: Some(c), ..
                }) => Kind::Choices(c.clone()),
                Some(items) if items.type_is("string") => Kind::Lines,
                _ => Kind::Json,
            }
        } else {
            Kind::Json
        }
    }
}

/// A value as a person reads and types it: strings bare, the rest as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn input_name(field: &str) -> String {
    format!("setting-{field}")
}

/// The answers a posted form gives for `field`, as typed.
fn answers_of<'a>(form: &'a [(String, String)], field: &str) -> Vec<&'a str> {
    let name = input_name(field);
    form.iter()
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// What a field shows: its saved value (`None`: not set), or the answers
/// just posted for it.
enum Shown<'a> {
    Saved(Option<&'a Value>),
    Typed(Vec<&'a str>),
}

impl SettingsForm {
    /// The form of the schema `text`.
    pub fn parse(text: &str) -> Result<SettingsForm, SchemaError> {
        let root: Root = serde_json::from_str(text).map_err(|e| SchemaError(e.to_string()))?;
        if root.kind.as_deref() != Some("object") {
            return Err(SchemaError(
                "its root is not of \"type\": \"object\"".into(),
            ));
        }
        let fields = root
            .properties
            .0
            .into_iter()
            .map(|(name, p)| Field {
                title: p.title.clone().unwrap_or_else(|| name.clone()),
                description: p.description.clone(),
                required: root.required.contains(&name),
                default: p.default.clone(),
                kind: p.kind(),
                name,
            })
            .collect();
        Ok(SettingsForm { fields })
    }

    /// The fields, filled with `values` (a configuration as the plugin
    /// takes it), with each problem beside its field.
    pub fn render(&self, values: &Map<String, Value>, problems: &FormProblems) -> Markup {
        self.render_shown(problems, |f| Shown::Saved(values.get(&f.name)))
    }

    /// The form again as it was posted (`form`, which [`SettingsForm::read`]
    /// refused with `problems`): each field shows what was typed into it,
    /// so that only what is wrong needs typing again.
    pub fn render_typed(&self, form: &[(String, String)], problems: &FormProblems) -> Markup {
        self.render_shown(problems, |f| Shown::Typed(answers_of(form, &f.name)))
    }

    fn render_shown<'a>(
        &'a self,
        problems: &FormProblems,
        show: impl Fn(&'a Field) -> Shown<'a>,
    ) -> Markup {
        html! {
            @for f in &self.fields {
                @let current = show(f);
                @let name = input_name(&f.name);
                div.field {
                    label for=(name) {
                        (f.title)
                        @if f.required { " " abbr title="required" { "*" } }
                    }
                    @if let Some(d) = &f.description { p.hint { (d) } }
                    (f.input(&name, current))
                    @if let Some(problem) = problems.get(&f.name) {
                        p.problem role="alert" { (problem) }
                    }
                }
            }
        }
    }

    /// The configuration the answers `form` give (the fields of a posted
    /// form, in order; other fields are ignored), or what is wrong with
    /// them. A field left empty, or a switch left at its default, is left
    /// out, so that the plugin's own default applies.
    pub fn read(&self, form: &[(String, String)]) -> Result<Map<String, Value>, FormProblems> {
        let mut config = Map::new();
        let mut problems = FormProblems::new();
        for f in &self.fields {
            let answers: Vec<&str> = answers_of(form, &f.name)
                .into_iter()
                .map(str::trim)
                .collect();
            match f.value(&answers) {
                Ok(Some(v)) => {
                    config.insert(f.name.clone(), v);
                }
                Ok(None) if f.required => {
                    problems.insert(f.name.clone(), format!("Fill in {}.", f.title));
                }
                Ok(None) => {}
                Err(problem) => {
                    problems.insert(f.name.clone(), problem);
                }
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// Whether the schema has a property `name`.
    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.name == name)
    }
}

impl Field {
    fn input(&self, name: &str, current: Shown<'_>) -> Markup {
        let placeholder = self.default.as_ref().map(shown);
        let text = match &current {
            Shown::Saved(Some(Value::Array(items))) if matches!(self.kind, Kind::Lines) => {
                items.iter().map(shown).collect::<Vec<_>>().join("\n")
            }
            Shown::Saved(Some(v)) if matches!(self.kind, Kind::Json) => v.to_string(),
            Shown::Saved(v) => v.map(shown).unwrap_or_default(),
            Shown::Typed(answers) => answers.first().copied().unwrap_or("").to_string(),
        };
        // Whether choice `i` (value `v`) is picked.
        let picked = |i: usize, v: &Value| match &current {
            Shown::Saved(Some(Value::Array(items))) => items.contains(v),
            Shown::Saved(Some(c)) => *c == v,
            Shown::Saved(None) => {
                matches!(&self.default, Some(Value::Array(d)) if d.contains(v))
            }
            Shown::Typed(answers) => answers.contains(&i.to_string().as_str()),
        };
        let unset = match &current {
            Shown::Saved(c) => c.is_none(),
            Shown::Typed(answers) => answers.first().is_none_or(|a| a.is_empty()),
        };
        match &self.kind {
            Kind::Text { uri } => html! {
                input id=(name) name=(name) type=(if *uri { "url" } else { "text" })
                    value=(text) placeholder=[placeholder] required[self.required];
            },
            Kind::Integer { min, max } | Kind::Number { min, max } => html! {
                input id=(name) name=(name) type="number"
                    step=(if matches!(self.kind, Kind::Integer { .. }) { "1" } else { "any" })
                    min=[min] max=[max] value=(text) placeholder=[placeholder];
            },
            Kind::Boolean => {
                let checked = match &current {
                    Shown::Saved(c) => c
                        .or(self.default.as_ref())
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    Shown::Typed(answers) => answers.contains(&"true"),
                };
                html! { input id=(name) name=(name) type="checkbox" value="true" checked[checked]; }
            }
            Kind::Choice(choices) => html! {
                select id=(name) name=(name) {
                    @if !self.required {
                        option value="" selected[unset] {
                            @match &placeholder { Some(d) => { "(default: " (d) ")" }, None => "(not set)" }
                        }
                    }
                    @for (i, c) in choices.iter().enumerate() {
                        option value=(i) selected[!unset && picked(i, c)] { (shown(c)) }
                    }
                }
            },
            Kind::Choices(choices) => html! {
                fieldset id=(name) {
                    @for (i, c) in choices.iter().enumerate() {
                        label.choice {
                            input name=(name) type="checkbox" value=(i) checked[picked(i, c)];
                            " " (shown(c))
                        }
                    }
                }
            },
            Kind::Lines => {
                html! { textarea id=(name) name=(name) rows="4" placeholder="one per line" { (text) } }
            }
            Kind::Json => {
                html! { textarea.mono id=(name) name=(name) rows="4" placeholder="JSON" { (text) } }
            }
        }
    }

    /// This field's value from its answers; `None` when left out.
    fn value(&self, answers: &[&str]) -> Result<Option<Value>, String> {
        let first = answers.first().copied().unwrap_or("");
        let title = &self.title;
        match &self.kind {
            Kind::Text { uri } => {
                if first.is_empty() {
                    return Ok(None);
                }
                if *uri && url::Url::parse(first).is_err() {
                    return Err(format!(
                        "{title} is not an address; write it like https://host.example.com"
                    ));
                }
                Ok(Some(Value::String(first.to_string())))
            }
            Kind::Integer { min, max } | Kind::Number { min, max } => {
                if first.is_empty() {
                    return Ok(None);
                }
                let integer = matches!(self.kind, Kind::Integer { .. });
                let number: Value = if integer {
                    first.parse::<i64>().map(Value::from).map_err(|_| {
                        format!("{title} must be a whole number; `{first}` is not one")
                    })?
                } else {
                    first
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .ok_or_else(|| format!("{title} must be a number; `{first}` is not one"))?
                };
                let n = number.as_f64().unwrap_or_default();
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    let bound = |b: &Option<f64>| b.map(|b| b.to_string()).unwrap_or("…".into());
                    return Err(format!(
                        "{title} must be from {} to {}",
                        bound(min),
                        bound(max)
                    ));
                }
                Ok(Some(number))
            }
            Kind::Boolean => {
                let on = Value::Bool(answers.contains(&"true"));
                let default = self.default.clone().unwrap_or(Value::Bool(false));
                Ok((on != default).then_some(on))
            }
            Kind::Choice(choices) => {
                if first.is_empty() {
                    return Ok(None);
                }
                pick(choices, first, title).map(Some)
            }
            Kind::Choices(choices) => {
                let picked = answers
                    .iter()
                    .map(|a| pick(choices, a, title))
                    .collect::<Result<Vec<_>, _>>()?;
                let picked = Value::Array(picked);
                Ok((Some(&picked) != self.default.as_ref()).then_some(picked))
            }
            Kind::Lines => {
                let lines: Vec<Value> = first
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| Value::String(l.to_string()))
                    .collect();
                Ok((!lines.is_empty()).then_some(Value::Array(lines)))
            }
            Kind::Json => {
                if first.is_empty() {
                    return Ok(None);
                }
                serde_json::from_str(first)
                    .map(Some)
                    .map_err(|e| format!("{title} is not valid JSON: {e}"))
            }
        }
    }
}

fn pick(choices: &[Value], answer: &str, title: &str) -> Result<Value, String> {
    answer
        .parse::<usize>()
        .ok()
        .and_then(|i| choices.get(i))
        .cloned()
        .ok_or_else(|| format!("{title}: pick one of the choices offered"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": { "title": "Address", "type": "string", "format": "uri" },
            "size": { "type": "integer", "minimum": 1, "maximum": 500 },
            "fast": { "type": "boolean", "default": true },
            "mode": { "enum": ["auto", true, false], "default": "auto" },
            "kinds": { "type": "array", "items": { "enum": ["A", "B"] }, "default": ["A", "B"] },
            "tags": { "type": "array", "items": { "type": "string" } }
        }
    }"#;

    fn answers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (format!("setting-{k}"), v.to_string()))
            .collect()
    }

    #[test]
    fn fields_keep_the_schema_order() {
        let form = SettingsForm::parse(SCHEMA).unwrap();
        let names: Vec<&str> = form.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["url", "size", "fast", "mode", "kinds", "tags"]);
    }

    #[test]
    fn answers_become_typed_values_and_defaults_are_left_out() {
        let form = SettingsForm::parse(SCHEMA).unwrap();
        let config = form
            .read(&answers(&[
                ("url", " https://pod.example.com "),
                ("size", "20"),
                ("fast", "true"),
                ("mode", "2"),
                ("kinds", "1"),
                ("tags", "x\n\n y \n"),
            ]))
            .unwrap();
        assert_eq!(
            Value::Object(config),
            serde_json::json!({
                "url": "https://pod.example.com", "size": 20, "mode": false,
                "kinds": ["B"], "tags": ["x", "y"]
            })
        );
    }

    #[test]
    fn a_missing_required_value_a_bad_address_and_a_number_out_of_range_are_named() {
        let form = SettingsForm::parse(SCHEMA).unwrap();
        let problems = form.read(&answers(&[("size", "501")])).unwrap_err();
        assert_eq!(problems["url"], "Fill in Address.");
        assert_eq!(problems["size"], "size must be from 1 to 500");
        let problems = form.read(&answers(&[("url", "pod")])).unwrap_err();
        assert!(problems["url"].contains("not an address"), "{problems:?}");
    }

    #[test]
    fn a_switch_turned_off_against_its_default_is_written() {
        let form = SettingsForm::parse(SCHEMA).unwrap();
        let config = form
            .read(&answers(&[("url", "https://a.example")]))
            .unwrap();
        assert_eq!(config["fast"], Value::Bool(false));
    }

    #[test]
    fn a_schema_that_is_not_an_object_is_refused() {
        let err = SettingsForm::parse(r#"{"type": "string"}"#).unwrap_err();
        assert!(err.to_string().contains("settings-schema"), "{err}");
    }

    #[test]
    fn refused_answers_are_shown_again_as_typed_beside_what_is_wrong() {
        let form = SettingsForm::parse(SCHEMA).unwrap();
        let posted = answers(&[
            ("url", "https://pod.example.com"),
            ("size", "501"),
            ("fast", "true"),
            ("mode", "1"),
            ("kinds", "0"),
            ("kinds", "1"),
            ("tags", "x\ny"),
        ]);
        let problems = form.read(&posted).unwrap_err();
        let html = form.render_typed(&posted, &problems).into_string();
        for shown in [
            r#"value="https://pod.example.com""#,
            r#"value="501""#,
            r#"type="checkbox" value="true" checked"#,
            r#"<option value="1" selected>"#,
            r#"value="0" checked"#,
            r#"value="1" checked"#,
            ">x\ny</textarea>",
            "size must be from 1 to 500",
        ] {
            assert!(html.contains(shown), "{shown} not in {html}");
        }
    }

    #[test]
    fn values_are_shown_escaped() {
        let form = SettingsForm::parse(SCHEMA).unwrap();
        let mut values = Map::new();
        values.insert("url".into(), Value::String("\"><script>".into()));
        let html = form.render(&values, &FormProblems::new()).into_string();
        assert!(!html.contains("<script>"), "{html}");
    }
}
