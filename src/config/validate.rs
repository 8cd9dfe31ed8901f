//! Semantic checks on a parsed configuration. Every problem is collected, so an
//! operator fixes a file in one pass.

use std::{collections::HashSet, fmt, str::FromStr, time::Duration};

use lapin::uri::AMQPUri;
use serde_saphyr::Location;

use super::{
    AnonymousPolicy, Config, DeclareMode, HandlerKind, QueueConfig, QueueType, RetryConfig, Secret,
    ThresholdDirection, WebhookOptions,
};
use crate::destination::Template;

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

    if config.cluster.enabled {
        check_amqp_name(&mut problems, "cluster.exchange", &config.cluster.exchange);
        if config.cluster.max_queue_length == 0 {
            problems.add("cluster.max_queue_length", "must be greater than 0".into());
        }
        if let Some(id) = &config.cluster.instance_id
            && destination_segment_problem(id).is_some()
        {
            problems.add(
                "cluster.instance_id",
                "must be a non-empty name without '/', '*', '#' or whitespace".into(),
            );
        }
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
    if queue.routing_key.0.is_empty() && queue.declare == DeclareMode::Create {
        problems.at(
            location,
            key("routing_key"),
            "must name at least one routing key (only `declare: passive` queues may have none)"
                .into(),
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
    for (field, name) in [
        ("exchange", &queue.exchange),
        ("dead_letter_exchange", &queue.dead_letter_exchange),
        ("dead_letter_queue", &queue.dead_letter_queue),
    ] {
        if let Some(name) = name {
            check_amqp_name(problems, &key(field), name);
        }
    }
    if queue.queue_type == QueueType::Quorum && !queue.durable {
        problems.at(
            location,
            key("durable"),
            "must be true for a quorum queue; RabbitMQ has no transient quorum queues".into(),
        );
    }
    if queue.dead_letter_queue.is_some() && queue.dead_letter_exchange.is_none() {
        problems.at(
            location,
            key("dead_letter_queue"),
            "needs dead_letter_exchange to bind to".into(),
        );
    }
    if queue.prefetch == Some(0) {
        problems.at(location, key("prefetch"), "must be greater than 0".into());
    }
    if queue.concurrency == 0 {
        problems.at(
            location,
            key("concurrency"),
            "must be greater than 0".into(),
        );
    }
    for (d, destination) in queue.destinations.iter().enumerate() {
        if let Err(error) = Template::parse(&destination.destination) {
            problems.at(
                location,
                format!("queues[{i}].destinations[{d}].destination"),
                format!("invalid template {:?}: {error}", destination.destination),
            );
        }
    }
    check_retry(&key("retry"), &queue.retry, location, problems);
    check_handler_options(i, queue, location, problems);
}

fn check_retry(
    key: &str,
    retry: &RetryConfig,
    location: Option<Location>,
    problems: &mut Problems,
) {
    if retry.max_attempts == 0 {
        problems.at(
            location,
            format!("{key}.max_attempts"),
            "must be at least 1".into(),
        );
    }
    if retry.initial_delay.is_zero() {
        problems.at(
            location,
            format!("{key}.initial_delay"),
            "must be longer than 0s".into(),
        );
    }
    if retry.max_delay < retry.initial_delay {
        problems.at(
            location,
            format!("{key}.max_delay"),
            "must not be shorter than initial_delay".into(),
        );
    }
}

/// Checks that only the selected handler has options, and that they are valid.
fn check_handler_options(
    i: usize,
    queue: &QueueConfig,
    location: Option<Location>,
    problems: &mut Problems,
) {
    let key = |field: &str| format!("queues[{i}].{field}");
    for (name, present, kind) in [
        ("iot", queue.iot.is_some(), HandlerKind::Iot),
        ("erp", queue.erp.is_some(), HandlerKind::Erp),
        ("webhook", queue.webhook.is_some(), HandlerKind::Webhook),
        (
            "notification",
            queue.notification.is_some(),
            HandlerKind::Notification,
        ),
    ] {
        if present && queue.handler != kind {
            problems.at(
                location,
                key(name),
                format!(
                    "options for the {name} handler, but the handler is {}",
                    queue.handler.as_str()
                ),
            );
        }
    }
    if let Some(thresholds) = queue.iot.as_ref().and_then(|iot| iot.thresholds) {
        let ordered = match thresholds.direction {
            ThresholdDirection::Above => thresholds.critical >= thresholds.warning,
            ThresholdDirection::Below => thresholds.critical <= thresholds.warning,
        };
        if !ordered || !thresholds.warning.is_finite() || !thresholds.critical.is_finite() {
            problems.at(
                location,
                key("iot.thresholds"),
                "critical must be beyond warning in the threshold direction".into(),
            );
        }
    }
    if let Some(iot) = &queue.iot
        && let Err(error) = Template::parse(&iot.event_destination)
    {
        problems.at(
            location,
            key("iot.event_destination"),
            format!("invalid destination: {error}"),
        );
    }
    if let Some(erp) = &queue.erp {
        if erp.window.is_zero() {
            problems.at(location, key("erp.window"), "must be longer than 0s".into());
        }
        if erp.max_ids == 0 {
            problems.at(
                location,
                key("erp.max_ids"),
                "must be greater than 0".into(),
            );
        }
        if erp
            .dedup_key
            .as_deref()
            .is_some_and(|k| k.is_empty() || k.split('.').any(str::is_empty))
        {
            problems.at(
                location,
                key("erp.dedup_key"),
                "must be a field name or dotted path".into(),
            );
        }
    }
    if let Some(notification) = &queue.notification {
        let destination = &notification.user_destination;
        if !destination.starts_with('/')
            || destination.starts_with("/user/")
            || Template::parse(destination).is_err()
        {
            problems.at(
                location,
                key("notification.user_destination"),
                format!("{destination:?} must be a destination such as /queue/notifications, without the /user prefix"),
            );
        }
    }
    if queue.handler == HandlerKind::Webhook {
        match &queue.webhook {
            None => problems.at(
                location,
                key("webhook"),
                "the webhook handler needs webhook.url".into(),
            ),
            Some(webhook) => check_webhook(i, webhook, location, problems),
        }
    }
}

fn check_webhook(
    i: usize,
    webhook: &WebhookOptions,
    location: Option<Location>,
    problems: &mut Problems,
) {
    let key = |field: &str| format!("queues[{i}].webhook.{field}");
    match reqwest::Url::parse(&webhook.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {}
        Ok(_) => problems.at(location, key("url"), "must be an http or https URL".into()),
        Err(error) => problems.at(location, key("url"), format!("invalid URL: {error}")),
    }
    if webhook.timeout.is_zero() {
        problems.at(location, key("timeout"), "must be longer than 0s".into());
    }
    if webhook.secret_env.is_some() && webhook.secret_file.is_some() {
        problems.at(
            location,
            key("secret_env"),
            "set secret_env or secret_file, not both".into(),
        );
    }
    if axum::http::HeaderName::from_bytes(webhook.signature_header.as_bytes()).is_err() {
        problems.at(
            location,
            key("signature_header"),
            "is not a valid HTTP header name".into(),
        );
    }
}

/// Reads the secrets and keys that the configuration names by environment
/// variable or file into it. Returns a problem for each one that is unset,
/// unreadable or unusable.
pub(crate) fn resolve_secrets(
    config: &mut Config,
    env: &impl Fn(&str) -> Option<String>,
) -> Vec<Problem> {
    let mut problems = Problems::default();
    resolve_jwt_keys(config, env, &mut problems);
    for (i, queue) in config.queues.iter_mut().enumerate() {
        let location = Some(queue.referenced);
        // A disabled queue's secret is read when a reload enables it.
        let enabled = queue.value.enabled;
        let Some(webhook) = queue.value.webhook.as_mut().filter(|_| enabled) else {
            continue;
        };
        let secret = if let Some(name) = &webhook.secret_env {
            match env(name).filter(|value| !value.is_empty()) {
                Some(value) => Some(value.into_bytes()),
                None => {
                    problems.at(
                        location,
                        format!("queues[{i}].webhook.secret_env"),
                        format!("the environment variable {name} is not set or empty"),
                    );
                    None
                }
            }
        } else if let Some(path) = &webhook.secret_file {
            match std::fs::read(path) {
                Ok(bytes) => Some(trim_newline(bytes)),
                Err(error) => {
                    problems.at(
                        location,
                        format!("queues[{i}].webhook.secret_file"),
                        format!("cannot read {}: {error}", path.display()),
                    );
                    None
                }
            }
        } else {
            None
        };
        webhook.secret = secret.map(|bytes| Secret(bytes.into()));
    }
    problems.0
}

/// Reads `auth.jwt`'s secret and key files, then builds the validator once to
/// report unusable keys at load time rather than at the first CONNECT.
fn resolve_jwt_keys(
    config: &mut Config,
    env: &impl Fn(&str) -> Option<String>,
    problems: &mut Problems,
) {
    if let Some(jwt) = config.auth.jwt.as_mut() {
        if jwt.secret_env.is_some() && jwt.secret_file.is_some() {
            problems.add(
                "auth.jwt.secret_env",
                "set secret_env or secret_file, not both".into(),
            );
        }
        if let Some(name) = &jwt.secret_env {
            match env(name).filter(|value| !value.is_empty()) {
                Some(value) => jwt.keys.secret = Some(Secret(value.into_bytes().into())),
                None => problems.add(
                    "auth.jwt.secret_env",
                    format!("the environment variable {name} is not set or empty; set it to the HMAC secret"),
                ),
            }
        }
        let files = [
            (
                "auth.jwt.secret_file",
                &jwt.secret_file,
                &mut jwt.keys.secret,
                true,
            ),
            (
                "auth.jwt.public_key_file",
                &jwt.public_key_file,
                &mut jwt.keys.public_key_pem,
                false,
            ),
            (
                "auth.jwt.jwks_file",
                &jwt.jwks_file,
                &mut jwt.keys.jwks_json,
                false,
            ),
        ];
        for (key, path, slot, trim) in files {
            let Some(path) = path else { continue };
            match std::fs::read(path) {
                Ok(bytes) => {
                    *slot = Some(Secret(
                        if trim { trim_newline(bytes) } else { bytes }.into(),
                    ))
                }
                Err(error) => problems.add(key, format!("cannot read {}: {error}", path.display())),
            }
        }
    }
    if problems.0.is_empty()
        && let Err(error) = crate::auth::Authenticator::new(&config.auth)
    {
        problems.add("auth.jwt", error);
    }
    if config.auth.anonymous == AnonymousPolicy::Deny && config.auth.jwt.is_none() {
        problems.add(
            "auth.anonymous",
            "deny needs auth.jwt, or no client could connect".into(),
        );
    }
    if let Err((i, error)) = crate::auth::AccessRules::new(&config.access)
        && i < config.access.len()
    {
        problems.add(
            format!("access[{i}].destination"),
            format!("invalid pattern: {error}"),
        );
    }
}

fn trim_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    bytes
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
pub fn destination_segment_problem(value: &str) -> Option<&'static str> {
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
