//! Declares what the configuration names in RabbitMQ: exchanges, queues and
//! their bindings.
//!
//! Each queue is declared on its own channel, because RabbitMQ closes a channel
//! on a declaration error (a queue that exists with other arguments answers
//! PRECONDITION_FAILED), and one bad queue must not stop the others.

use lapin::{
    Channel, Connection,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};

use crate::config::{Config, ExchangeType, QueueConfig};

/// Declares `name` as a durable exchange of `kind`. Exchanges named `amq.*` are
/// reserved by RabbitMQ and only checked for existence.
///
/// # Errors
///
/// The broker's answer when the exchange exists with another type, or does
/// not exist for a reserved name.
pub async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeType,
) -> lapin::Result<()> {
    let options = ExchangeDeclareOptions {
        durable: true,
        passive: name.starts_with("amq."),
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(name.into(), kind.kind(), options, FieldTable::default())
        .await
}

/// Declares every exchange the configuration uses.
///
/// # Errors
///
/// The first declaration the broker rejected.
pub async fn declare_exchanges(connection: &Connection, config: &Config) -> lapin::Result<()> {
    let channel = connection.create_channel().await?;
    let mut names = vec![config.rabbitmq.exchange.as_str()];
    for queue in &config.queues {
        if let Some(exchange) = &queue.value.exchange
            && queue.value.enabled
            && !names.contains(&exchange.as_str())
        {
            names.push(exchange);
        }
    }
    for name in names {
        declare_exchange(&channel, name, config.rabbitmq.exchange_type).await?;
    }
    // The channel is only for declarations; a failure to close it changes nothing.
    let _ = channel.close(200, "declarations done".into()).await;
    Ok(())
}

/// Declares `queue` on `channel` and binds each of its routing keys.
///
/// # Errors
///
/// The broker's answer to the first declaration or binding that failed.
pub async fn declare_queue(
    channel: &Channel,
    queue: &QueueConfig,
    default_exchange: &str,
) -> lapin::Result<()> {
    let options = QueueDeclareOptions {
        durable: queue.durable,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.name.as_str().into(), options, FieldTable::default())
        .await?;
    let exchange = queue.exchange.as_deref().unwrap_or(default_exchange);
    for routing_key in &queue.routing_key.0 {
        channel
            .queue_bind(
                queue.name.as_str().into(),
                exchange.into(),
                routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}
