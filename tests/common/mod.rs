//! Helpers shared by the integration tests: a bridge started in process against
//! the real RabbitMQ, with its own exchange and queues, and a STOMP client.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "shared by several test binaries, each using a different subset"
)]

pub mod daemon;
pub mod stomp;

use std::time::Duration;

use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
    },
};
use stompbridge::{config, server::Running};

/// Returns the URL of the RabbitMQ the tests use: `STOMPBRIDGE_AMQP_URL`, or the local default.
pub fn amqp_url() -> String {
    std::env::var(config::AMQP_URL_ENV)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Opens a publishing channel with confirms, or fails the test with a message
/// saying RabbitMQ is not reachable.
pub async fn amqp_channel() -> (Connection, Channel) {
    let url = amqp_url();
    let connection = match Connection::connect(&url, ConnectionProperties::default()).await {
        Ok(connection) => connection,
        Err(error) => panic!(
            "RabbitMQ is not reachable at {url}: {error}. Start it with `rabbitmq-server -detached` \
             (or set STOMPBRIDGE_AMQP_URL); these tests need a real broker."
        ),
    };
    let channel = connection.create_channel().await.expect("open a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("enable publisher confirms");
    (connection, channel)
}

/// A bridge running in this process with a private exchange and queues.
pub struct TestBridge {
    pub running: Running,
    /// Unique per test; prefixes the exchange, queue names and routing keys.
    pub prefix: String,
    pub exchange: String,
    /// Queues and exchanges deleted by [`TestBridge::cleanup`].
    pub queues: Vec<String>,
    pub exchanges: Vec<String>,
    pub connection: Connection,
    pub channel: Channel,
    /// The configuration file, for tests that reload it.
    pub file: Option<ConfigFile>,
}

/// A configuration file in its own temporary folder.
pub struct ConfigFile {
    pub dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
    /// Everything but the `queues:` section.
    pub head: String,
}

/// Returns a name prefix unique to one test.
pub fn unique_prefix() -> String {
    format!("t{:08x}", rand::random::<u32>())
}

impl TestBridge {
    /// Starts a bridge consuming one queue per entry of `queues` (a name suffix
    /// and its routing key suffix). `extra` is YAML appended at the top level.
    pub async fn start(queues: &[(&str, &str)], extra: &str) -> Self {
        Self::start_with(queues, "", extra).await
    }

    /// As [`TestBridge::start`], with `server_extra` (indented by two spaces)
    /// appended under `server:`.
    pub async fn start_with(queues: &[(&str, &str)], server_extra: &str, extra: &str) -> Self {
        let prefix = unique_prefix();
        let mut queues_yaml = String::new();
        for (name, key) in queues {
            queues_yaml.push_str(&format!(
                "  - name: {prefix}_{name}\n    routing_key: \"{prefix}.{key}\"\n    durable: false\n"
            ));
        }
        Self::start_yaml(prefix, server_extra, extra, &queues_yaml, false).await
    }

    /// Starts a bridge whose `queues:` section is `queues_yaml` (entries
    /// indented by two spaces). With `file`, the configuration is written to a
    /// file that the bridge watches.
    pub async fn start_yaml(
        prefix: String,
        server_extra: &str,
        extra: &str,
        queues_yaml: &str,
        file: bool,
    ) -> Self {
        Self::start_via(&amqp_url(), prefix, server_extra, extra, queues_yaml, file).await
    }

    /// As [`TestBridge::start_yaml`], with the bridge connecting to RabbitMQ
    /// at `url` (such as a test's own proxy) while the test itself uses the
    /// usual URL.
    pub async fn start_via(
        url: &str,
        prefix: String,
        server_extra: &str,
        extra: &str,
        queues_yaml: &str,
        file: bool,
    ) -> Self {
        // reqwest, used by tests and by the webhook handler, needs a TLS provider.
        stompbridge::install_tls_provider();
        let exchange = format!("{prefix}.events");
        let head = format!(
            "server:\n  listen: 127.0.0.1:0\n{server_extra}admin:\n  listen: 127.0.0.1:0\n\
             rabbitmq:\n  url: {}\n  exchange: {exchange}\n  app_exchange: {prefix}.app\n  connection_name: {prefix}\n\
             \x20 reconnect_initial_delay: 100ms\n  reconnect_max_delay: 1s\n{extra}",
            url
        );
        let yaml = format!("{head}queues:\n{queues_yaml}");
        let (config, file) = if file {
            let dir = tempfile::tempdir().expect("temporary folder");
            let path = dir.path().join("config.yaml");
            std::fs::write(&path, &yaml).expect("write the configuration");
            let config = config::load(&path)
                .unwrap_or_else(|err| panic!("test config rejected: {err}\n{yaml}"));
            (config, Some(ConfigFile { dir, path, head }))
        } else {
            let config = config::parse("test.yaml", &yaml, |_| None)
                .unwrap_or_else(|err| panic!("test config rejected: {err}\n{yaml}"));
            (config, None)
        };
        let names: Vec<String> = config.queues.iter().map(|q| q.value.name.clone()).collect();
        let (connection, channel) = amqp_channel().await;
        let path = file.as_ref().map(|f| f.path.clone());
        let running = stompbridge::server::start(config, path)
            .await
            .expect("start the bridge");
        let bridge = Self {
            running,
            prefix: prefix.clone(),
            exchange: exchange.clone(),
            queues: names,
            exchanges: vec![exchange, format!("{prefix}.app")],
            connection,
            channel,
            file,
        };
        bridge.wait_ready().await;
        if bridge.file.is_some() {
            // Edits made before the watch is in place would go unnoticed.
            bridge
                .wait_until("the configuration watch", 10, |b| {
                    b.running
                        .bridge
                        .config_watched
                        .load(std::sync::atomic::Ordering::Relaxed)
                })
                .await;
        }
        bridge
    }

    /// Replaces the `queues:` section of the watched file in place.
    pub fn write_queues(&self, queues_yaml: &str) {
        let file = self.file.as_ref().expect("a bridge started with a file");
        std::fs::write(&file.path, format!("{}queues:\n{queues_yaml}", file.head))
            .expect("write the configuration");
    }

    /// Replaces the watched file as editors do: write a new file, rename it over.
    pub fn rename_queues(&self, queues_yaml: &str) {
        let file = self.file.as_ref().expect("a bridge started with a file");
        let temporary = file.dir.path().join(".config.yaml.swp");
        std::fs::write(&temporary, format!("{}queues:\n{queues_yaml}", file.head))
            .expect("write the configuration");
        std::fs::rename(&temporary, &file.path).expect("rename over the configuration");
    }

    /// Writes arbitrary text to the watched file.
    pub fn write_raw(&self, text: &str) {
        let file = self.file.as_ref().expect("a bridge started with a file");
        std::fs::write(&file.path, text).expect("write the configuration");
    }

    /// Deletes `name` too at cleanup.
    pub fn track_queue(&mut self, name: &str) {
        self.queues.push(name.to_owned());
    }

    pub fn track_exchange(&mut self, name: &str) {
        self.exchanges.push(name.to_owned());
    }

    /// Waits until every queue is consumed.
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.running.bridge.is_ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the bridge did not start consuming within 10 s; is RabbitMQ reachable at {}? readiness: {:?}",
            amqp_url(),
            self.running.bridge.readiness()
        );
    }

    /// Waits until `condition` holds, failing the test after `seconds`.
    pub async fn wait_until(&self, what: &str, seconds: u64, condition: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        while !condition(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {seconds} s waiting for {what}; queue states: {:?}; reloads: {}",
                self.running.bridge.queue_states(),
                self.metric_lines("stompbridge_config_reloads_total"),
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Messages ready in `queue`, from a passive declare.
    pub async fn message_count(&self, queue: &str) -> u32 {
        let channel = self
            .connection
            .create_channel()
            .await
            .expect("open a channel");
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(queue.into(), options, lapin::types::FieldTable::default())
            .await
            .unwrap_or_else(|err| panic!("queue {queue} does not exist: {err}"));
        let _ = channel.close(200, "counted".into()).await;
        declared.message_count()
    }

    /// Takes one message from `queue`, if any, acknowledging it.
    pub async fn get(&self, queue: &str) -> Option<lapin::message::BasicGetMessage> {
        self.channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get")
    }

    /// Closes the bridge's broker connection from the broker side, as
    /// `rabbitmqctl close_connection` does during maintenance.
    pub fn kill_broker_connection(&self) {
        let output = std::process::Command::new("rabbitmqctl")
            .args(["list_connections", "-q", "pid", "client_properties"])
            .output()
            .expect("run rabbitmqctl");
        let listing = String::from_utf8_lossy(&output.stdout);
        let needle = format!("\"{} ", self.prefix);
        let pids: Vec<&str> = listing
            .lines()
            .filter(|line| line.contains(&needle))
            .filter_map(|line| line.split('\t').next())
            .collect();
        assert!(
            !pids.is_empty(),
            "no broker connection named {} in:\n{listing}",
            self.prefix
        );
        for pid in pids {
            let status = std::process::Command::new("rabbitmqctl")
                .args(["close_connection", pid, "closed by a test"])
                .status()
                .expect("run rabbitmqctl");
            assert!(status.success(), "rabbitmqctl close_connection failed");
        }
    }

    pub fn queue(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.prefix)
    }

    pub fn routing_key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.running.public_addr)
    }

    /// Publishes `body` with confirms to the test exchange.
    pub async fn publish(&self, routing_key_suffix: &str, body: &[u8]) {
        self.publish_with(routing_key_suffix, body, BasicProperties::default())
            .await;
    }

    pub async fn publish_with(
        &self,
        routing_key_suffix: &str,
        body: &[u8],
        properties: BasicProperties,
    ) {
        let key = self.routing_key(routing_key_suffix);
        self.channel
            .basic_publish(
                self.exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("publisher confirm");
    }

    /// Stops the bridge and deletes its queues and exchange.
    pub async fn cleanup(self) {
        self.running.shutdown(Duration::from_secs(5)).await;
        for queue in &self.queues {
            let _ = self
                .channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self
            .channel
            .exchange_delete(
                self.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = self.connection.close(200, "test done".into()).await;
    }

    /// Returns the value of a metric sample such as `stompbridge_sessions` or
    /// `stompbridge_disconnects_total{reason="slow_consumer"}`.
    /// Returns the metric lines that start with `prefix`, for failure messages.
    pub fn metric_lines(&self, prefix: &str) -> String {
        let text = self.running.bridge.metrics.render();
        text.lines()
            .filter(|line| line.starts_with(prefix))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn metric(&self, sample: &str) -> f64 {
        let text = self.running.bridge.metrics.render();
        text.lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == sample).then(|| value.parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("metric {sample} not found in:\n{text}"))
    }
}
