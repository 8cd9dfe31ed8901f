//! Keeps one RabbitMQ connection up for the life of the bridge.
//!
//! Each round connects, applies the current configuration's queues and then
//! follows reloads until the connection fails or shutdown starts. After a
//! failure it reconnects with capped, jittered exponential backoff and restores
//! every exchange, queue, binding and consumer from the configuration in force.
//! Client sessions stay open meanwhile, and RabbitMQ redelivers what was not
//! acknowledged.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{Connection, ConnectionProperties, Event};
use tokio::{sync::mpsc, task::JoinSet};
use tracing::{debug, info, warn};

use super::{Error, queues::Queues};
use crate::{bridge::Bridge, config::Config};

/// Consumer exits waiting to be handled; each queue has at most one consumer.
const EXIT_BACKLOG: usize = 64;

/// Interval between samples of the cluster queue's depth.
const CLUSTER_DEPTH_INTERVAL: Duration = Duration::from_secs(5);

/// Supervises the broker connection until `bridge.shutdown` is cancelled,
/// then cancels `bridge.amqp_stopped`.
pub async fn run(bridge: Arc<Bridge>) {
    let _stopped = bridge.amqp_stopped.clone().drop_guard();
    let mut attempt: u32 = 0;
    let mut delay = bridge.config().rabbitmq.reconnect_initial_delay;
    let mut was_connected = false;

    loop {
        let config = bridge.config();
        let result = tokio::select! {
            () = bridge.shutdown.cancelled() => return,
            result = connect(&config, &bridge.instance_id) => result,
        };
        match result {
            Ok(connection) => {
                if was_connected {
                    bridge.metrics.rabbitmq_reconnects_total.inc();
                    info!(instance = %bridge.instance_id, attempts = attempt, "reconnected to RabbitMQ");
                } else {
                    info!(instance = %bridge.instance_id, "connected to RabbitMQ");
                }
                was_connected = true;
                attempt = 0;
                delay = config.rabbitmq.reconnect_initial_delay;
                bridge.set_amqp_connected(true);
                let outcome = serve(&bridge, connection).await;
                bridge.set_amqp_connected(false);
                match outcome {
                    Ok(()) => return,
                    Err(Error::UrlChanged) => {
                        info!("rabbitmq.url changed; reconnecting");
                        continue;
                    }
                    Err(error) => {
                        warn!(error = %error.chain(), "RabbitMQ connection lost, reconnecting")
                    }
                }
            }
            Err(error) if attempt == 0 => {
                warn!(error = %error.chain(), "cannot connect to RabbitMQ, retrying");
            }
            Err(error) => {
                debug!(error = %error.chain(), attempt, "RabbitMQ connection attempt failed")
            }
        }
        attempt += 1;
        tokio::select! {
            () = bridge.shutdown.cancelled() => return,
            () = tokio::time::sleep(jitter(delay)) => {}
        }
        delay = (delay * 2).min(bridge.config().rabbitmq.reconnect_max_delay);
    }
}

/// Connects with a name that shows in the management UI: the configured
/// name, the version and, in cluster mode, the instance.
async fn connect(config: &Config, instance: &str) -> Result<Connection, Error> {
    let mut name = format!(
        "{} {}",
        config.rabbitmq.connection_name,
        env!("CARGO_PKG_VERSION")
    );
    if config.cluster.enabled {
        name = format!("{name} {instance}");
    }
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(&config.rabbitmq.url, properties)
        .await
        .map_err(Error::Connect)
}

/// Runs one connection: applies the configuration's queues, then follows
/// reloads. Returns `Ok` at shutdown and the cause when the round ended
/// otherwise.
async fn serve(bridge: &Arc<Bridge>, connection: Connection) -> Result<(), Error> {
    let mut events = connection.events_listener();
    let mut reloads = bridge.watch_config();
    let mut config = reloads.borrow_and_update().clone();
    let (exits_tx, mut exits) = mpsc::channel(EXIT_BACKLOG);
    let mut queues = Queues::new(bridge.clone(), exits_tx);
    queues.apply(&connection, &config).await;
    match open_publisher(&connection).await {
        Ok(channel) => bridge.set_publisher(Some(channel)),
        Err(error) => {
            warn!(%error, "cannot open the channel for client SENDs; they fail until a reconnect")
        }
    }
    let mut cluster = JoinSet::new();
    if config.cluster.enabled
        && let Err(error) = start_cluster(bridge, &connection, &mut cluster).await
    {
        warn!(%error, "cannot set up the cluster queue; retrying");
        cluster.spawn(tokio::time::sleep(config.rabbitmq.reconnect_initial_delay));
    }
    info!(queues = bridge.queue_states().len(), "queues applied");

    let result = loop {
        tokio::select! {
            () = bridge.shutdown.cancelled() => break Ok(()),
            event = events.next() => match event {
                Some(Event::Error(error)) => break Err(Error::Lost(error)),
                None => break Err(Error::Closed),
                Some(_) => {}
            },
            Ok(()) = reloads.changed() => {
                let next = reloads.borrow_and_update().clone();
                if next.rabbitmq.url != config.rabbitmq.url
                    || next.rabbitmq.connection_name != config.rabbitmq.connection_name
                {
                    break Err(Error::UrlChanged);
                }
                config = next;
                queues.apply(&connection, &config).await;
            }
            Some(exit) = exits.recv() => queues.on_exit(exit),
            // The cluster queue was deleted or its channel failed while the
            // connection lives: declare and consume it again after a pause.
            Some(_) = cluster.join_next() => {
                // Leaves the set empty, so the aborted tasks do not end up
                // here again.
                cluster.shutdown().await;
                bridge.set_cluster_consuming(false);
                bridge.metrics.cluster_restarts_total.inc();
                tokio::time::sleep(config.rabbitmq.reconnect_initial_delay).await;
                if let Err(error) = start_cluster(bridge, &connection, &mut cluster).await {
                    warn!(%error, "cannot set up the cluster queue; retrying");
                    cluster.spawn(tokio::time::sleep(config.rabbitmq.reconnect_max_delay));
                }
            }
        }
    };

    bridge.set_publisher(None);
    cluster.abort_all();
    bridge.set_cluster_consuming(false);
    queues.stop_all().await;
    // The connection is either gone or being closed for shutdown.
    let _ = connection.close(200, "stompbridge stopping".into()).await;
    result
}

/// Declares this instance's cluster queue, then consumes it and samples its
/// depth in two tasks added to `tasks`; the end of either means the queue
/// needs setting up again.
async fn start_cluster(
    bridge: &Arc<Bridge>,
    connection: &Connection,
    tasks: &mut JoinSet<()>,
) -> lapin::Result<()> {
    let channel = connection.create_channel().await?;
    let queue = crate::cluster::declare(&channel, bridge).await?;
    let sampler = connection.create_channel().await?;
    let receiver_bridge = bridge.clone();
    let receiver_queue = queue.clone();
    tasks.spawn(async move {
        if let Err(error) = crate::cluster::receive(receiver_bridge, channel, receiver_queue).await
        {
            warn!(%error, "cluster queue consumer stopped");
        }
    });
    let depth = bridge.metrics.cluster_queue_depth.clone();
    tasks.spawn(async move {
        let mut ticks = tokio::time::interval(CLUSTER_DEPTH_INTERVAL);
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        loop {
            ticks.tick().await;
            match sampler
                .queue_declare(
                    queue.as_str().into(),
                    options,
                    lapin::types::FieldTable::default(),
                )
                .await
            {
                Ok(declared) => depth.set(i64::from(declared.message_count())),
                Err(_) => return,
            }
        }
    });
    info!(instance = %bridge.instance_id, "cluster queue declared and consumed");
    Ok(())
}

/// Opens the confirm-mode channel that client SENDs are published on.
async fn open_publisher(connection: &Connection) -> lapin::Result<lapin::Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Spreads reconnects of many bridges over time: a random delay between half
/// and all of `delay`.
fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}
