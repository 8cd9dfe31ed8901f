//! Handlers: what a queue does with each message before it is broadcast.
//!
//! A handler reads one delivery and returns the payload for the queue's
//! envelope plus any extra publications, asks for the message to be dropped
//! (a duplicate), or fails. The consumer broadcasts and acknowledges only after
//! success, retries transient failures and dead-letters the rest. Handlers are
//! an enum, not trait objects: the set is closed and chosen by `handler:`.

pub mod entity;
mod erp;
mod generic;
mod iot;
mod notification;
pub mod webhook;

use bytes::Bytes;
use lapin::BasicProperties;

use crate::{
    config::{HandlerKind, QueueConfig},
    envelope::{Payload, PayloadKind},
};

/// One message as a handler sees it.
#[derive(Debug)]
pub struct Incoming<'a> {
    pub queue: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: &'a BasicProperties,
    pub redelivered: bool,
    /// The envelope timestamp of this message, so a handler that sends the
    /// envelope elsewhere (webhook) sends the same one that is broadcast.
    pub timestamp: &'a str,
}

/// What a handler decided.
#[derive(Debug)]
pub enum Outcome {
    /// Broadcast `payload` in the envelope, and publish `extra`.
    Publish {
        payload: Payload,
        extra: Vec<Publication>,
    },
    /// Acknowledge without broadcasting, for the reason given.
    Drop(DropReason),
}

/// Why a message was acknowledged without being broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The erp handler saw this message id within its window.
    Duplicate,
}

/// A body for one destination, beyond the queue's broadcast.
#[derive(Debug, Clone)]
pub struct Publication {
    pub destination: String,
    pub body: Bytes,
    /// For a user destination: the recipient, whose sessions subscribed to
    /// `/user{destination}` receive it.
    pub user: Option<String>,
}

/// A handler failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Failure {
    pub reason: FailureReason,
    pub detail: String,
}

/// Failure reasons, a closed set used as the `reason` metric label. Each says
/// whether a retry may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The message does not have the shape the handler requires.
    InvalidPayload,
    /// The webhook answered with a status that a retry will not change.
    WebhookRejected,
    /// The webhook answered with a server error, 408 or 429.
    WebhookUnavailable,
    /// The webhook did not answer within its timeout.
    WebhookTimeout,
    /// The webhook could not be reached.
    WebhookUnreachable,
}

/// A queue's configured handler.
#[derive(Debug)]
pub enum Handler {
    Generic,
    Iot(iot::Iot),
    Erp(erp::Erp),
    Webhook(webhook::Webhook),
    Entity,
    Notification(notification::Notification),
}

// === impl Failure ===

impl Failure {
    pub fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(FailureReason::InvalidPayload, detail)
    }

    /// Whether retrying the same message may succeed.
    pub fn is_transient(&self) -> bool {
        self.reason.is_transient()
    }
}

// === impl FailureReason ===

impl FailureReason {
    pub const ALL: [FailureReason; 5] = [
        FailureReason::InvalidPayload,
        FailureReason::WebhookRejected,
        FailureReason::WebhookUnavailable,
        FailureReason::WebhookTimeout,
        FailureReason::WebhookUnreachable,
    ];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            FailureReason::InvalidPayload => "invalid_payload",
            FailureReason::WebhookRejected => "webhook_rejected",
            FailureReason::WebhookUnavailable => "webhook_unavailable",
            FailureReason::WebhookTimeout => "webhook_timeout",
            FailureReason::WebhookUnreachable => "webhook_unreachable",
        }
    }

    pub fn is_transient(self) -> bool {
        !matches!(
            self,
            FailureReason::InvalidPayload | FailureReason::WebhookRejected
        )
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

// === impl Handler ===

impl Handler {
    /// Builds the handler a queue configures, with its options.
    ///
    /// # Errors
    ///
    /// A message when the handler cannot be built (the webhook's HTTP client).
    pub fn new(queue: &QueueConfig) -> Result<Self, String> {
        Ok(match queue.handler {
            HandlerKind::Generic => Handler::Generic,
            HandlerKind::Iot => Handler::Iot(iot::Iot::new(queue.iot.clone().unwrap_or_default())),
            HandlerKind::Erp => Handler::Erp(erp::Erp::new(queue.erp.clone().unwrap_or_default())),
            HandlerKind::Webhook => {
                let options = queue
                    .webhook
                    .clone()
                    .ok_or_else(|| "the webhook handler needs webhook options".to_string())?;
                Handler::Webhook(webhook::Webhook::new(options)?)
            }
            HandlerKind::Entity => Handler::Entity,
            HandlerKind::Notification => Handler::Notification(notification::Notification::new(
                queue.notification.clone().unwrap_or_default(),
            )),
        })
    }

    /// Handles one message.
    ///
    /// # Errors
    ///
    /// A [`Failure`] saying why, and whether a retry may help.
    pub async fn handle(&self, message: &Incoming<'_>) -> Result<Outcome, Failure> {
        match self {
            Handler::Generic => Ok(generic::handle(message)),
            Handler::Iot(iot) => iot.handle(message),
            Handler::Erp(erp) => Ok(erp.handle(message)),
            Handler::Webhook(webhook) => webhook.handle(message).await,
            Handler::Entity => entity::handle(message),
            Handler::Notification(notification) => notification.handle(message),
        }
    }
}

/// Parses a body that must be a JSON object.
fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(object)) => Ok(object),
        Ok(_) => Err(Failure::invalid("the body is JSON but not an object")),
        Err(error) => Err(Failure::invalid(format!(
            "the body is not valid JSON: {error}"
        ))),
    }
}

/// Serializes a JSON value into a payload.
fn payload_of(value: &impl serde::Serialize) -> Payload {
    let json = serde_json::value::to_raw_value(value)
        .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned());
    Payload {
        json,
        kind: PayloadKind::Json,
    }
}
