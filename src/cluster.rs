//! Scale-out across bridge instances through RabbitMQ.
//!
//! With `cluster.enabled`, each source queue is declared with
//! `x-single-active-consumer`, so one instance at a time handles its messages,
//! in order (another takes over when it goes away, and RabbitMQ redelivers
//! what it had not acknowledged). The handling instance renders the
//! deliveries (destination, user, body) of each message and publishes them,
//! with a publisher confirm, to the fanout exchange `cluster.exchange`; it
//! acknowledges the source message only after the confirm. Every instance
//! consumes that exchange through its own exclusive, auto-delete queue and
//! delivers to its local sessions. The queue is bounded by
//! `cluster.max_queue_length` (the oldest messages are dropped); every
//! message carries a sequence number per sender, so a receiver counts what it
//! lost in `stompbridge_cluster_lost_total`.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::{
    Channel, ExchangeKind,
    options::{BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::{debug, warn};

use crate::{
    bridge::Bridge,
    router::Rendered,
    session::subscribe::{USER_PREFIX, user_route},
};

/// Content type of every body the bridge renders.
const JSON: &str = "application/json";

/// Senders remembered for gap detection; the oldest is forgotten past this.
const MAX_SENDERS: usize = 10_000;

/// One rendered delivery: a body for a destination, or for one user's
/// sessions subscribed to `/user{destination}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub destination: String,
    pub user: Option<String>,
    pub body: Bytes,
}

/// A handled message as it travels between instances.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    /// Sender: instance, queue and consumer run, so sequence numbers restart
    /// with a new sender.
    pub origin: String,
    pub seq: u64,
    pub queue: String,
    pub redelivered: bool,
    pub deliveries: Vec<Delivery>,
}

#[derive(Serialize, Deserialize)]
struct WireMessage<'a> {
    o: &'a str,
    s: u64,
    q: &'a str,
    r: bool,
    #[serde(borrow)]
    d: Vec<WireDelivery<'a>>,
}

#[derive(Serialize, Deserialize)]
struct WireDelivery<'a> {
    t: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<&'a str>,
    /// The body as JSON, when it is JSON (every body the handlers produce is).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    b: Option<&'a RawValue>,
    /// The body as a string otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
}

/// Why a cluster message could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid cluster message: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

// === impl Message ===

impl Message {
    /// Serializes the message.
    pub fn encode(&self) -> Vec<u8> {
        let deliveries: Vec<WireDelivery<'_>> = self
            .deliveries
            .iter()
            .map(|delivery| {
                let text = std::str::from_utf8(&delivery.body).ok();
                let raw = text.and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
                WireDelivery {
                    t: &delivery.destination,
                    u: delivery.user.as_deref(),
                    x: raw
                        .is_none()
                        .then(|| String::from_utf8_lossy(&delivery.body).into_owned()),
                    b: raw,
                }
            })
            .collect();
        let wire = WireMessage {
            o: &self.origin,
            s: self.seq,
            q: &self.queue,
            r: self.redelivered,
            d: deliveries,
        };
        // Serializing borrowed strings and raw JSON into memory cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Parses a message published by an instance.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the body is not a cluster message.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let wire: WireMessage<'_> = serde_json::from_slice(body)?;
        Ok(Self {
            origin: wire.o.to_owned(),
            seq: wire.s,
            queue: wire.q.to_owned(),
            redelivered: wire.r,
            deliveries: wire
                .d
                .into_iter()
                .map(|d| Delivery {
                    destination: d.t.to_owned(),
                    user: d.u.map(str::to_owned),
                    body: match (d.b, d.x) {
                        (Some(raw), _) => Bytes::copy_from_slice(raw.get().as_bytes()),
                        (None, Some(text)) => Bytes::from(text),
                        (None, None) => Bytes::new(),
                    },
                })
                .collect(),
        })
    }
}

/// Queues `deliveries` on the local sessions that subscribed to them.
/// Returns the number of MESSAGE frames queued.
pub fn deliver(bridge: &Bridge, deliveries: Vec<Delivery>, redelivered: bool) -> u64 {
    let router = &bridge.router;
    let mut queued = 0;
    for delivery in deliveries {
        let (route, shown) = match &delivery.user {
            Some(user) => (
                user_route(user, &delivery.destination),
                format!("{USER_PREFIX}{}", delivery.destination),
            ),
            None => (delivery.destination.clone(), delivery.destination.clone()),
        };
        if router.has_subscribers(&route) {
            let message = Arc::new(Rendered::with_redelivered(
                &shown,
                JSON,
                delivery.body,
                redelivered,
            ));
            queued += router.publish(&route, &message).queued;
        }
    }
    queued
}

/// Declares the fanout exchange and this instance's queue, bound to it.
/// Returns the queue's name.
///
/// # Errors
///
/// The broker error of the first declaration that failed.
pub async fn declare(channel: &Channel, bridge: &Bridge) -> lapin::Result<String> {
    let config = bridge.config();
    let cluster = &config.cluster;
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            cluster.exchange.as_str().into(),
            ExchangeKind::Fanout,
            options,
            FieldTable::default(),
        )
        .await?;
    let queue = format!("{}.{}", cluster.exchange, bridge.instance_id);
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-max-length".into(),
        AMQPValue::LongUInt(cluster.max_queue_length),
    );
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from(b"drop-head".to_vec())),
    );
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.as_str().into(), options, arguments)
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            cluster.exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(queue)
}

/// Consumes this instance's cluster queue and delivers every message to local
/// sessions, until the channel fails or the consumer is cancelled.
///
/// # Errors
///
/// The broker error that ended consumption.
pub async fn receive(bridge: Arc<Bridge>, channel: Channel, queue: String) -> lapin::Result<()> {
    let options = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let tag = format!("stompbridge-cluster-{}", bridge.instance_id);
    let mut deliveries = channel
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            options,
            FieldTable::default(),
        )
        .await?;
    bridge.set_cluster_consuming(true);
    let mut gaps = Gaps::default();
    let result = loop {
        let delivery = match deliveries.next().await {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => break Err(error),
            None => break Ok(()),
        };
        let message = match Message::decode(&delivery.data) {
            Ok(message) => message,
            Err(error) => {
                bridge.metrics.cluster_invalid_total.inc();
                warn!(%error, "cluster message ignored");
                continue;
            }
        };
        let lost = gaps.record(&message.origin, message.seq);
        if lost > 0 {
            bridge.metrics.cluster_lost_total.inc_by(lost);
            warn!(origin = %message.origin, lost, "cluster messages lost: this instance fell behind past cluster.max_queue_length");
        }
        bridge.metrics.cluster_received_total.inc();
        let queued = deliver(&bridge, message.deliveries, message.redelivered);
        if let Some(metrics) = bridge.configured_queue_metrics(&message.queue) {
            metrics.delivered.inc_by(queued);
        }
    };
    bridge.set_cluster_consuming(false);
    debug!("cluster queue no longer consumed");
    result
}

/// The next expected sequence number of each sender.
#[derive(Debug, Default)]
struct Gaps {
    next: HashMap<String, u64>,
}

impl Gaps {
    /// Records `seq` from `origin` and returns how many messages from it were
    /// skipped. A late message (behind the expected number) counts nothing.
    fn record(&mut self, origin: &str, seq: u64) -> u64 {
        if self.next.len() >= MAX_SENDERS && !self.next.contains_key(origin) {
            self.next.clear();
        }
        let next = self.next.entry(origin.to_owned()).or_insert(seq);
        let lost = seq.saturating_sub(*next);
        if seq >= *next {
            *next = seq + 1;
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_with_json_and_text_bodies() {
        let message = Message {
            origin: "a:q:1".into(),
            seq: 7,
            queue: "q".into(),
            redelivered: true,
            deliveries: vec![
                Delivery {
                    destination: "/topic/queues/q".into(),
                    user: None,
                    body: Bytes::from_static(br#"{"payload":{"n":1}}"#),
                },
                Delivery {
                    destination: "/queue/notifications".into(),
                    user: Some("alice".into()),
                    body: Bytes::from_static(b"not json"),
                },
            ],
        };
        assert_eq!(Message::decode(&message.encode()).unwrap(), message);
    }

    #[test]
    fn gaps_count_skipped_sequence_numbers() {
        let mut gaps = Gaps::default();
        assert_eq!(gaps.record("a", 0), 0);
        assert_eq!(gaps.record("a", 1), 0);
        assert_eq!(gaps.record("a", 4), 2);
        assert_eq!(gaps.record("a", 3), 0, "a late message is not a loss");
        assert_eq!(gaps.record("a", 5), 0);
        assert_eq!(
            gaps.record("b", 10),
            0,
            "a new sender starts where it is first seen"
        );
    }
}
