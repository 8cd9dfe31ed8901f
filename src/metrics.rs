//! Every Prometheus metric the bridge exports, defined once.
//!
//! Label values come only from closed sets (transport, command, disconnect
//! reason) and from configured queue names, never from client input. Each
//! bridge owns its registry, so several bridges can run in one process (tests).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::{
    auth::{Action, AuthError},
    disconnect::Disconnect,
    handler::FailureReason,
    stomp::{Command, DecodeError},
};

const PREFIX: &str = "stompbridge";

/// Transports, as the `transport` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Raw WebSocket, STOMP frames directly in WebSocket messages.
    WebSocket,
    /// SockJS over WebSocket, with SockJS framing.
    SockJsWebSocket,
    SockJsXhrStreaming,
    SockJsXhrPolling,
    SockJsEventSource,
    SockJsHtmlFile,
    SockJsJsonp,
}

/// Limits a client can exceed, as the `limit` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    FrameBytes,
    Headers,
    HeaderLineBytes,
    Subscriptions,
    Sessions,
    ConnectTimeout,
    Outbox,
}

impl Limit {
    pub const ALL: [Limit; 7] = [
        Limit::FrameBytes,
        Limit::Headers,
        Limit::HeaderLineBytes,
        Limit::Subscriptions,
        Limit::Sessions,
        Limit::ConnectTimeout,
        Limit::Outbox,
    ];

    /// The label value, named after the `limits.*` setting.
    pub fn label(self) -> &'static str {
        match self {
            Limit::FrameBytes => "max_frame_bytes",
            Limit::Headers => "max_headers",
            Limit::HeaderLineBytes => "max_header_line_bytes",
            Limit::Subscriptions => "max_subscriptions_per_session",
            Limit::Sessions => "max_sessions",
            Limit::ConnectTimeout => "connect_timeout",
            Limit::Outbox => "outbox_frames",
        }
    }

    /// The limit a decoding error reports, if it is one.
    pub fn of_decode_error(error: &DecodeError) -> Option<Limit> {
        match error {
            DecodeError::FrameTooLarge { .. } => Some(Limit::FrameBytes),
            DecodeError::TooManyHeaders { .. } => Some(Limit::Headers),
            DecodeError::HeaderLineTooLong { .. } => Some(Limit::HeaderLineBytes),
            _ => None,
        }
    }
}

/// Counters resolved for one queue, so the consume loop does no label lookups.
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    pub consumed: IntCounter,
    pub broadcast: IntCounter,
    pub delivered: IntCounter,
    pub payload_not_json: IntCounter,
    pub dead_lettered: IntCounter,
    pub rejected: IntCounter,
    pub retries: IntCounter,
    pub duplicates: IntCounter,
    pub destinations_skipped: IntCounter,
    pub delivery_latency: Histogram,
    pub publish_latency: Histogram,
}

/// The bridge's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    pub connections_total: IntCounterVec,
    pub connections: IntGaugeVec,
    pub sessions: IntGauge,
    pub subscriptions: IntGauge,
    frames_received: Vec<IntCounter>,
    frames_sent: Vec<IntCounter>,
    disconnects: Vec<IntCounter>,
    consumed: IntCounterVec,
    broadcast: IntCounterVec,
    delivered: IntCounterVec,
    payload_not_json: IntCounterVec,
    dead_lettered: IntCounterVec,
    rejected: IntCounterVec,
    retries: IntCounterVec,
    duplicates: IntCounterVec,
    destinations_skipped: IntCounterVec,
    handler_failures: IntCounterVec,
    delivery_latency: HistogramVec,
    publish_latency: HistogramVec,
    config_reloads: IntCounterVec,
    auth_failures: Vec<IntCounter>,
    access_denied: IntCounterVec,
    limits_exceeded: IntCounterVec,
    pub connections_rejected: IntCounterVec,
    sends: IntCounterVec,
    pub cluster_published_total: IntCounter,
    pub cluster_received_total: IntCounter,
    pub cluster_lost_total: IntCounter,
    pub cluster_invalid_total: IntCounter,
    pub cluster_restarts_total: IntCounter,
    pub cluster_queue_depth: IntGauge,
    pub instance_info: IntGaugeVec,
    pub sockjs_sessions: IntGauge,
    pub sockjs_rejected: IntCounterVec,
    pub rabbitmq_connected: IntGauge,
    pub rabbitmq_reconnects_total: IntCounter,
    pub rabbitmq_consumers: IntGauge,
}

// === impl Transport ===

impl Transport {
    pub const ALL: [Transport; 7] = [
        Transport::WebSocket,
        Transport::SockJsWebSocket,
        Transport::SockJsXhrStreaming,
        Transport::SockJsXhrPolling,
        Transport::SockJsEventSource,
        Transport::SockJsHtmlFile,
        Transport::SockJsJsonp,
    ];

    /// Returns the `transport` label value.
    pub fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::SockJsWebSocket => "sockjs_websocket",
            Transport::SockJsXhrStreaming => "sockjs_xhr_streaming",
            Transport::SockJsXhrPolling => "sockjs_xhr_polling",
            Transport::SockJsEventSource => "sockjs_eventsource",
            Transport::SockJsHtmlFile => "sockjs_htmlfile",
            Transport::SockJsJsonp => "sockjs_jsonp",
        }
    }
}

// === impl Metrics ===

impl Metrics {
    /// Creates and registers every metric in a new registry.
    ///
    /// # Panics
    ///
    /// Never in practice: registration fails only for duplicate or malformed
    /// names, and the names here are fixed.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = Registrar(&registry);
        let frames_received = r.counter_vec(
            "frames_received_total",
            "STOMP frames received from clients, by command",
            &["command"],
        );
        let frames_sent = r.counter_vec(
            "frames_sent_total",
            "STOMP frames sent to clients, by command",
            &["command"],
        );
        let disconnects = r.counter_vec(
            "disconnects_total",
            "Sessions ended, by reason",
            &["reason"],
        );
        let connections_total = r.counter_vec(
            "connections_total",
            "Client connections accepted, by transport",
            &["transport"],
        );
        let connections = r.gauge_vec(
            "connections",
            "Client connections open now, by transport",
            &["transport"],
        );
        for transport in Transport::ALL {
            connections_total.with_label_values(&[transport.label()]);
            connections.with_label_values(&[transport.label()]);
        }
        let build_info = r.gauge_vec(
            "build_info",
            "Build information; the value is always 1",
            &["version", "commit"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("STOMPBRIDGE_COMMIT")])
            .set(1);
        let latency_buckets = vec![
            0.000_05, 0.0001, 0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            0.5, 1.0,
        ];

        let auth_failures = r.counter_vec(
            "auth_failures_total",
            "Tokens rejected on CONNECT or refresh, by reason",
            &["reason"],
        );
        let access_denied = r.counter_vec(
            "access_denied_total",
            "SUBSCRIBE and SEND frames denied by the access rules, by action",
            &["action"],
        );
        let limits_exceeded = r.counter_vec(
            "limits_exceeded_total",
            "Clients that exceeded a limit, by limit",
            &["limit"],
        );
        for limit in Limit::ALL {
            limits_exceeded.with_label_values(&[limit.label()]);
        }
        let connections_rejected = r.counter_vec(
            "connections_rejected_total",
            "Connection attempts refused before a session started, by reason",
            &["reason"],
        );
        for reason in ["origin", "max_sessions"] {
            connections_rejected.with_label_values(&[reason]);
        }
        let sends = r.counter_vec(
            "sends_total",
            "Client SEND frames published to RabbitMQ, by result",
            &["result"],
        );
        for result in ["confirmed", "failed"] {
            sends.with_label_values(&[result]);
        }

        let sockjs_rejected = r.counter_vec(
            "sockjs_rejected_total",
            "SockJS requests refused, by reason: max_sessions, post_too_large",
            &["reason"],
        );
        for reason in ["max_sessions", "post_too_large"] {
            sockjs_rejected.with_label_values(&[reason]);
        }

        Self {
            cluster_published_total: r.counter(
                "cluster_published_total",
                "Handled messages published to the cluster exchange by this instance",
            ),
            cluster_received_total: r.counter(
                "cluster_received_total",
                "Messages received from the cluster exchange",
            ),
            cluster_lost_total: r.counter(
                "cluster_lost_total",
                "Cluster messages this instance missed because its queue overflowed",
            ),
            cluster_invalid_total: r.counter(
                "cluster_invalid_total",
                "Messages on the cluster queue that were not cluster messages",
            ),
            cluster_restarts_total: r.counter(
                "cluster_restarts_total",
                "Times the cluster queue was declared and consumed again while RabbitMQ stayed connected",
            ),
            cluster_queue_depth: r.gauge(
                "cluster_queue_depth",
                "Messages waiting in this instance's cluster queue, sampled every 5 s",
            ),
            instance_info: r.gauge_vec(
                "instance_info",
                "This instance's cluster.instance_id; the value is always 1",
                &["instance"],
            ),
            sockjs_sessions: r.gauge("sockjs_sessions", "SockJS sessions on the HTTP transports open now"),
            sockjs_rejected,
            auth_failures: per_label(&auth_failures, AuthError::ALL.map(AuthError::label)),
            access_denied,
            limits_exceeded,
            connections_rejected,
            sends,
            frames_received: per_label(&frames_received, Command::ALL.map(Command::as_str)),
            frames_sent: per_label(&frames_sent, Command::ALL.map(Command::as_str)),
            disconnects: per_label(&disconnects, Disconnect::LABELS),
            connections_total,
            connections,
            sessions: r.gauge("sessions", "STOMP sessions past CONNECT"),
            subscriptions: r.gauge("subscriptions", "Active subscriptions over all sessions"),
            consumed: r.counter_vec(
                "messages_consumed_total",
                "Messages received from RabbitMQ, by queue",
                &["queue"],
            ),
            broadcast: r.counter_vec(
                "messages_broadcast_total",
                "Messages handled successfully and routed to their destinations, by queue",
                &["queue"],
            ),
            delivered: r.counter_vec(
                "messages_delivered_total",
                "MESSAGE frames queued on client sessions, by source queue",
                &["queue"],
            ),
            payload_not_json: r.counter_vec(
                "payload_not_json_total",
                "Message bodies that were not JSON and were sent as a JSON string, by queue",
                &["queue"],
            ),
            dead_lettered: r.counter_vec(
                "messages_dead_lettered_total",
                "Messages published to the queue's dead-letter exchange, by queue",
                &["queue"],
            ),
            rejected: r.counter_vec(
                "messages_rejected_total",
                "Failed messages rejected without requeue because the queue has no dead_letter_exchange, by queue",
                &["queue"],
            ),
            retries: r.counter_vec(
                "handler_retries_total",
                "Handler attempts repeated after a transient failure, by queue",
                &["queue"],
            ),
            duplicates: r.counter_vec(
                "messages_duplicate_total",
                "Messages dropped by the erp handler as duplicates, by queue",
                &["queue"],
            ),
            destinations_skipped: r.counter_vec(
                "destinations_skipped_total",
                "Templated destinations skipped because a placeholder had no value or an unsafe one, by queue",
                &["queue"],
            ),
            handler_failures: r.counter_vec(
                "handler_failures_total",
                "Failed handler attempts, by queue and reason",
                &["queue", "reason"],
            ),
            config_reloads: {
                let reloads = r.counter_vec(
                    "config_reloads_total",
                    "Configuration reloads, by result: applied, unchanged or rejected",
                    &["result"],
                );
                for result in ["applied", "unchanged", "rejected"] {
                    reloads.with_label_values(&[result]);
                }
                reloads
            },
            delivery_latency: r.histogram_vec(
                "delivery_latency_seconds",
                "Time from AMQP delivery to the message being queued on every subscribed session",
                &["queue"],
                latency_buckets,
            ),
            publish_latency: r.histogram_vec(
                "publish_latency_seconds",
                "Time from the AMQP timestamp property (whole seconds) to the message being queued on every session, for messages that carry one",
                &["queue"],
                vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0],
            ),
            rabbitmq_connected: r.gauge(
                "rabbitmq_connected",
                "1 while the RabbitMQ connection is up, else 0",
            ),
            rabbitmq_reconnects_total: r.counter(
                "rabbitmq_reconnects_total",
                "RabbitMQ connections re-established after a loss",
            ),
            rabbitmq_consumers: r.gauge("rabbitmq_consumers", "Queues being consumed now"),
            registry,
        }
    }

    /// Counters for one configured queue.
    pub fn queue(&self, name: &str) -> QueueMetrics {
        QueueMetrics {
            consumed: self.consumed.with_label_values(&[name]),
            broadcast: self.broadcast.with_label_values(&[name]),
            delivered: self.delivered.with_label_values(&[name]),
            payload_not_json: self.payload_not_json.with_label_values(&[name]),
            dead_lettered: self.dead_lettered.with_label_values(&[name]),
            rejected: self.rejected.with_label_values(&[name]),
            retries: self.retries.with_label_values(&[name]),
            duplicates: self.duplicates.with_label_values(&[name]),
            destinations_skipped: self.destinations_skipped.with_label_values(&[name]),
            delivery_latency: self.delivery_latency.with_label_values(&[name]),
            publish_latency: self.publish_latency.with_label_values(&[name]),
        }
    }

    /// Counts one failed handler attempt.
    pub fn handler_failure(&self, queue: &str, reason: FailureReason) {
        self.handler_failures
            .with_label_values(&[queue, reason.label()])
            .inc();
    }

    /// Counts one configuration reload: `applied`, `unchanged` or `rejected`.
    pub fn config_reload(&self, result: &'static str) {
        self.config_reloads.with_label_values(&[result]).inc();
    }

    pub fn auth_failure(&self, reason: AuthError) {
        // AuthError::ALL lists the variants in declaration order.
        self.auth_failures[reason as usize].inc();
    }

    pub fn access_denied(&self, action: Action) {
        self.access_denied
            .with_label_values(&[action.as_str()])
            .inc();
    }

    pub fn limit_exceeded(&self, limit: Limit) {
        self.limits_exceeded
            .with_label_values(&[limit.label()])
            .inc();
    }

    /// Counts a SEND by result: `confirmed` or `failed`.
    pub fn send(&self, result: &'static str) {
        self.sends.with_label_values(&[result]).inc();
    }

    pub fn frame_received(&self, command: Command) {
        self.frames_received[command.index()].inc();
    }

    pub fn frames_sent(&self, command: Command, count: u64) {
        self.frames_sent[command.index()].inc_by(count);
    }

    pub fn disconnected(&self, reason: &Disconnect) {
        self.disconnects[reason.index()].inc();
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on invalid metric data, which the
        // definitions above rule out. An empty page is returned if it happens.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            out.clear();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn per_label<const N: usize>(vec: &IntCounterVec, labels: [&str; N]) -> Vec<IntCounter> {
    labels
        .iter()
        .map(|label| vec.with_label_values(&[*label]))
        .collect()
}

/// Creates metrics under the common prefix and registers them.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn opts(name: &str, help: &str) -> Opts {
        Opts::new(name, help).namespace(PREFIX)
    }

    fn register<M: prometheus::core::Collector + Clone + 'static>(&self, metric: M) -> M {
        self.0
            .register(Box::new(metric.clone()))
            .expect("metric names are fixed and unique");
        metric
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        let metric = IntCounter::with_opts(Self::opts(name, help)).expect("valid metric options");
        self.register(metric)
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let metric =
            IntCounterVec::new(Self::opts(name, help), labels).expect("valid metric options");
        self.register(metric)
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        let metric = IntGauge::with_opts(Self::opts(name, help)).expect("valid metric options");
        self.register(metric)
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let metric =
            IntGaugeVec::new(Self::opts(name, help), labels).expect("valid metric options");
        self.register(metric)
    }

    fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help)
            .namespace(PREFIX)
            .buckets(buckets);
        let metric = HistogramVec::new(opts, labels).expect("valid metric options");
        self.register(metric)
    }
}
