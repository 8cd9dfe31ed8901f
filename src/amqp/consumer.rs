//! Consumes one queue: each delivery goes through the queue's handler, is
//! published to the router, and is acknowledged only after it was queued on
//! every subscribed session.
//!
//! Every delivery ends acknowledged (delivered or dropped as a duplicate),
//! requeued (shutdown or a failed dead-letter publish) or dead-lettered (a
//! permanent failure, or a transient one that ran out of retries). With
//! `concurrency: 1` deliveries are handled one at a time, so every session
//! receives a queue's messages in the order RabbitMQ delivered them.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel,
    message::Delivery,
    options::{BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, LongString},
};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{
    runtime::QueueRuntime,
    settle::{self, Settle, Settlements},
};
use crate::log_limit::LogLimiter;
use crate::{
    bridge::Bridge,
    cluster,
    config::BodyKind,
    destination::Context,
    envelope::{self, Envelope, Payload, PayloadKind},
    handler::{DropReason, Failure, Incoming, Outcome, Publication},
    metrics::QueueMetrics,
    session::subscribe::user_route,
};

/// The firehose destination that carries every broadcast queue's messages.
pub const FIREHOSE: &str = "/topic/queues";

/// Headers added to a dead-lettered message.
pub const REASON_HEADER: &str = "x-stompbridge-reason";
const FAILURE_HEADER: &str = "x-stompbridge-failure";
const QUEUE_HEADER: &str = "x-stompbridge-queue";
const ROUTING_KEY_HEADER: &str = "x-stompbridge-routing-key";
const ATTEMPTS_HEADER: &str = "x-stompbridge-attempts";

/// The consume loop of one queue.
#[derive(Debug)]
pub struct Consumer {
    name: String,
    runtime: watch::Receiver<Arc<QueueRuntime>>,
    bridge: Arc<Bridge>,
    metrics: QueueMetrics,
    /// Publishes dead letters, with confirms.
    publisher: Channel,
    /// Limits the per-message warnings that bad input can repeat.
    log_limit: LogLimiter,
    /// Sender name of this consumer run in cluster messages.
    origin: String,
    /// Sequence number of the next cluster message.
    sequence: std::sync::atomic::AtomicU64,
}

// === impl Consumer ===

impl Consumer {
    /// Prepares a consumer; `publisher` is put in confirm mode for dead letters.
    ///
    /// # Errors
    ///
    /// The broker's error when confirm mode cannot be enabled.
    pub async fn new(
        runtime: watch::Receiver<Arc<QueueRuntime>>,
        bridge: Arc<Bridge>,
        publisher: Channel,
    ) -> lapin::Result<Self> {
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let name = runtime.borrow().config.name.clone();
        Ok(Self {
            metrics: bridge.metrics.queue(&name),
            origin: format!(
                "{}:{name}:{:08x}",
                bridge.instance_id,
                rand::random::<u32>()
            ),
            sequence: std::sync::atomic::AtomicU64::new(0),
            name,
            runtime,
            bridge,
            publisher,
            log_limit: LogLimiter::default(),
        })
    }

    /// Consumes on `channel` until `stop` is cancelled or the channel fails.
    /// Deliveries being handled finish; what RabbitMQ pushed ahead (prefetch) is
    /// requeued when the channel closes.
    ///
    /// # Errors
    ///
    /// The broker error that ended consumption.
    pub async fn run(
        self,
        channel: Channel,
        prefetch: u16,
        concurrency: u16,
        stop: CancellationToken,
    ) -> lapin::Result<()> {
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("stompbridge-{}-{:08x}", self.name, rand::random::<u32>());
        let deliveries = channel
            .basic_consume(
                self.name.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.bridge.metrics.rabbitmq_consumers.inc();
        self.bridge.queue_consuming(&self.name);

        // The first broker error, kept while concurrent deliveries finish.
        let failure = std::sync::Mutex::new(None);
        let this = &self;
        let (settlements, settling) = tokio::sync::mpsc::unbounded_channel();
        let consuming = async move {
            deliveries
                .take_until(stop.cancelled())
                .for_each_concurrent(usize::from(concurrency.max(1)), |delivery| {
                    let (failure, stop, settlements) = (&failure, &stop, &settlements);
                    async move {
                        let result = match delivery {
                            Ok(delivery) => this.process(delivery, stop, settlements).await,
                            Err(error) => Err(error),
                        };
                        if let Err(error) = result {
                            let mut first = failure.lock().unwrap_or_else(|p| p.into_inner());
                            first.get_or_insert(error);
                        }
                    }
                })
                .await;
            // Dropping the sender lets the settling task finish.
            drop(settlements);
            failure
        };
        let (failure, settled) = tokio::join!(consuming, settle::run(channel.clone(), settling));
        let failure = failure
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .or(settled.err());

        self.bridge.metrics.rabbitmq_consumers.dec();
        // Closing the channels hands unacknowledged prefetched messages back to
        // RabbitMQ. After a broker error they are already closed.
        let _ = channel.close(200, "consumer stopped".into()).await;
        let _ = self.publisher.close(200, "consumer stopped".into()).await;
        failure.map_or(Ok(()), Err)
    }

    async fn process(
        &self,
        delivery: Delivery,
        stop: &CancellationToken,
        settlements: &Settlements,
    ) -> lapin::Result<()> {
        let runtime = self.runtime.borrow().clone();
        let started = Instant::now();
        self.metrics.consumed.inc();
        let timestamp = envelope::format_timestamp(chrono::Utc::now());
        let incoming = Incoming {
            queue: &self.name,
            routing_key: delivery.routing_key.as_str(),
            body: &delivery.data,
            properties: &delivery.properties,
            redelivered: delivery.redelivered,
            timestamp: &timestamp,
        };

        let settle = self.handle(&runtime, &incoming, &delivery, stop).await;
        // When the settling task has stopped, its error ends this consume
        // loop and RabbitMQ requeues what was not settled.
        let _ = settlements.send((delivery.delivery_tag, settle));
        self.metrics
            .delivery_latency
            .observe(started.elapsed().as_secs_f64());
        if let Some(published) = delivery.properties.timestamp() {
            // AMQP timestamps count whole seconds since the epoch.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.metrics
                .publish_latency
                .observe((now - *published as f64).max(0.0));
        }
        Ok(())
    }

    /// Runs the handler with retries and decides how the delivery ends.
    async fn handle(
        &self,
        runtime: &QueueRuntime,
        incoming: &Incoming<'_>,
        delivery: &Delivery,
        stop: &CancellationToken,
    ) -> Settle {
        let retry = runtime.config.retry;
        let mut attempt = 1;
        loop {
            let failure = match runtime.handler.handle(incoming).await {
                Ok(Outcome::Publish { payload, extra }) => {
                    return self
                        .publish_handled(runtime, incoming, &payload, extra)
                        .await;
                }
                Ok(Outcome::Drop(DropReason::Duplicate)) => {
                    self.metrics.duplicates.inc();
                    debug!(amqp.queue = %self.name, routing_key = incoming.routing_key, "duplicate message dropped");
                    return Settle::Ack;
                }
                Err(failure) => failure,
            };
            self.bridge
                .metrics
                .handler_failure(&self.name, failure.reason);
            if !failure.is_transient() || attempt >= retry.max_attempts {
                return self.dead_letter(runtime, delivery, &failure, attempt).await;
            }
            let delay = retry
                .initial_delay
                .saturating_mul(2u32.saturating_pow(attempt - 1))
                .min(retry.max_delay);
            debug!(amqp.queue = %self.name, routing_key = incoming.routing_key, attempt, delay_ms = delay.as_millis() as u64, reason = %failure, "handler failed, retrying");
            self.metrics.retries.inc();
            tokio::select! {
                () = stop.cancelled() => return Settle::Requeue,
                () = tokio::time::sleep(delay) => {}
            }
            attempt += 1;
        }
    }

    /// Publishes the message to the queue's dead-letter exchange with the
    /// reason in headers, or rejects it when the queue has none.
    async fn dead_letter(
        &self,
        runtime: &QueueRuntime,
        delivery: &Delivery,
        failure: &Failure,
        attempts: u32,
    ) -> Settle {
        let routing_key = delivery.routing_key.as_str();
        let Some(exchange) = &runtime.config.dead_letter_exchange else {
            self.metrics.rejected.inc();
            if let Some(suppressed) = self.log_limit.check("rejected") {
                warn!(amqp.queue = %self.name, routing_key, reason = %failure, attempts, suppressed, "message rejected; the queue has no dead_letter_exchange");
            }
            return Settle::Reject;
        };
        let properties = dead_letter_properties(
            &delivery.properties,
            &self.name,
            routing_key,
            failure,
            attempts,
        );
        let published = async {
            self.publisher
                .basic_publish(
                    exchange.as_str().into(),
                    self.name.as_str().into(),
                    BasicPublishOptions::default(),
                    &delivery.data,
                    properties,
                )
                .await?
                .await
        }
        .await;
        match published {
            Ok(confirmation) if confirmation.is_ack() => {
                self.metrics.dead_lettered.inc();
                if let Some(suppressed) = self.log_limit.check("dead_lettered") {
                    warn!(amqp.queue = %self.name, routing_key, reason = %failure, attempts, dead_letter_exchange = %exchange, suppressed, "message dead-lettered");
                }
                Settle::Ack
            }
            Ok(_) => {
                warn!(amqp.queue = %self.name, routing_key, dead_letter_exchange = %exchange, "RabbitMQ rejected the dead letter; message requeued");
                Settle::Requeue
            }
            Err(error) => {
                warn!(amqp.queue = %self.name, routing_key, dead_letter_exchange = %exchange, error = %error, "dead-lettering failed; message requeued");
                Settle::Requeue
            }
        }
    }

    /// Sends a handled message to its destinations: to the local sessions, or
    /// through the cluster exchange to every instance's sessions. Returns how
    /// the delivery ends; a failed cluster publish requeues the message.
    async fn publish_handled(
        &self,
        runtime: &QueueRuntime,
        incoming: &Incoming<'_>,
        payload: &Payload,
        extra: Vec<Publication>,
    ) -> Settle {
        if matches!(payload.kind, PayloadKind::Text | PayloadKind::NotUtf8) {
            self.metrics.payload_not_json.inc();
            debug!(amqp.queue = %self.name, routing_key = incoming.routing_key, kind = ?payload.kind, "payload is not JSON");
        }
        let config = self.bridge.config();
        if !config.cluster.enabled {
            let router = &self.bridge.router;
            let deliveries = self.deliveries(runtime, incoming, payload, extra, |route| {
                router.has_subscribers(route)
            });
            let queued = cluster::deliver(&self.bridge, deliveries, incoming.redelivered);
            self.metrics.broadcast.inc();
            self.metrics.delivered.inc_by(queued);
            return Settle::Ack;
        }

        // Other instances may have subscribers, so every delivery is rendered.
        let message = cluster::Message {
            origin: self.origin.clone(),
            seq: self
                .sequence
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            queue: self.name.clone(),
            redelivered: incoming.redelivered,
            deliveries: self.deliveries(runtime, incoming, payload, extra, |_| true),
        };
        let published = async {
            self.publisher
                .basic_publish(
                    config.cluster.exchange.as_str().into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    &message.encode(),
                    BasicProperties::default(),
                )
                .await?
                .await
        }
        .await;
        match published {
            Ok(confirmation) if confirmation.is_ack() => {
                self.metrics.broadcast.inc();
                self.bridge.metrics.cluster_published_total.inc();
                Settle::Ack
            }
            Ok(_) => {
                warn!(amqp.queue = %self.name, "RabbitMQ rejected the cluster message; source message requeued");
                Settle::Requeue
            }
            Err(error) => {
                warn!(amqp.queue = %self.name, %error, "cluster publish failed; source message requeued");
                Settle::Requeue
            }
        }
    }

    /// Renders the deliveries of a handled message: the queue's broadcast
    /// destinations, its templates and the handler's extra publications.
    /// Bodies are rendered once each, and only for routes `wanted` accepts.
    fn deliveries(
        &self,
        runtime: &QueueRuntime,
        incoming: &Incoming<'_>,
        payload: &Payload,
        extra: Vec<Publication>,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<cluster::Delivery> {
        let mut envelope: Option<Bytes> = None;
        let mut render_envelope = || {
            envelope
                .get_or_insert_with(|| {
                    Envelope {
                        queue_name: &self.name,
                        handler_type: runtime.config.handler.as_str(),
                        routing_key: incoming.routing_key,
                        timestamp: incoming.timestamp,
                        payload: &payload.json,
                    }
                    .render()
                })
                .clone()
        };
        let to = |destination: &str, body: Bytes| cluster::Delivery {
            destination: destination.to_owned(),
            user: None,
            body,
        };
        let mut deliveries = Vec::new();

        if runtime.config.broadcasts() {
            if wanted(FIREHOSE) {
                let firehose = Envelope::render_firehose(&self.name, &render_envelope());
                deliveries.push(to(FIREHOSE, firehose));
            }
            if wanted(&runtime.destination) {
                deliveries.push(to(&runtime.destination, render_envelope()));
            }
        }

        let parsed = runtime
            .uses_payload
            .then(|| serde_json::from_str::<Value>(payload.json.get()).ok())
            .flatten();
        let context = Context {
            queue: &self.name,
            routing_key: incoming.routing_key,
            payload: parsed.as_ref(),
            headers: incoming.properties.headers().as_ref(),
        };
        for (template, body) in &runtime.templates {
            let destination = match template.render(&context) {
                Ok(destination) => destination,
                Err(skip) => {
                    self.metrics.destinations_skipped.inc();
                    if let Some(suppressed) = self.log_limit.check("destination_skipped") {
                        warn!(amqp.queue = %self.name, routing_key = incoming.routing_key, template = %template, reason = %skip, suppressed, "destination skipped");
                    }
                    continue;
                }
            };
            if wanted(&destination) {
                let body = match body {
                    BodyKind::Envelope => render_envelope(),
                    BodyKind::Payload => Bytes::copy_from_slice(payload.json.get().as_bytes()),
                };
                deliveries.push(to(&destination, body));
            }
        }

        for publication in extra {
            let route = match &publication.user {
                Some(user) => user_route(user, &publication.destination),
                None => publication.destination.clone(),
            };
            if wanted(&route) {
                deliveries.push(cluster::Delivery {
                    destination: publication.destination,
                    user: publication.user,
                    body: publication.body,
                });
            }
        }
        deliveries
    }
}

/// The original properties, with headers that say where the message came from
/// and why it could not be handled.
fn dead_letter_properties(
    original: &BasicProperties,
    queue: &str,
    routing_key: &str,
    failure: &Failure,
    attempts: u32,
) -> BasicProperties {
    let mut headers = original.headers().clone().unwrap_or_default();
    let text = |value: &str| AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()));
    headers.insert(REASON_HEADER.into(), text(&failure.to_string()));
    headers.insert(FAILURE_HEADER.into(), text(failure.reason.label()));
    headers.insert(QUEUE_HEADER.into(), text(queue));
    headers.insert(ROUTING_KEY_HEADER.into(), text(routing_key));
    headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongUInt(attempts));
    original.clone().with_headers(headers)
}
