//! The `notification` handler: delivers each message to the sessions of its
//! recipients on the queue's user destination.
//!
//! The body must be a JSON object naming its recipients in `userId` (one, a
//! string or a number) or `userIds` (a list); the field names are
//! configurable. The payload goes unchanged to every session of each
//! recipient subscribed to `/user{user_destination}`, and to nobody else.

use serde_json::Value;

use super::{Failure, Incoming, Outcome, Publication, json_object};
use crate::{config::NotificationOptions, envelope::Payload};

#[derive(Debug)]
pub struct Notification {
    options: NotificationOptions,
}

impl Notification {
    pub(super) fn new(options: NotificationOptions) -> Self {
        Self { options }
    }

    pub(super) fn handle(&self, message: &Incoming<'_>) -> Result<Outcome, Failure> {
        let object = json_object(message.body)?;
        let mut recipients = Vec::new();
        if let Some(value) = object.get(&self.options.user_field) {
            recipients.push(user_id(value, &self.options.user_field)?);
        }
        match object.get(&self.options.users_field) {
            Some(Value::Array(values)) => {
                for value in values {
                    recipients.push(user_id(value, &self.options.users_field)?);
                }
            }
            Some(_) => {
                return Err(Failure::invalid(format!(
                    "{} must be a list",
                    self.options.users_field
                )));
            }
            None => {}
        }
        recipients.sort();
        recipients.dedup();
        if recipients.is_empty() {
            return Err(Failure::invalid(format!(
                "no recipient: set {} or {}",
                self.options.user_field, self.options.users_field
            )));
        }

        let payload = Payload::from_body(message.body);
        let body = bytes::Bytes::copy_from_slice(payload.json.get().as_bytes());
        let extra = recipients
            .into_iter()
            .map(|user| Publication {
                destination: self.options.user_destination.clone(),
                body: body.clone(),
                user: Some(user),
            })
            .collect();
        Ok(Outcome::Publish { payload, extra })
    }
}

fn user_id(value: &Value, field: &str) -> Result<String, Failure> {
    match value {
        Value::String(id) if !id.is_empty() => Ok(id.clone()),
        Value::Number(id) => Ok(id.to_string()),
        _ => Err(Failure::invalid(format!(
            "{field} must hold non-empty strings or numbers"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use lapin::BasicProperties;

    use super::*;

    fn recipients(body: &str) -> Result<Vec<String>, Failure> {
        let properties = BasicProperties::default();
        let message = Incoming {
            queue: "q",
            routing_key: "r",
            body: body.as_bytes(),
            properties: &properties,
            redelivered: false,
            timestamp: "t",
        };
        match Notification::new(NotificationOptions::default()).handle(&message)? {
            Outcome::Publish { extra, .. } => {
                Ok(extra.into_iter().filter_map(|p| p.user).collect())
            }
            Outcome::Drop(reason) => panic!("dropped: {reason:?}"),
        }
    }

    #[test]
    fn recipients_come_from_user_id_and_user_ids() {
        assert_eq!(recipients(r#"{"userId":"a","title":"t"}"#).unwrap(), ["a"]);
        assert_eq!(
            recipients(r#"{"userIds":["b",7,"a"]}"#).unwrap(),
            ["7", "a", "b"]
        );
        assert_eq!(
            recipients(r#"{"userId":"a","userIds":["a","b"]}"#).unwrap(),
            ["a", "b"]
        );
    }

    #[test]
    fn message_without_recipients_fails_permanently() {
        for body in [
            r#"{"title":"t"}"#,
            r#"{"userIds":"a"}"#,
            r#"{"userId":""}"#,
            r#"{"userIds":[null]}"#,
            "[]",
        ] {
            let failure = recipients(body).unwrap_err();
            assert!(!failure.is_transient(), "{body}");
        }
    }
}
