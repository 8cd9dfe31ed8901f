//! Declares what the configuration names in RabbitMQ: exchanges, queues, their
//! bindings, and the dead-letter exchanges and queues.
//!
//! Each queue is declared on its own channel, because RabbitMQ closes a channel
//! on a declaration error (a queue that exists with other arguments answers
//! PRECONDITION_FAILED, naming the argument), and one bad queue must not stop
//! the others.

use lapin::{
    Channel, Connection, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};

use crate::config::{Config, DeclareMode, QueueConfig, QueueType};

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
    kind: ExchangeKind,
) -> lapin::Result<()> {
    let options = ExchangeDeclareOptions {
        durable: true,
        passive: name.starts_with("amq."),
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
}

/// Declares every exchange the configuration uses: the default one, the
/// application exchange for client SENDs, the queues' own (all of
/// `rabbitmq.exchange_type`) and the dead-letter exchanges (direct, keyed by
/// source queue name).
///
/// # Errors
///
/// The first declaration the broker rejected; the ones before it stay.
pub async fn declare_exchanges(connection: &Connection, config: &Config) -> lapin::Result<()> {
    let kind = config.rabbitmq.exchange_type.kind();
    let mut exchanges = vec![
        (config.rabbitmq.exchange.as_str(), kind.clone()),
        (config.rabbitmq.app_exchange.as_str(), kind.clone()),
    ];
    for queue in config.queues.iter().map(|q| &q.value).filter(|q| q.enabled) {
        if let Some(exchange) = &queue.exchange {
            exchanges.push((exchange, kind.clone()));
        }
        if let Some(exchange) = &queue.dead_letter_exchange {
            exchanges.push((exchange, ExchangeKind::Direct));
        }
    }
    let mut seen = std::collections::HashSet::new();
    exchanges.retain(|(name, _)| seen.insert(*name));

    let channel = connection.create_channel().await?;
    for (name, kind) in exchanges {
        declare_exchange(&channel, name, kind).await?;
    }
    // The channel is only for declarations; a failure to close it changes nothing.
    let _ = channel.close(200, "declarations done".into()).await;
    Ok(())
}

/// Declares `queue` on `channel` (or checks it exists, with `declare:
/// passive`), binds each of its routing keys on `exchange`, and declares its
/// dead-letter queue. With `single_active` (cluster mode) the queue is
/// declared with `x-single-active-consumer`.
///
/// # Errors
///
/// The broker's answer to the first declaration or binding that failed.
pub async fn declare_queue(
    channel: &Channel,
    queue: &QueueConfig,
    exchange: &str,
    single_active: bool,
) -> lapin::Result<()> {
    let options = QueueDeclareOptions {
        durable: queue.durable,
        passive: queue.declare == DeclareMode::Passive,
        ..QueueDeclareOptions::default()
    };
    let mut arguments = FieldTable::default();
    if let Some(dead_letter_exchange) = &queue.dead_letter_exchange
        && queue.declare == DeclareMode::Create
    {
        // Messages rejected without the bridge's help (by RabbitMQ itself, or
        // if the bridge cannot publish the dead letter) end up there too.
        arguments.insert(
            "x-dead-letter-exchange".into(),
            long_string(dead_letter_exchange),
        );
        arguments.insert("x-dead-letter-routing-key".into(), long_string(&queue.name));
    }
    if queue.queue_type == QueueType::Quorum && queue.declare == DeclareMode::Create {
        arguments.insert("x-queue-type".into(), long_string("quorum"));
    }
    if single_active && queue.declare == DeclareMode::Create {
        // Several instances consume the queue, one at a time, so each message
        // is handled once and in order; another takes over when it leaves.
        arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    }
    channel
        .queue_declare(queue.name.as_str().into(), options, arguments)
        .await?;
    bind(channel, queue, exchange).await?;

    if let (Some(dead_letter_exchange), Some(dead_letter_queue)) =
        (&queue.dead_letter_exchange, &queue.dead_letter_queue)
    {
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(
                dead_letter_queue.as_str().into(),
                options,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                dead_letter_queue.as_str().into(),
                dead_letter_exchange.as_str().into(),
                queue.name.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Binds each routing key of `queue` on `exchange`. Binding twice is harmless.
///
/// # Errors
///
/// The broker's answer to the first binding that failed.
pub async fn bind(channel: &Channel, queue: &QueueConfig, exchange: &str) -> lapin::Result<()> {
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

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}
