//! Consumes one queue: each delivery goes through the queue's handler, is
//! published to the router, and is acknowledged only after it was queued on
//! every subscribed session.
//!
//! Deliveries are handled one at a time, so every session receives a queue's
//! messages in the order RabbitMQ delivered them. Prefetch bounds how many
//! RabbitMQ pushes ahead; that is the backpressure toward the broker.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::{
    Channel,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    },
    types::FieldTable,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{
    bridge::Bridge,
    config::QueueConfig,
    envelope::{self, Envelope, PayloadKind},
    handler::{Failure, Handler, Incoming, Outcome},
    metrics::QueueMetrics,
    router::Rendered,
};

/// The firehose destination that carries every broadcast queue's messages.
pub const FIREHOSE: &str = "/topic/queues";

/// Content type of every body the bridge renders.
const JSON: &str = "application/json";

/// The consume loop of one queue.
#[derive(Debug)]
pub struct Consumer {
    queue: QueueConfig,
    /// `/topic/queues/{name}`.
    destination: String,
    handler: Handler,
    bridge: Arc<Bridge>,
    metrics: QueueMetrics,
}

// === impl Consumer ===

impl Consumer {
    pub fn new(queue: QueueConfig, bridge: Arc<Bridge>) -> Self {
        Self {
            destination: format!("{FIREHOSE}/{}", queue.name),
            handler: Handler::new(queue.handler),
            metrics: bridge.metrics.queue(&queue.name),
            queue,
            bridge,
        }
    }

    /// Consumes on `channel` until `stop` is cancelled or the channel fails.
    /// Stopping between deliveries leaves nothing unacknowledged; what RabbitMQ
    /// pushed ahead (prefetch) is requeued when the channel closes.
    ///
    /// # Errors
    ///
    /// The broker error that ended consumption.
    pub async fn run(
        self,
        channel: Channel,
        prefetch: u16,
        stop: CancellationToken,
    ) -> lapin::Result<()> {
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!(
            "stompbridge-{}-{:08x}",
            self.queue.name,
            rand::random::<u32>()
        );
        let mut deliveries = channel
            .basic_consume(
                self.queue.name.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.bridge.metrics.rabbitmq_consumers.inc();
        let result = loop {
            let delivery = tokio::select! {
                biased;
                () = stop.cancelled() => break Ok(()),
                delivery = deliveries.next() => delivery,
            };
            match delivery {
                Some(Ok(delivery)) => {
                    if let Err(error) = self.process(delivery).await {
                        break Err(error);
                    }
                }
                Some(Err(error)) => break Err(error),
                None => break Ok(()),
            }
        };
        self.bridge.metrics.rabbitmq_consumers.dec();
        // Closing the channel hands unacknowledged prefetched messages back to
        // RabbitMQ; after a broker error it is already closed.
        let _ = channel.close(200, "consumer stopped".into()).await;
        result
    }

    async fn process(&self, delivery: Delivery) -> lapin::Result<()> {
        let started = Instant::now();
        self.metrics.consumed.inc();
        let incoming = Incoming {
            queue: &self.queue.name,
            routing_key: delivery.routing_key.as_str(),
            body: &delivery.data,
            redelivered: delivery.redelivered,
        };
        match self.handler.handle(&incoming).await {
            Ok(outcome) => {
                self.broadcast(outcome, incoming.routing_key);
                self.metrics
                    .delivery_latency
                    .observe(started.elapsed().as_secs_f64());
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
            Err(Failure::Permanent(reason)) => {
                warn!(amqp.queue = %self.queue.name, routing_key = incoming.routing_key, %reason, "message rejected");
                let options = BasicRejectOptions { requeue: false };
                delivery.acker.reject(options).await?;
            }
            Err(Failure::Transient(reason)) => {
                warn!(amqp.queue = %self.queue.name, routing_key = incoming.routing_key, %reason, "message requeued");
                let options = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                delivery.acker.nack(options).await?;
            }
        }
        Ok(())
    }

    /// Publishes a handled message to its destinations. Bodies are rendered only
    /// for destinations that have subscribers, and once each.
    fn broadcast(&self, outcome: Outcome, routing_key: &str) {
        let router = &self.bridge.router;
        if matches!(
            outcome.payload.kind,
            PayloadKind::Text | PayloadKind::NotUtf8
        ) {
            self.metrics.payload_not_json.inc();
            debug!(amqp.queue = %self.queue.name, routing_key, kind = ?outcome.payload.kind, "payload is not JSON");
        }
        let mut queued = 0;
        if self.queue.broadcast {
            let to_queue = router.has_subscribers(&self.destination);
            let to_firehose = router.has_subscribers(FIREHOSE);
            if to_queue || to_firehose {
                let timestamp = envelope::format_timestamp(chrono::Utc::now());
                let body = Envelope {
                    queue_name: &self.queue.name,
                    handler_type: self.handler.kind().as_str(),
                    routing_key,
                    timestamp: &timestamp,
                    payload: &outcome.payload.json,
                }
                .render();
                if to_firehose {
                    let firehose = Envelope::render_firehose(&self.queue.name, &body);
                    queued += self.publish(FIREHOSE, firehose);
                }
                if to_queue {
                    queued += self.publish(&self.destination, body);
                }
            }
        }
        for publication in outcome.extra {
            queued += self.publish(&publication.destination, publication.body);
        }
        self.metrics.broadcast.inc();
        self.metrics.delivered.inc_by(queued);
    }

    fn publish(&self, destination: &str, body: Bytes) -> u64 {
        let message = Arc::new(Rendered::new(destination, JSON, body));
        self.bridge.router.publish(destination, &message).queued
    }
}
