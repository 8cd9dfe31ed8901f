//! One entry of `queues:` and the options of each handler.
//!
//! Handler options sit under a key named after the handler (`iot:`, `erp:`,
//! `webhook:`), so a queue's options read next to its `handler:` line.

use std::{fmt, path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer, de};

use super::schema::yes;

/// One entry of `queues`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// RabbitMQ queue name; also the `{queueName}` of `/topic/queues/{queueName}`.
    pub name: String,
    /// Human-readable name for logs and `check-config`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Binding keys on the queue's exchange. Required unless `declare: passive`.
    #[serde(default)]
    pub routing_key: RoutingKeys,
    #[serde(default)]
    pub handler: HandlerKind,
    /// `false` leaves the queue alone: not declared, bound or consumed.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `false` declares and binds the queue but does not consume it.
    #[serde(default = "yes")]
    pub auto_start: bool,
    /// Exchange to bind to; defaults to `rabbitmq.exchange`.
    #[serde(default)]
    pub exchange: Option<String>,
    #[serde(default = "yes")]
    pub durable: bool,
    /// `classic`, or `quorum` for a queue replicated across the nodes of a
    /// RabbitMQ cluster (needs `durable`).
    #[serde(default)]
    pub queue_type: QueueType,
    /// `create` declares the queue; `passive` only checks that it exists, for
    /// queues owned by another system, and consumes it with its own arguments.
    #[serde(default)]
    pub declare: DeclareMode,
    /// Exchange that receives messages this queue cannot handle, with the reason
    /// in the `x-stompbridge-reason` header. Declared as a durable direct exchange.
    #[serde(default)]
    pub dead_letter_exchange: Option<String>,
    /// Queue declared and bound to `dead_letter_exchange` to keep this queue's
    /// dead letters, with the source queue's name as binding key.
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    /// Overrides `rabbitmq.prefetch` for this queue.
    #[serde(default)]
    pub prefetch: Option<u16>,
    /// Messages handled at once. Above 1, sessions may receive this queue's
    /// messages out of order.
    #[serde(default = "one")]
    pub concurrency: u16,
    /// Publish the envelope on `/topic/queues/{name}` and the firehose
    /// `/topic/queues`. Defaults to true.
    #[serde(default)]
    pub broadcast: Option<bool>,
    /// Further destinations, as templates.
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    /// Retries of transient handler failures before the message is dead-lettered.
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub iot: Option<IotOptions>,
    #[serde(default)]
    pub erp: Option<ErpOptions>,
    #[serde(default)]
    pub webhook: Option<WebhookOptions>,
    #[serde(default)]
    pub notification: Option<NotificationOptions>,
}

/// A queue's handler type, as named in the envelope's `handlerType`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HandlerKind {
    #[default]
    Generic,
    Iot,
    Erp,
    Webhook,
    Entity,
    Notification,
}

/// The RabbitMQ queue type a created queue gets (`x-queue-type`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

/// How the bridge declares a queue.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeclareMode {
    #[default]
    Create,
    Passive,
}

/// One routing key or a list of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutingKeys(pub Vec<String>);

/// One entry of `destinations`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Template such as `/topic/reservoir/{payload.reservoirId}/sensors`.
    pub destination: String,
    #[serde(default)]
    pub body: BodyKind,
}

/// What a templated destination receives.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    /// The queue's envelope.
    #[default]
    Envelope,
    /// The handler's payload alone.
    Payload,
}

/// `retry`: backoff for transient handler failures.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt.
    #[serde(with = "humantime_serde")]
    pub initial_delay: Duration,
    /// Cap on the delay between attempts.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}

/// `iot`: options of the `iot` handler.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IotOptions {
    /// Computes `alertLevel` when a reading has none.
    pub thresholds: Option<Thresholds>,
    /// Where every valid reading is also published.
    pub event_destination: String,
}

/// Alert thresholds on an IoT reading's `value`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub warning: f64,
    pub critical: f64,
    /// `above` (default) raises alerts for high values, `below` for low ones.
    #[serde(default)]
    pub direction: ThresholdDirection,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdDirection {
    #[default]
    Above,
    Below,
}

/// `erp`: options of the `erp` handler.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ErpOptions {
    /// Payload field (dotted path) that identifies a message. Without it, the
    /// AMQP `message-id` property does.
    pub dedup_key: Option<String>,
    /// How long an id is remembered.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Most ids remembered at once; the oldest are forgotten first.
    pub max_ids: usize,
}

/// `notification`: options of the `notification` handler.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationOptions {
    /// Payload field naming one recipient (a string or a number).
    pub user_field: String,
    /// Payload field naming several recipients (a list).
    pub users_field: String,
    /// Where each recipient's sessions receive it: a session of user U
    /// subscribed to `/user{user_destination}` gets what is sent to U here.
    pub user_destination: String,
}

impl Default for NotificationOptions {
    fn default() -> Self {
        Self {
            user_field: "userId".into(),
            users_field: "userIds".into(),
            user_destination: "/queue/notifications".into(),
        }
    }
}

/// `webhook`: options of the `webhook` handler.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookOptions {
    /// URL the envelope is POSTed to.
    pub url: String,
    /// Time allowed for one request, connection included.
    #[serde(default = "webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Environment variable holding the HMAC-SHA256 signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the signing secret (trailing newline ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Header carrying `sha256=<hex HMAC of the body>`.
    #[serde(default = "signature_header")]
    pub signature_header: String,
    /// The secret from `secret_env` or `secret_file`, read when the file is loaded.
    #[serde(skip)]
    pub secret: Option<Secret>,
}

/// A secret value. Its `Debug` output is redacted so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub std::sync::Arc<[u8]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

// === impl defaults ===

fn one() -> u16 {
    1
}

fn webhook_timeout() -> Duration {
    Duration::from_secs(10)
}

fn signature_header() -> String {
    "X-Stompbridge-Signature".into()
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl Default for IotOptions {
    fn default() -> Self {
        Self {
            thresholds: None,
            event_destination: "/topic/iot-event".into(),
        }
    }
}

impl Default for ErpOptions {
    fn default() -> Self {
        Self {
            dedup_key: None,
            window: Duration::from_secs(600),
            max_ids: 100_000,
        }
    }
}

// === impl QueueConfig ===

impl QueueConfig {
    /// Whether the envelope goes to `/topic/queues/{name}` and `/topic/queues`.
    /// Notifications are private, so their queues do not unless they say so.
    pub fn broadcasts(&self) -> bool {
        self.broadcast
            .unwrap_or(self.handler != HandlerKind::Notification)
    }
}

// === impl HandlerKind ===

impl HandlerKind {
    /// Returns the name used in the YAML file and in the envelope's `handlerType`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerKind::Generic => "generic",
            HandlerKind::Iot => "iot",
            HandlerKind::Erp => "erp",
            HandlerKind::Webhook => "webhook",
            HandlerKind::Entity => "entity",
            HandlerKind::Notification => "notification",
        }
    }
}

// === impl RoutingKeys ===

impl<'de> Deserialize<'de> for RoutingKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> de::Visitor<'de> for Visitor {
            type Value = RoutingKeys;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a routing key or a list of routing keys")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
                Ok(RoutingKeys(vec![key.to_owned()]))
            }

            fn visit_u64<E: de::Error>(self, key: u64) -> Result<Self::Value, E> {
                Ok(RoutingKeys(vec![key.to_string()]))
            }

            fn visit_i64<E: de::Error>(self, key: i64) -> Result<Self::Value, E> {
                Ok(RoutingKeys(vec![key.to_string()]))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = seq.next_element::<String>()? {
                    keys.push(key);
                }
                Ok(RoutingKeys(keys))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}
