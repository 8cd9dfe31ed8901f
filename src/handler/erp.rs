//! The `erp` handler: ERP connectors redeliver, so a message whose id was seen
//! within `erp.window` is acknowledged and dropped, and counted.
//!
//! The id is the payload field `erp.dedup_key` when set, else the AMQP
//! `message-id` property. A message without an id passes through. At most
//! `erp.max_ids` ids are remembered; past that the oldest are forgotten first,
//! so memory stays bounded whatever the message rate. The ids live in this
//! process: with several bridge instances, each remembers the messages it
//! handled.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::Instant,
};

use serde_json::Value;

use super::{DropReason, Incoming, Outcome};
use crate::{config::ErpOptions, envelope::Payload};

#[derive(Debug)]
pub struct Erp {
    options: ErpOptions,
    seen: Mutex<Seen>,
}

/// Ids seen recently, in arrival order.
#[derive(Debug, Default)]
struct Seen {
    at: HashMap<String, Instant>,
    order: VecDeque<(String, Instant)>,
}

impl Erp {
    pub(super) fn new(options: ErpOptions) -> Self {
        Self {
            options,
            seen: Mutex::default(),
        }
    }

    pub(super) fn handle(&self, message: &Incoming<'_>) -> Outcome {
        let payload = Payload::from_body(message.body);
        if let Some(id) = self.message_id(message)
            && self.is_duplicate(id, Instant::now())
        {
            return Outcome::Drop(DropReason::Duplicate);
        }
        Outcome::Publish {
            payload,
            extra: Vec::new(),
        }
    }

    fn message_id(&self, message: &Incoming<'_>) -> Option<String> {
        let Some(key) = &self.options.dedup_key else {
            return message
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_owned());
        };
        let payload: Value = serde_json::from_slice(message.body).ok()?;
        let mut value = &payload;
        for field in key.split('.') {
            value = value.get(field)?;
        }
        match value {
            Value::String(text) => Some(text.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Records `id` and returns whether it was already seen within the window.
    fn is_duplicate(&self, id: String, now: Instant) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = self.options.window;
        // Forget ids older than the window, and the oldest beyond the cap.
        while let Some((old, at)) = seen.order.front() {
            if now.duration_since(*at) < window && seen.order.len() < self.options.max_ids {
                break;
            }
            let (old, at) = (old.clone(), *at);
            seen.order.pop_front();
            if seen.at.get(&old) == Some(&at) {
                seen.at.remove(&old);
            }
        }
        if seen.at.contains_key(&id) {
            return true;
        }
        seen.at.insert(id.clone(), now);
        seen.order.push_back((id, now));
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lapin::BasicProperties;

    use super::*;

    fn options(dedup_key: Option<&str>, max_ids: usize) -> ErpOptions {
        ErpOptions {
            dedup_key: dedup_key.map(str::to_owned),
            window: Duration::from_secs(60),
            max_ids,
        }
    }

    fn is_dropped(erp: &Erp, body: &str, message_id: Option<&str>) -> bool {
        let mut properties = BasicProperties::default();
        if let Some(id) = message_id {
            properties = properties.with_message_id(id.into());
        }
        let message = Incoming {
            queue: "q",
            routing_key: "r",
            body: body.as_bytes(),
            properties: &properties,
            redelivered: false,
            timestamp: "t",
        };
        matches!(erp.handle(&message), Outcome::Drop(DropReason::Duplicate))
    }

    #[test]
    fn duplicate_message_id_is_dropped() {
        let erp = Erp::new(options(None, 100));
        assert!(!is_dropped(&erp, "{}", Some("a")));
        assert!(is_dropped(&erp, "{}", Some("a")));
        assert!(!is_dropped(&erp, "{}", Some("b")));
        assert!(!is_dropped(&erp, "{}", None));
        assert!(!is_dropped(&erp, "{}", None));
    }

    #[test]
    fn dedup_key_reads_a_payload_field() {
        let erp = Erp::new(options(Some("order.id"), 100));
        assert!(!is_dropped(&erp, r#"{"order":{"id":7}}"#, Some("x")));
        assert!(is_dropped(&erp, r#"{"order":{"id":7}}"#, Some("y")));
        assert!(!is_dropped(&erp, r#"{"order":{"id":"7b"}}"#, Some("x")));
    }

    #[test]
    fn ids_expire_after_the_window_and_past_the_cap() {
        let erp = Erp::new(options(None, 2));
        let start = Instant::now();
        assert!(!erp.is_duplicate("a".into(), start));
        assert!(erp.is_duplicate("a".into(), start + Duration::from_secs(59)));
        assert!(!erp.is_duplicate("a".into(), start + Duration::from_secs(61)));

        assert!(!erp.is_duplicate("b".into(), start + Duration::from_secs(62)));
        assert!(!erp.is_duplicate("c".into(), start + Duration::from_secs(63)));
        // The cap of two forgot "a", the oldest.
        assert!(!erp.is_duplicate("a".into(), start + Duration::from_secs(64)));
        assert_eq!(erp.seen.lock().unwrap().at.len(), 2);
    }
}
