//! Semantic checks on a parsed configuration. Every problem is collected, so an
//! operator fixes a file in one pass.

use std::{collections::HashSet, fmt, str::FromStr, time::Duration};

use lapin::uri::AMQPUri;
use serde_saphyr::Location;

use super::{Config, QueueConfig};

/// AMQP short strings (queue, exchange and routing key names) hold at most 255 bytes.
const MAX_AMQP_NAME_BYTES: usize = 255;

/// One invalid setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Line and column of the YAML node, where known.
    pub location: Option<(u64, u64)>,
    /// Dotted path of the key, such as `queues[2].name`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.location {
            write!(f, "line {line} column {column}: ")?;
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn at(&mut self, location: Option<Location>, key: impl Into<String>, message: String) {
        self.0.push(Problem {
            location: location
                .filter(|l| l.line() > 0)
                .map(|l| (l.line(), l.column())),
            key: key.into(),
            message,
        });
    }

    fn add(&mut self, key: impl Into<String>, message: String) {
        self.at(None, key, message);
    }

    fn positive(&mut self, key: &str, value: usize) {
        if value == 0 {
            self.add(key, "must be greater than 0".into());
        }
    }

    fn nonzero_duration(&mut self, key: &str, value: Duration) {
        if value.is_zero() {
            self.add(key, "must be longer than 0s".into());
        }
    }

    fn path(&mut self, key: &str, path: &str) {
        if !path.starts_with('/') || (path.len() > 1 && path.ends_with('/')) {
            self.add(
                key,
                format!("{path:?} must start with '/' and not end with '/'"),
            );
        }
    }
}

/// Returns every problem in `config`; empty when it is valid.
pub(crate) fn check(config: &Config) -> Vec<Problem> {
    let mut problems = Problems::default();
    check_server(config, &mut problems);
    check_rabbitmq(config, &mut problems);
    check_limits(config, &mut problems);
    if tracing_subscriber::EnvFilter::try_new(&config.log.level).is_err() {
        problems.add(
            "log.level",
            format!("{:?} is not a valid log filter", config.log.level),
        );
    }

    let mut names = HashSet::new();
    for (i, queue) in config.queues.iter().enumerate() {
        let location = Some(queue.referenced);
        if !names.insert(queue.value.name.as_str()) {
            problems.at(
                location,
                format!("queues[{i}].name"),
                format!("duplicate queue name {:?}", queue.value.name),
            );
        }
        check_queue(i, &queue.value, location, &mut problems);
    }
    problems.0
}

fn check_server(config: &Config, problems: &mut Problems) {
    let server = &config.server;
    problems.path("server.websocket_path", &server.websocket_path);
    let mut seen = HashSet::from([server.websocket_path.as_str()]);
    for (i, path) in server.sockjs.paths.iter().enumerate() {
        let key = format!("server.sockjs.paths[{i}]");
        problems.path(&key, path);
        if !seen.insert(path) {
            problems.add(key, format!("{path:?} is already used by another endpoint"));
        }
    }
    problems.nonzero_duration(
        "server.sockjs.heartbeat_interval",
        server.sockjs.heartbeat_interval,
    );
    if server.allowed_origins.is_empty() {
        problems.add(
            "server.allowed_origins",
            "must list at least one origin, or \"*\" for any".into(),
        );
    }
    if server.listen == config.admin.listen && server.listen.port() != 0 {
        problems.add(
            "admin.listen",
            format!("{} is also server.listen", server.listen),
        );
    }
}

fn check_rabbitmq(config: &Config, problems: &mut Problems) {
    let rabbitmq = &config.rabbitmq;
    if let Err(reason) = AMQPUri::from_str(&rabbitmq.url) {
        // The URL may carry a password, so only the parser's reason is shown.
        problems.add("rabbitmq.url", format!("not a valid AMQP URL: {reason}"));
    }
    check_amqp_name(problems, "rabbitmq.exchange", &rabbitmq.exchange);
    problems.positive("rabbitmq.prefetch", rabbitmq.prefetch.into());
    problems.nonzero_duration(
        "rabbitmq.reconnect_initial_delay",
        rabbitmq.reconnect_initial_delay,
    );
    if rabbitmq.reconnect_max_delay < rabbitmq.reconnect_initial_delay {
        problems.add(
            "rabbitmq.reconnect_max_delay",
            "must not be shorter than rabbitmq.reconnect_initial_delay".into(),
        );
    }
}

fn check_limits(config: &Config, problems: &mut Problems) {
    let limits = &config.limits;
    if limits.max_frame_bytes < 1024 {
        problems.add(
            "limits.max_frame_bytes",
            "must be at least 1024 so CONNECT and ERROR frames fit".into(),
        );
    }
    if limits.max_header_line_bytes < 256 {
        problems.add(
            "limits.max_header_line_bytes",
            "must be at least 256".into(),
        );
    }
    problems.positive("limits.max_headers", limits.max_headers);
    problems.positive(
        "limits.max_subscriptions_per_session",
        limits.max_subscriptions_per_session,
    );
    problems.positive("limits.max_sessions", limits.max_sessions);
    problems.positive("limits.outbox_frames", limits.outbox_frames);
    problems.nonzero_duration("limits.connect_timeout", limits.connect_timeout);
    problems.nonzero_duration("limits.write_timeout", limits.write_timeout);
}

fn check_queue(i: usize, queue: &QueueConfig, location: Option<Location>, problems: &mut Problems) {
    let key = |field: &str| format!("queues[{i}].{field}");
    if let Some(reason) = destination_segment_problem(&queue.name) {
        problems.at(
            location,
            key("name"),
            format!(
                "{:?} {reason}, since it names the destination /topic/queues/{{name}}",
                queue.name
            ),
        );
    } else if queue.name.starts_with("amq.") {
        problems.at(
            location,
            key("name"),
            format!(
                "{:?}: names starting with \"amq.\" are reserved by RabbitMQ",
                queue.name
            ),
        );
    }
    if queue.routing_key.0.is_empty() {
        problems.at(
            location,
            key("routing_key"),
            "must name at least one routing key".into(),
        );
    }
    for (k, routing_key) in queue.routing_key.0.iter().enumerate() {
        if routing_key.len() > MAX_AMQP_NAME_BYTES {
            problems.at(
                location,
                format!("queues[{i}].routing_key[{k}]"),
                format!("longer than {MAX_AMQP_NAME_BYTES} bytes"),
            );
        }
    }
    if let Some(exchange) = &queue.exchange {
        check_amqp_name(problems, &key("exchange"), exchange);
    }
    if queue.prefetch == Some(0) {
        problems.at(location, key("prefetch"), "must be greater than 0".into());
    }
}

fn check_amqp_name(problems: &mut Problems, key: &str, name: &str) {
    if name.is_empty() {
        problems.add(key, "must not be empty".into());
    } else if name.len() > MAX_AMQP_NAME_BYTES {
        problems.add(key, format!("longer than {MAX_AMQP_NAME_BYTES} bytes"));
    }
}

/// Why `value` cannot be one segment of a destination, if it cannot: it must be a
/// non-empty AMQP name without `/`, the wildcards `*` and `#`, whitespace or
/// control characters.
pub(crate) fn destination_segment_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        Some("is empty")
    } else if value.len() > MAX_AMQP_NAME_BYTES {
        Some("is longer than 255 bytes")
    } else if value
        .chars()
        .any(|c| matches!(c, '/' | '*' | '#') || c.is_whitespace() || c.is_control())
    {
        Some("contains '/', '*', '#', whitespace or a control character")
    } else {
        None
    }
}
