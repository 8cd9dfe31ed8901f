//! The configured queues on one broker connection, kept in line with the
//! configuration as reloads change it.
//!
//! [`Queues::apply`] compares the running queues with a configuration and acts
//! per queue: an added or enabled queue is declared, bound and consumed; a
//! removed or disabled one has its consumer stopped (deliveries being handled
//! finish, prefetched ones are requeued); changed routing keys are rebound and
//! the old bindings removed; changed handler settings reach the consumer for
//! its next message; a change to what the queue is declared or consumed with
//! (durability, arguments, prefetch, concurrency, auto_start) restarts it.
//! Client sessions are not touched.

use std::{collections::HashMap, sync::Arc};

use lapin::{Channel, Connection, types::FieldTable};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{consumer::Consumer, runtime::QueueRuntime, topology};
use crate::{
    bridge::{Bridge, QueueState},
    config::{Config, QueueConfig},
};

/// Sent by a consumer task when it ends: queue name, generation and result.
pub type Exit = (String, u64, lapin::Result<()>);

/// The queues managed on one connection.
#[derive(Debug)]
pub struct Queues {
    bridge: Arc<Bridge>,
    active: HashMap<String, Active>,
    exits: mpsc::Sender<Exit>,
    generation: u64,
}

/// One configured queue on this connection.
#[derive(Debug)]
struct Active {
    config: QueueConfig,
    /// The exchange its keys are bound on (the queue's own or the default).
    exchange: String,
    prefetch: u16,
    runtime: Option<watch::Sender<Arc<QueueRuntime>>>,
    consumer: Option<Running>,
    /// Whether declaring or consuming failed; a later apply tries again.
    failed: bool,
}

#[derive(Debug)]
struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
    generation: u64,
}

// === impl Queues ===

impl Queues {
    /// Creates an empty set. Consumer tasks report their end on `exits`.
    pub fn new(bridge: Arc<Bridge>, exits: mpsc::Sender<Exit>) -> Self {
        Self {
            bridge,
            active: HashMap::new(),
            exits,
            generation: 0,
        }
    }

    /// Brings the queues on `connection` in line with `config`.
    pub async fn apply(&mut self, connection: &Connection, config: &Config) {
        if let Err(error) = topology::declare_exchanges(connection, config).await {
            warn!(error = %error, "cannot declare an exchange; bindings to it will fail");
        }
        let wanted: HashMap<&str, &QueueConfig> = config
            .queues
            .iter()
            .map(|q| &q.value)
            .filter(|q| q.enabled)
            .map(|q| (q.name.as_str(), q))
            .collect();

        let removed: Vec<String> = self
            .active
            .keys()
            .filter(|name| !wanted.contains_key(name.as_str()))
            .cloned()
            .collect();
        for name in removed {
            if let Some(active) = self.active.remove(&name) {
                stop(active).await;
            }
            self.bridge.forget_queue(&name);
            info!(amqp.queue = %name, "queue removed; its consumer is stopped and its messages stay in RabbitMQ");
        }

        for queue in config.queues.iter().map(|q| &q.value).filter(|q| q.enabled) {
            let exchange = queue
                .exchange
                .clone()
                .unwrap_or_else(|| config.rabbitmq.exchange.clone());
            let prefetch = queue.prefetch.unwrap_or(config.rabbitmq.prefetch);
            self.apply_queue(connection, queue, exchange, prefetch)
                .await;
        }
    }

    async fn apply_queue(
        &mut self,
        connection: &Connection,
        queue: &QueueConfig,
        exchange: String,
        prefetch: u16,
    ) {
        let Some(active) = self.active.get_mut(&queue.name) else {
            self.start(connection, queue.clone(), exchange, prefetch)
                .await;
            return;
        };
        let unchanged =
            active.config == *queue && active.exchange == exchange && active.prefetch == prefetch;
        if unchanged && !active.failed {
            return;
        }
        if active.failed || needs_restart(&active.config, queue) || active.prefetch != prefetch {
            if let Some(active) = self.active.remove(&queue.name) {
                stop(active).await;
            }
            self.start(connection, queue.clone(), exchange, prefetch)
                .await;
            return;
        }

        if active.exchange != exchange || active.config.routing_key != queue.routing_key {
            let rebound = rebind(
                connection,
                queue,
                &active.config,
                &active.exchange,
                &exchange,
            )
            .await;
            if let Err(error) = rebound {
                warn!(amqp.queue = %queue.name, error = %error, "cannot change the queue's bindings");
                active.failed = true;
                self.bridge
                    .set_queue_state(&queue.name, QueueState::Failed(error.to_string()));
                return;
            }
            info!(amqp.queue = %queue.name, exchange = %exchange, routing_keys = ?queue.routing_key.0, "queue rebound");
        }
        match QueueRuntime::new(queue.clone()) {
            Ok(runtime) => {
                if let Some(sender) = &active.runtime {
                    sender.send_replace(Arc::new(runtime));
                }
                active.config = queue.clone();
                active.exchange = exchange;
                info!(amqp.queue = %queue.name, "queue settings updated for the next message");
            }
            Err(error) => {
                warn!(amqp.queue = %queue.name, %error, "cannot apply the queue's new settings; the old ones stay");
            }
        }
    }

    /// Declares, binds and, with `auto_start`, consumes one queue.
    async fn start(
        &mut self,
        connection: &Connection,
        queue: QueueConfig,
        exchange: String,
        prefetch: u16,
    ) {
        let name = queue.name.clone();
        self.bridge.set_queue_state(&name, QueueState::Starting);
        let mut active = Active {
            config: queue,
            exchange,
            prefetch,
            runtime: None,
            consumer: None,
            failed: false,
        };
        match self.start_consumer(connection, &mut active).await {
            Ok(()) => debug!(amqp.queue = %name, "queue started"),
            Err(error) => {
                warn!(amqp.queue = %name, %error, "cannot start the queue; the other queues keep running");
                active.failed = true;
                self.bridge
                    .set_queue_state(&name, QueueState::Failed(error));
            }
        }
        self.active.insert(name, active);
    }

    async fn start_consumer(
        &mut self,
        connection: &Connection,
        active: &mut Active,
    ) -> Result<(), String> {
        let queue = &active.config;
        let channel = open_channel(connection).await?;
        let single_active = self.bridge.config().cluster.enabled;
        topology::declare_queue(&channel, queue, &active.exchange, single_active)
            .await
            .map_err(|error| format!("cannot declare queue {}: {error}", queue.name))?;
        if !queue.auto_start {
            let _ = channel.close(200, "declared".into()).await;
            self.bridge
                .set_queue_state(&queue.name, QueueState::Declared);
            return Ok(());
        }
        let runtime = QueueRuntime::new(queue.clone())?;
        let (runtime_tx, runtime_rx) = watch::channel(Arc::new(runtime));
        let publisher = open_channel(connection).await?;
        let consumer = Consumer::new(runtime_rx, self.bridge.clone(), publisher)
            .await
            .map_err(|error| format!("cannot open the dead-letter publisher: {error}"))?;

        self.generation += 1;
        let generation = self.generation;
        let stop = CancellationToken::new();
        let exits = self.exits.clone();
        let name = queue.name.clone();
        let (prefetch, concurrency) = (active.prefetch, queue.concurrency);
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let result = consumer.run(channel, prefetch, concurrency, stop).await;
                // The receiver is gone only when the connection round ended.
                let _ = exits.send((name, generation, result)).await;
            })
        };
        active.runtime = Some(runtime_tx);
        active.consumer = Some(Running {
            stop,
            task,
            generation,
        });
        // The state stays Starting until the consumer task reports itself
        // consuming, which may already have happened on another thread.
        Ok(())
    }

    /// Records the end of a consumer task that was not stopped by [`Queues`].
    pub fn on_exit(&mut self, (name, generation, result): Exit) {
        let Some(active) = self.active.get_mut(&name) else {
            return;
        };
        if active.consumer.as_ref().map(|c| c.generation) != Some(generation) {
            return;
        }
        active.consumer = None;
        active.failed = true;
        let reason = match result {
            Ok(()) => "consumer cancelled by RabbitMQ (was the queue deleted?)".to_string(),
            Err(error) => format!("consumer stopped: {error}"),
        };
        warn!(amqp.queue = %name, reason = %reason, "queue is no longer consumed; a reload or reconnect starts it again");
        self.bridge
            .set_queue_state(&name, QueueState::Failed(reason));
    }

    /// Stops every consumer and waits for deliveries being handled to finish.
    /// The queues count as starting until the next connection applies them.
    pub async fn stop_all(&mut self) {
        for name in self.active.keys() {
            self.bridge.set_queue_state(name, QueueState::Starting);
        }
        let active: Vec<Active> = self.active.drain().map(|(_, active)| active).collect();
        for active in &active {
            if let Some(consumer) = &active.consumer {
                consumer.stop.cancel();
            }
        }
        for active in active {
            if let Some(consumer) = active.consumer {
                let _ = consumer.task.await;
            }
        }
    }
}

/// Stops one queue's consumer and waits for it.
async fn stop(active: Active) {
    if let Some(consumer) = active.consumer {
        consumer.stop.cancel();
        let _ = consumer.task.await;
    }
}

/// Whether a change needs the queue declared and consumed again.
fn needs_restart(old: &QueueConfig, new: &QueueConfig) -> bool {
    old.durable != new.durable
        || old.queue_type != new.queue_type
        || old.declare != new.declare
        || old.dead_letter_exchange != new.dead_letter_exchange
        || old.dead_letter_queue != new.dead_letter_queue
        || old.prefetch != new.prefetch
        || old.concurrency != new.concurrency
        || old.auto_start != new.auto_start
}

async fn open_channel(connection: &Connection) -> Result<Channel, String> {
    connection
        .create_channel()
        .await
        .map_err(|error| format!("cannot open a channel: {error}"))
}

/// Binds the new keys and removes the bindings the new configuration dropped.
async fn rebind(
    connection: &Connection,
    queue: &QueueConfig,
    old: &QueueConfig,
    old_exchange: &str,
    exchange: &str,
) -> Result<(), String> {
    let channel = open_channel(connection).await?;
    topology::bind(&channel, queue, exchange)
        .await
        .map_err(|error| format!("cannot bind: {error}"))?;
    for key in &old.routing_key.0 {
        if old_exchange == exchange && queue.routing_key.0.contains(key) {
            continue;
        }
        channel
            .queue_unbind(
                queue.name.as_str().into(),
                old_exchange.into(),
                key.as_str().into(),
                FieldTable::default(),
            )
            .await
            .map_err(|error| format!("cannot remove binding {key:?}: {error}"))?;
    }
    let _ = channel.close(200, "rebound".into()).await;
    Ok(())
}
