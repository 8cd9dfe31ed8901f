//! The YAML configuration file, as serde types.
//!
//! Every key is documented in `config.example.yaml`. Unknown keys are errors so a
//! typo never silently falls back to a default. Defaults live in the `DEFAULT_*`
//! consts next to the code that applies them, or in the `Default` impls below.

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{AccessRule, AuthConfig, QueueConfig};
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
    pub auth: AuthConfig,
    /// Who may subscribe or send where; tried before the default rules.
    #[serde(default)]
    pub access: Vec<AccessRule>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub queues: Vec<Spanned<QueueConfig>>,
}

/// `cluster`: several instances behind one RabbitMQ. Needs a restart.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Off: this instance consumes and delivers on its own, as a single
    /// instance should.
    pub enabled: bool,
    /// Fanout exchange the handled messages travel through.
    pub exchange: String,
    /// Name of this instance in logs, metrics, `/readyz` and its queue name;
    /// by default the host name and a random suffix.
    pub instance_id: Option<String>,
    /// Messages this instance's cluster queue holds before RabbitMQ drops the
    /// oldest (counted as lost by the receiving instance).
    pub max_queue_length: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            exchange: "stompbridge.cluster".into(),
            instance_id: None,
            max_queue_length: 100_000,
        }
    }
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
    /// Time shutdown waits for sessions and in-flight messages to finish.
    /// Keep systemd's `TimeoutStopSec` above it.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
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
    /// Time an HTTP-transport session may go without a receiving request
    /// before it is closed.
    #[serde(with = "humantime_serde")]
    pub disconnect_delay: Duration,
    /// Bytes after which a streaming response ends and the client opens a
    /// new one, so browsers can free memory.
    pub response_limit: usize,
    /// Whether the websocket transports are offered.
    pub websocket: bool,
    /// Set a `JSESSIONID` cookie on session responses, for load balancers
    /// that stick sessions by cookie.
    pub cookie_needed: bool,
    /// URL of sockjs-client loaded by the iframe page.
    pub client_url: String,
    /// Most HTTP-transport sessions at once.
    pub max_sessions: usize,
    /// Bytes queued for one HTTP-transport session waiting for its next
    /// receiving request; past it the session is closed as a slow consumer.
    pub max_queued_bytes: usize,
    /// Largest `xhr_send` or `jsonp_send` body, in bytes.
    pub max_post_bytes: usize,
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
    /// Name shown for the bridge's connection in the RabbitMQ management UI.
    pub connection_name: String,
    /// Exchange that queues bind to unless they name their own. Declared durable.
    pub exchange: String,
    /// Exchange that client SENDs to `/app/{name}` are published to, with
    /// routing key `{name}`. Declared durable, of `exchange_type`.
    pub app_exchange: String,
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

// === impl defaults ===

pub(super) fn yes() -> bool {
    true
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1337)),
            allowed_origins: vec!["*".into()],
            websocket_path: "/ws-raw".into(),
            sockjs: SockJsConfig::default(),
            shutdown_grace: crate::shutdown::DEFAULT_GRACE,
        }
    }
}

impl Default for SockJsConfig {
    fn default() -> Self {
        Self {
            paths: vec!["/ws".into(), "/ws/chat".into()],
            heartbeat_interval: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            response_limit: 128 * 1024,
            websocket: true,
            cookie_needed: false,
            client_url: crate::transport::sockjs::DEFAULT_CLIENT_URL.into(),
            max_sessions: 100_000,
            max_queued_bytes: 1024 * 1024,
            max_post_bytes: 128 * 1024,
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
            connection_name: "stompbridge".into(),
            exchange: "amq.topic".into(),
            app_exchange: "stompbridge.app".into(),
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
