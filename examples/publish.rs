//! Publishes one message to RabbitMQ with a publisher confirm, for trying the
//! bridge by hand:
//!
//! ```text
//! cargo run --example publish -- tgm.iot '{"sensorId": 123, "value": 75.5}'
//! ```

use clap::Parser;
use lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};

/// Publish one message to a RabbitMQ exchange.
#[derive(Debug, Parser)]
struct Args {
    /// AMQP URL of the broker.
    #[arg(
        long,
        env = "STOMPBRIDGE_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    url: String,
    /// Exchange to publish to.
    #[arg(long, default_value = "tgm.events")]
    exchange: String,
    /// Routing key of the message, e.g. tgm.iot.
    routing_key: String,
    /// Message body; read from standard input when omitted.
    body: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let body = match args.body {
        Some(body) => body.into_bytes(),
        None => {
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)?;
            body
        }
    };
    let connection = Connection::connect(&args.url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let properties = BasicProperties::default().with_content_type("application/json".into());
    let confirm = channel
        .basic_publish(
            args.exchange.as_str().into(),
            args.routing_key.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await?
        .await?;
    if !confirm.is_ack() {
        anyhow::bail!("RabbitMQ did not confirm the message: {confirm:?}");
    }
    println!(
        "published {} bytes to exchange {} with routing key {}",
        body.len(),
        args.exchange,
        args.routing_key
    );
    connection.close(200, "done".into()).await?;
    Ok(())
}
