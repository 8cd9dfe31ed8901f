//! SEND: client messages published to RabbitMQ.
//!
//! A SEND to `/app/{name}` is published to `rabbitmq.app_exchange` with
//! routing key `{name}`; a SEND elsewhere needs an access rule that allows it
//! and is published with the destination as routing key. The bridge sets the
//! AMQP headers `user-id` (the session's user, replacing any value the client
//! sent), `session-id` and `stomp-destination`; the client's other headers
//! are kept. The publish is mandatory and confirmed: the RECEIPT is sent only
//! after RabbitMQ confirmed it, and an unroutable or refused message ends the
//! session with an ERROR.

use bytes::Bytes;
use lapin::{
    BasicProperties, Channel, Confirmation,
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable, LongString},
};
use tracing::debug;

use super::{Session, connect::TOKEN_DESTINATION, required};
use crate::{
    auth::Action,
    disconnect::Disconnect,
    stomp::{Command, Frame, Version},
};

/// SENDs one session may have waiting for the broker's confirm. Past it the
/// connection stops reading from the client until one completes.
pub const MAX_SENDS_IN_FLIGHT: usize = 64;

/// Prefix of destinations published to the application exchange.
pub const APP_PREFIX: &str = "/app/";

/// STOMP headers the bridge sets or that describe the frame, not the message.
const RESERVED_HEADERS: [&str; 8] = [
    "destination",
    "content-length",
    "content-type",
    "receipt",
    "transaction",
    "user-id",
    "session-id",
    "stomp-destination",
];

/// A SEND to be published by the connection task.
#[derive(Debug)]
pub struct SendRequest {
    pub exchange: String,
    pub routing_key: String,
    pub body: Bytes,
    pub properties: BasicProperties,
    /// The SEND's `receipt`, acknowledged once the publish is confirmed.
    pub receipt: Option<String>,
}

impl Session {
    /// Handles a SEND. Returns `true` when it was queued for publishing (its
    /// RECEIPT comes later) and `false` when it was handled here.
    pub(super) fn send(
        &mut self,
        frame: &Frame,
        _version: Version,
        _out: &mut Vec<Bytes>,
    ) -> Result<bool, Disconnect> {
        let destination = required(frame, "destination")?;
        if destination == TOKEN_DESTINATION {
            self.refresh_token(frame)?;
            return Ok(false);
        }
        self.check_access(Action::Send, destination)?;
        let config = self.bridge.config();
        let routing_key = destination.strip_prefix(APP_PREFIX).unwrap_or(destination);

        let mut headers = FieldTable::default();
        for (name, value) in &frame.headers {
            if !RESERVED_HEADERS.contains(&name.as_str()) && !headers.contains_key(name.as_str()) {
                headers.insert(name.as_str().into(), long_string(value));
            }
        }
        if let Some(principal) = &self.principal {
            headers.insert("user-id".into(), long_string(&principal.user));
        }
        headers.insert("session-id".into(), long_string(&self.id.to_string()));
        headers.insert("stomp-destination".into(), long_string(destination));
        let mut properties = BasicProperties::default()
            .with_headers(headers)
            .with_delivery_mode(2)
            .with_timestamp(now_seconds());
        if let Some(content_type) = frame.get("content-type") {
            properties = properties.with_content_type(content_type.into());
        }

        self.sends.push(SendRequest {
            exchange: config.rabbitmq.app_exchange.clone(),
            routing_key: routing_key.to_owned(),
            body: frame.body.clone(),
            properties,
            receipt: frame.get("receipt").map(str::to_owned),
        });
        self.sends_in_flight += 1;
        Ok(true)
    }

    /// SENDs waiting to be published, taken by the connection task.
    pub fn take_sends(&mut self) -> Vec<SendRequest> {
        std::mem::take(&mut self.sends)
    }

    /// Returns whether the connection may read more frames from the client.
    pub fn can_read(&self) -> bool {
        self.sends_in_flight < MAX_SENDS_IN_FLIGHT
    }

    /// Records the end of a publish: the RECEIPT on success, or the error.
    ///
    /// # Errors
    ///
    /// [`Disconnect::SendFailed`] with the reason the publish failed.
    pub fn send_completed(
        &mut self,
        receipt: Option<String>,
        result: Result<(), String>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), Disconnect> {
        self.sends_in_flight = self.sends_in_flight.saturating_sub(1);
        match result {
            Ok(()) => {
                self.bridge.metrics.send("confirmed");
                if let (Some(receipt), Some(version)) = (receipt, self.version()) {
                    let frame = Frame::new(Command::Receipt).header("receipt-id", receipt);
                    self.emit(&frame, version, out);
                }
                Ok(())
            }
            Err(reason) => {
                self.bridge.metrics.send("failed");
                debug!(session.id = self.id, %reason, "SEND failed");
                self.failed_receipt = receipt;
                Err(Disconnect::SendFailed(reason))
            }
        }
    }
}

/// Publishes one SEND on `channel` and waits for the broker's confirm.
/// Returns the SEND's receipt with the outcome.
pub async fn publish(
    channel: Option<Channel>,
    request: SendRequest,
) -> (Option<String>, Result<(), String>) {
    let receipt = request.receipt;
    let Some(channel) = channel else {
        return (
            receipt,
            Err("RabbitMQ is not connected, try again later".into()),
        );
    };
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let published = channel
        .basic_publish(
            request.exchange.as_str().into(),
            request.routing_key.as_str().into(),
            options,
            &request.body,
            request.properties,
        )
        .await;
    let confirmation = match published {
        Ok(confirm) => confirm.await,
        Err(error) => Err(error),
    };
    let result = match confirmation {
        Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => Ok(()),
        Ok(Confirmation::Ack(Some(_))) => Err(format!(
            "unroutable: no queue is bound to exchange {} for routing key {}",
            request.exchange, request.routing_key
        )),
        Ok(Confirmation::Nack(_)) => Err("RabbitMQ refused the message".into()),
        Err(error) => Err(format!("publish failed: {error}")),
    };
    (receipt, result)
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
