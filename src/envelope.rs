//! The documented JSON bodies that clients receive.
//!
//! A queue message becomes an envelope with exactly five keys:
//! `{"queueName", "handlerType", "routingKey", "timestamp", "payload"}`, and the
//! firehose `/topic/queues` wraps it as `{"queueName", "data"}`. Both are rendered
//! once per message, never per subscriber.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

/// Kind of AMQP message body, as the bridge interpreted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// The body was JSON and travels unchanged.
    Json,
    /// The body was empty and became `null`.
    Empty,
    /// The body was UTF-8 text but not JSON, and became a JSON string.
    Text,
    /// The body was not UTF-8; invalid sequences became U+FFFD in a JSON string.
    NotUtf8,
}

/// A message body as a JSON value.
#[derive(Debug)]
pub struct Payload {
    pub json: Box<RawValue>,
    pub kind: PayloadKind,
}

/// The envelope of one message, before serialization.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<'a> {
    pub queue_name: &'a str,
    pub handler_type: &'a str,
    pub routing_key: &'a str,
    pub timestamp: &'a str,
    pub payload: &'a RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Firehose<'a> {
    queue_name: &'a str,
    data: &'a RawValue,
}

// === impl Payload ===

impl Payload {
    /// Interprets an AMQP message body: JSON stays as it is (without surrounding
    /// whitespace), an empty body is `null`, anything else is a JSON string.
    pub fn from_body(body: &[u8]) -> Self {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Self::new(RawValue::NULL.to_owned(), PayloadKind::Empty);
        }
        if let Ok(json) = serde_json::from_slice::<&RawValue>(body) {
            return Self::new(json.to_owned(), PayloadKind::Json);
        }
        let (text, kind) = match std::str::from_utf8(body) {
            Ok(text) => (text.into(), PayloadKind::Text),
            Err(_) => (String::from_utf8_lossy(body), PayloadKind::NotUtf8),
        };
        Self::new(string_value(&text), kind)
    }

    fn new(json: Box<RawValue>, kind: PayloadKind) -> Self {
        Self { json, kind }
    }
}

/// Returns `text` as a JSON string value.
fn string_value(text: &str) -> Box<RawValue> {
    let quoted = serde_json::to_string(text).unwrap_or_else(|_| "null".into());
    RawValue::from_string(quoted).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

// === impl Envelope ===

impl Envelope<'_> {
    /// Serializes the envelope.
    pub fn render(&self) -> Bytes {
        to_bytes(self)
    }

    /// Serializes the firehose form, `{"queueName": Q, "data": ENVELOPE}`, around an
    /// envelope rendered by [`Envelope::render`].
    pub fn render_firehose(queue_name: &str, envelope: &[u8]) -> Bytes {
        let Ok(text) = std::str::from_utf8(envelope) else {
            return Bytes::new();
        };
        let Ok(data) = serde_json::from_str::<&RawValue>(text) else {
            return Bytes::new();
        };
        to_bytes(&Firehose { queue_name, data })
    }
}

fn to_bytes(value: &impl Serialize) -> Bytes {
    // Serializing borrowed strings and raw JSON into memory cannot fail.
    serde_json::to_vec(value)
        .map(Bytes::from)
        .unwrap_or_default()
}

/// Formats a timestamp as RFC 3339 UTC with milliseconds, e.g.
/// `2026-02-17T14:30:00.456Z`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_is_kept_verbatim() {
        let payload = Payload::from_body(b" {\"sensorId\": 123, \"value\": 75.50} \n");
        assert_eq!(payload.kind, PayloadKind::Json);
        assert_eq!(payload.json.get(), "{\"sensorId\": 123, \"value\": 75.50}");
    }

    #[test]
    fn empty_body_is_null() {
        for body in [&b""[..], b"  \n"] {
            let payload = Payload::from_body(body);
            assert_eq!(payload.kind, PayloadKind::Empty);
            assert_eq!(payload.json.get(), "null");
        }
    }

    #[test]
    fn text_body_becomes_a_string() {
        let payload = Payload::from_body(b"hello \"world\"\n{");
        assert_eq!(payload.kind, PayloadKind::Text);
        assert_eq!(payload.json.get(), r#""hello \"world\"\n{""#);
    }

    #[test]
    fn non_utf8_body_becomes_a_lossy_string() {
        let payload = Payload::from_body(b"ab\xffcd");
        assert_eq!(payload.kind, PayloadKind::NotUtf8);
        assert_eq!(payload.json.get(), "\"ab\u{fffd}cd\"");
    }

    #[test]
    fn envelope_has_exactly_five_keys_in_order() {
        let payload = Payload::from_body(br#"{"a":1}"#);
        let envelope = Envelope {
            queue_name: "tgm_iot",
            handler_type: "generic",
            routing_key: "tgm.iot",
            timestamp: "2026-02-17T14:30:00.456Z",
            payload: &payload.json,
        };
        let body = envelope.render();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"queueName":"tgm_iot","handlerType":"generic","routingKey":"tgm.iot","timestamp":"2026-02-17T14:30:00.456Z","payload":{"a":1}}"#
        );
        let firehose = Envelope::render_firehose("tgm_iot", &body);
        let expected = format!(
            r#"{{"queueName":"tgm_iot","data":{}}}"#,
            std::str::from_utf8(&body).unwrap()
        );
        assert_eq!(std::str::from_utf8(&firehose).unwrap(), expected);
    }

    #[test]
    fn timestamp_has_milliseconds_and_zulu() {
        let at = DateTime::parse_from_rfc3339("2026-02-17T14:30:00.456789+00:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_timestamp(at), "2026-02-17T14:30:00.456Z");
    }
}
