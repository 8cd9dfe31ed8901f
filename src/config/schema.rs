//! The YAML configuration file, as serde types.
//!
//! Every key is documented in `config.example.yaml`. Unknown keys are errors so a
//! typo never silently falls back to a default. Defaults live in the `DEFAULT_*`
//! consts next to the code that applies them, or in the `Default` impls below.

use std::{fmt, net::SocketAddr, time::Duration};

use serde::{Deserialize, Deserializer, de};
use serde_saphyr::Spanned;

use crate::stomp::codec::{
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_HEADER_LINE_BYTES, DEFAULT_MAX_HEADERS,
};

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub rabbitmq: RabbitMqConfig,
    #[serde(default)]
    pub stomp: StompConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub queues: Vec<Spanned<QueueConfig>>,
}

/// `server`: the public listener for WebSocket and SockJS clients.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the public listener. Needs a restart.
    pub listen: SocketAddr,
    /// Origins allowed to open browser connections; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Path of the raw WebSocket endpoint (no SockJS framing).
    pub websocket_path: String,
    pub sockjs: SockJsConfig,
}

/// `server.sockjs`: SockJS endpoints and their timers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SockJsConfig {
    /// URL prefixes served as SockJS endpoints. Needs a restart.
    pub paths: Vec<String>,
    /// Interval of SockJS `h` frames on an otherwise idle connection.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
}

/// `admin`: the listener for health checks and metrics.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener. Needs a restart.
    pub listen: SocketAddr,
}

/// `rabbitmq`: the broker connection and the default exchange.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitMqConfig {
    /// AMQP URL; the environment variable `STOMPBRIDGE_AMQP_URL` overrides it.
    pub url: String,
    /// Exchange that queues bind to unless they name their own. Declared durable.
    pub exchange: String,
    /// Type of every exchange the bridge declares.
    pub exchange_type: ExchangeType,
    /// Unacknowledged deliveries RabbitMQ may push per queue consumer.
    pub prefetch: u16,
    /// First delay before reconnecting after a connection loss; doubles per try.
    #[serde(with = "humantime_serde")]
    pub reconnect_initial_delay: Duration,
    /// Cap on the reconnect delay.
    #[serde(with = "humantime_serde")]
    pub reconnect_max_delay: Duration,
}

/// AMQP exchange types the bridge can declare.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    Topic,
    Direct,
    Fanout,
    Headers,
}

/// `stomp`: protocol settings offered to clients.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StompConfig {
    pub heart_beat: HeartBeatConfig,
}

/// `stomp.heart_beat`: the intervals the server offers in CONNECTED. Zero
/// disables that direction.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeartBeatConfig {
    /// Shortest interval at which the server sends heart-beats.
    #[serde(with = "humantime_serde")]
    pub send: Duration,
    /// Interval at which the server wants heart-beats from clients.
    #[serde(with = "humantime_serde")]
    pub receive: Duration,
}

/// `limits`: bounds on what one client may cost the bridge.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_frame_bytes: usize,
    pub max_headers: usize,
    pub max_header_line_bytes: usize,
    pub max_subscriptions_per_session: usize,
    pub max_sessions: usize,
    /// Time a new connection has to send CONNECT.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// MESSAGE frames queued for one session before it is closed as a slow consumer.
    pub outbox_frames: usize,
    /// Time one write to a client may take before the session is closed.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
}

/// `log`: log output.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `stompbridge=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// One entry of `queues`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// RabbitMQ queue name; also the `{queueName}` of `/topic/queues/{queueName}`.
    pub name: String,
    /// Human-readable name for logs and `check-config`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Binding keys on the queue's exchange.
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
    /// Overrides `rabbitmq.prefetch` for this queue.
    #[serde(default)]
    pub prefetch: Option<u16>,
    /// Publish the envelope on `/topic/queues/{name}` and the firehose `/topic/queues`.
    #[serde(default = "yes")]
    pub broadcast: bool,
}

/// A queue's handler type, as named in the envelope's `handlerType`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HandlerKind {
    #[default]
    Generic,
}

/// One routing key or a list of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingKeys(pub Vec<String>);

// === impl defaults ===

fn yes() -> bool {
    true
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1337)),
            allowed_origins: vec!["*".into()],
            websocket_path: "/ws-raw".into(),
            sockjs: SockJsConfig::default(),
        }
    }
}

impl Default for SockJsConfig {
    fn default() -> Self {
        Self {
            paths: vec!["/ws".into(), "/ws/chat".into()],
            heartbeat_interval: Duration::from_secs(25),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

impl Default for RabbitMqConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "amq.topic".into(),
            exchange_type: ExchangeType::Topic,
            prefetch: 256,
            reconnect_initial_delay: Duration::from_millis(500),
            reconnect_max_delay: Duration::from_secs(30),
        }
    }
}

impl Default for HeartBeatConfig {
    fn default() -> Self {
        Self {
            send: Duration::from_secs(10),
            receive: Duration::from_secs(10),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_header_line_bytes: DEFAULT_MAX_HEADER_LINE_BYTES,
            max_subscriptions_per_session: 128,
            max_sessions: 100_000,
            connect_timeout: Duration::from_secs(10),
            outbox_frames: 4096,
            write_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

// === impl ExchangeType ===

impl ExchangeType {
    /// Converts the type to lapin's exchange kind.
    pub fn kind(self) -> lapin::ExchangeKind {
        match self {
            ExchangeType::Topic => lapin::ExchangeKind::Topic,
            ExchangeType::Direct => lapin::ExchangeKind::Direct,
            ExchangeType::Fanout => lapin::ExchangeKind::Fanout,
            ExchangeType::Headers => lapin::ExchangeKind::Headers,
        }
    }
}

// === impl HandlerKind ===

impl HandlerKind {
    /// Returns the name used in the YAML file and in the envelope's `handlerType`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerKind::Generic => "generic",
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
