//! Helpers shared by the integration tests: a bridge started in process against
//! the real RabbitMQ, with its own exchange and queues, and a STOMP client.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "shared by several test binaries, each using a different subset"
)]

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
    pub queues: Vec<String>,
    pub connection: Connection,
    pub channel: Channel,
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
        // reqwest, used by tests and by the webhook handler, needs a TLS provider.
        stompbridge::install_tls_provider();
        let prefix = format!("t{:08x}", rand::random::<u32>());
        let exchange = format!("{prefix}.events");
        let mut yaml = format!(
            "server:\n  listen: 127.0.0.1:0\n{server_extra}admin:\n  listen: 127.0.0.1:0\n\
             rabbitmq:\n  url: {}\n  exchange: {exchange}\n  reconnect_initial_delay: 100ms\n  reconnect_max_delay: 1s\n\
             queues:\n",
            amqp_url()
        );
        let mut names = Vec::new();
        for (name, key) in queues {
            let name = format!("{prefix}_{name}");
            yaml.push_str(&format!(
                "  - name: {name}\n    routing_key: \"{prefix}.{key}\"\n    durable: false\n"
            ));
            names.push(name);
        }
        yaml.push_str(extra);
        let config = config::parse("test.yaml", &yaml, |_| None)
            .unwrap_or_else(|err| panic!("test config rejected: {err}\n{yaml}"));
        let (connection, channel) = amqp_channel().await;
        let running = stompbridge::server::start(config, None)
            .await
            .expect("start the bridge");
        let bridge = Self {
            running,
            prefix,
            exchange,
            queues: names,
            connection,
            channel,
        };
        bridge.wait_ready().await;
        bridge
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
            "the bridge did not start consuming within 10 s; is RabbitMQ reachable at {}?",
            amqp_url()
        );
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
