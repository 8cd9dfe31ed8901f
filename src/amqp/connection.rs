//! Keeps one RabbitMQ connection up for the life of the bridge.
//!
//! Each round connects, declares the topology, starts a consumer per enabled
//! queue and waits until the connection fails or shutdown starts. After a
//! failure it reconnects with capped, jittered exponential backoff and restores
//! everything from the configuration. Client sessions stay open meanwhile, and
//! RabbitMQ redelivers what was not acknowledged.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{Connection, ConnectionProperties, Event};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Error, consumer::Consumer, topology};
use crate::{bridge::Bridge, config::Config};

/// Supervises the broker connection until `bridge.shutdown` is cancelled.
pub async fn run(bridge: Arc<Bridge>, config: Arc<Config>) {
    let initial = config.rabbitmq.reconnect_initial_delay;
    let max = config.rabbitmq.reconnect_max_delay;
    let mut delay = initial;
    let mut attempt: u32 = 0;
    let mut was_connected = false;

    loop {
        let result = tokio::select! {
            () = bridge.shutdown.cancelled() => return,
            result = connect(&config) => result,
        };
        match result {
            Ok(connection) => {
                if was_connected {
                    bridge.metrics.rabbitmq_reconnects_total.inc();
                    info!(attempts = attempt, "reconnected to RabbitMQ");
                } else {
                    info!("connected to RabbitMQ");
                }
                was_connected = true;
                attempt = 0;
                delay = initial;
                bridge.metrics.rabbitmq_connected.set(1);
                let outcome = serve(&bridge, &config, connection).await;
                bridge.metrics.rabbitmq_connected.set(0);
                bridge.set_amqp_ready(false);
                match outcome {
                    Ok(()) => return,
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
        let wait = jitter(delay);
        tokio::select! {
            () = bridge.shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        delay = (delay * 2).min(max);
    }
}

async fn connect(config: &Config) -> Result<Connection, Error> {
    let properties = ConnectionProperties::default()
        .with_connection_name(concat!("stompbridge ", env!("CARGO_PKG_VERSION")).into());
    let connection = Connection::connect(&config.rabbitmq.url, properties)
        .await
        .map_err(Error::Connect)?;
    Ok(connection)
}

/// Runs one connection: topology, consumers, then waits for its end. Returns
/// `Ok` at shutdown and the cause when the connection failed.
async fn serve(bridge: &Arc<Bridge>, config: &Config, connection: Connection) -> Result<(), Error> {
    let mut events = connection.events_listener();
    topology::declare_exchanges(&connection, config)
        .await
        .map_err(Error::Declare)?;

    let stop = CancellationToken::new();
    let mut consumers = JoinSet::new();
    let mut failed = 0;
    for queue in config.queues.iter().map(|q| &q.value).filter(|q| q.enabled) {
        let channel = connection.create_channel().await.map_err(Error::Channel)?;
        if let Err(error) =
            topology::declare_queue(&channel, queue, &config.rabbitmq.exchange).await
        {
            warn!(amqp.queue = %queue.name, error = %error, "cannot declare queue; it is not consumed");
            failed += 1;
            continue;
        }
        if !queue.auto_start {
            debug!(amqp.queue = %queue.name, "queue declared; auto_start is off");
            continue;
        }
        let consumer = Consumer::new(queue.clone(), bridge.clone());
        let prefetch = queue.prefetch.unwrap_or(config.rabbitmq.prefetch);
        let name = queue.name.clone();
        let stop = stop.child_token();
        consumers.spawn(async move { (name, consumer.run(channel, prefetch, stop).await) });
    }
    bridge.set_amqp_ready(failed == 0);
    info!(consumers = consumers.len(), failed, "consuming");

    let result = loop {
        tokio::select! {
            () = bridge.shutdown.cancelled() => break Ok(()),
            event = events.next() => match event {
                Some(Event::Error(error)) => break Err(Error::Lost(error)),
                None => break Err(Error::Closed),
                Some(_) => {}
            },
            Some(joined) = consumers.join_next() => match joined {
                Ok((name, Err(error))) => {
                    warn!(amqp.queue = %name, error = %error, "consumer stopped");
                    bridge.set_amqp_ready(false);
                }
                Ok((name, Ok(()))) => {
                    warn!(amqp.queue = %name, "consumer cancelled by RabbitMQ");
                    bridge.set_amqp_ready(false);
                }
                Err(error) => warn!(error = %error, "consumer task failed"),
            },
        }
    };

    stop.cancel();
    while consumers.join_next().await.is_some() {}
    // The connection is either gone or being closed for shutdown.
    let _ = connection.close(200, "stompbridge stopping".into()).await;
    result
}

/// Spreads reconnects of many bridges over time: a random delay between half
/// and all of `delay`.
fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}
