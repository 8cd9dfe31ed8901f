//! Destination templates such as `/topic/reservoir/{payload.reservoirId}/sensors`.
//!
//! Placeholders: `{queueName}`, `{routingKey}`, `{payload.FIELD}` (nested with
//! dots) and `{header.NAME}` (an AMQP header). A substituted value must be a
//! non-empty string or integer of at most 128 bytes without `/`, `*`, `#`,
//! whitespace or control characters. Otherwise the destination is skipped for
//! that message, so a value can never redirect a message to another destination.

use std::fmt;

use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;

/// Longest value substituted into a template, in bytes.
pub const MAX_VALUE_BYTES: usize = 128;

/// A parsed destination template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    QueueName,
    RoutingKey,
    Payload(Vec<String>),
    Header(String),
}

/// Why a template was rejected when the configuration was loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must start with '/'")]
    NotAbsolute,
    #[error("unclosed '{{'")]
    Unclosed,
    #[error("unexpected '}}'")]
    UnexpectedClose,
    #[error("unknown placeholder {{{0}}}; use queueName, routingKey, payload.FIELD or header.NAME")]
    UnknownPlaceholder(String),
    #[error("contains {0:?}, which is not allowed outside placeholders")]
    InvalidCharacter(char),
}

/// What a template is filled from.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub queue: &'a str,
    pub routing_key: &'a str,
    /// The parsed payload, when the template needs it.
    pub payload: Option<&'a Value>,
    pub headers: Option<&'a FieldTable>,
}

/// Why a template produced no destination for one message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("{{{0}}} has no value")]
    Missing(String),
    #[error(
        "{{{0}}} is not a non-empty string or integer of at most 128 bytes without '/', '*', '#', whitespace or control characters"
    )]
    Invalid(String),
}

// === impl Template ===

impl Template {
    /// Parses a template.
    ///
    /// # Errors
    ///
    /// A [`TemplateError`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        if !text.starts_with('/') {
            return Err(TemplateError::NotAbsolute);
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let open = rest.find('{').unwrap_or(rest.len());
            let literal = &rest[..open];
            if let Some(c) = literal.chars().find(|&c| c == '}' || !is_literal_char(c)) {
                return Err(if c == '}' {
                    TemplateError::UnexpectedClose
                } else {
                    TemplateError::InvalidCharacter(c)
                });
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(literal.to_owned()));
            }
            rest = &rest[open..];
            if rest.is_empty() {
                break;
            }
            let close = rest.find('}').ok_or(TemplateError::Unclosed)?;
            parts.push(placeholder(&rest[1..close])?);
            rest = &rest[close + 1..];
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    /// Whether rendering needs the parsed payload.
    pub fn uses_payload(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Payload(_)))
    }

    /// Fills the template for one message.
    ///
    /// # Errors
    ///
    /// A [`Skip`] when a placeholder has no value or an unsafe one.
    pub fn render(&self, context: &Context<'_>) -> Result<String, Skip> {
        let mut out = String::with_capacity(self.text.len() + 32);
        for part in &self.parts {
            let value = match part {
                Part::Literal(text) => {
                    out.push_str(text);
                    continue;
                }
                Part::QueueName => Some(context.queue.to_owned()),
                Part::RoutingKey => Some(context.routing_key.to_owned()),
                Part::Payload(path) => payload_value(context.payload, path),
                Part::Header(name) => header_value(context.headers, name),
            };
            let value = value.ok_or_else(|| Skip::Missing(part.to_string()))?;
            if !is_safe_value(&value) {
                return Err(Skip::Invalid(part.to_string()));
            }
            out.push_str(&value);
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Literal(text) => f.write_str(text),
            Part::QueueName => f.write_str("queueName"),
            Part::RoutingKey => f.write_str("routingKey"),
            Part::Payload(path) => write!(f, "payload.{}", path.join(".")),
            Part::Header(name) => write!(f, "header.{name}"),
        }
    }
}

fn placeholder(name: &str) -> Result<Part, TemplateError> {
    let unknown = || TemplateError::UnknownPlaceholder(name.to_owned());
    match name {
        "queueName" => return Ok(Part::QueueName),
        "routingKey" => return Ok(Part::RoutingKey),
        _ => {}
    }
    if let Some(path) = name.strip_prefix("payload.") {
        let fields: Vec<String> = path.split('.').map(str::to_owned).collect();
        if fields.iter().any(|f| f.is_empty()) {
            return Err(unknown());
        }
        return Ok(Part::Payload(fields));
    }
    match name.strip_prefix("header.") {
        Some(header) if !header.is_empty() => Ok(Part::Header(header.to_owned())),
        _ => Err(unknown()),
    }
}

/// Characters allowed in the fixed parts of a template: no STOMP or AMQP
/// wildcards, whitespace or control characters.
fn is_literal_char(c: char) -> bool {
    !(matches!(c, '*' | '#') || c.is_whitespace() || c.is_control())
}

fn is_safe_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_VALUE_BYTES
        && !value
            .chars()
            .any(|c| matches!(c, '/' | '*' | '#') || c.is_whitespace() || c.is_control())
}

/// A payload field as text: strings as they are, integers in decimal; floats,
/// booleans, objects, arrays and null have no value.
fn payload_value(payload: Option<&Value>, path: &[String]) -> Option<String> {
    let mut value = payload?;
    for field in path {
        value = value.get(field)?;
    }
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn header_value(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    let value = headers?.inner().get(name)?;
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        AMQPValue::ShortShortInt(n) => Some(n.to_string()),
        AMQPValue::ShortShortUInt(n) => Some(n.to_string()),
        AMQPValue::ShortInt(n) => Some(n.to_string()),
        AMQPValue::ShortUInt(n) => Some(n.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongUInt(n) => Some(n.to_string()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn context<'a>(payload: &'a Value, headers: &'a FieldTable) -> Context<'a> {
        Context {
            queue: "tgm_iot",
            routing_key: "tgm.iot",
            payload: Some(payload),
            headers: Some(headers),
        }
    }

    #[test]
    fn renders_every_placeholder() {
        let template =
            Template::parse("/topic/{queueName}/{routingKey}/{payload.a.b}/{header.x-site}")
                .unwrap();
        let payload = json!({"a": {"b": 42}});
        let mut headers = FieldTable::default();
        headers.insert("x-site".into(), AMQPValue::LongString("north".into()));
        assert_eq!(
            template.render(&context(&payload, &headers)),
            Ok("/topic/tgm_iot/tgm.iot/42/north".into())
        );
        assert!(template.uses_payload());
    }

    #[test]
    fn unsafe_values_skip_the_destination() {
        let template = Template::parse("/topic/reservoir/{payload.id}/sensors").unwrap();
        let headers = FieldTable::default();
        for bad in [
            json!("a/b"),
            json!("*"),
            json!("#"),
            json!("a b"),
            json!(""),
            json!("\u{7}"),
            json!(1.5),
            json!(true),
            json!(null),
            json!({"x": 1}),
            json!("x".repeat(129)),
        ] {
            let payload = json!({ "id": bad });
            let result = template.render(&context(&payload, &headers));
            assert!(result.is_err(), "{bad} produced {result:?}");
        }
        let payload = json!({"other": 1});
        assert_eq!(
            template.render(&context(&payload, &headers)),
            Err(Skip::Missing("payload.id".into()))
        );
        let payload = json!({"id": "x".repeat(128)});
        assert!(template.render(&context(&payload, &headers)).is_ok());
    }

    #[test]
    fn invalid_templates_are_rejected() {
        assert_eq!(Template::parse("topic/x"), Err(TemplateError::NotAbsolute));
        assert_eq!(
            Template::parse("/topic/{payload.x"),
            Err(TemplateError::Unclosed)
        );
        assert_eq!(
            Template::parse("/topic/x}"),
            Err(TemplateError::UnexpectedClose)
        );
        assert_eq!(
            Template::parse("/topic/*"),
            Err(TemplateError::InvalidCharacter('*'))
        );
        assert_eq!(
            Template::parse("/topic/a b"),
            Err(TemplateError::InvalidCharacter(' '))
        );
        for unknown in [
            "/x/{payload}",
            "/x/{payload.}",
            "/x/{header.}",
            "/x/{id}",
            "/x/{}",
        ] {
            assert!(
                matches!(
                    Template::parse(unknown),
                    Err(TemplateError::UnknownPlaceholder(_))
                ),
                "{unknown}"
            );
        }
    }

    #[test]
    fn literal_only_template_renders_itself() {
        let template = Template::parse("/topic/static").unwrap();
        let payload = json!({});
        let headers = FieldTable::default();
        assert_eq!(
            template.render(&context(&payload, &headers)),
            Ok("/topic/static".into())
        );
        assert!(!template.uses_payload());
    }
}
