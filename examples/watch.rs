//! Subscribes to STOMP destinations over raw WebSocket and prints every
//! MESSAGE body, for watching the bridge by hand:
//!
//! ```text
//! cargo run --example watch -- /topic/queues/tgm_iot
//! ```

use bytes::BytesMut;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use stompbridge::stomp::{Command, Decoder, Limits, Version};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

/// Print the messages that a STOMP server sends to some destinations.
#[derive(Debug, Parser)]
struct Args {
    /// WebSocket URL of the STOMP endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:1337/ws-raw")]
    url: String,
    /// Destinations to subscribe to.
    #[arg(required = true)]
    destinations: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut request = args.url.as_str().into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("v12.stomp"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;

    let mut frames =
        String::from("CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0");
    for (id, destination) in args.destinations.iter().enumerate() {
        frames.push_str(&format!(
            "SUBSCRIBE\nid:{id}\ndestination:{destination}\n\n\0"
        ));
    }
    ws.send(Message::text(frames)).await?;

    let mut decoder = Decoder::new(Limits {
        max_frame_bytes: 16 << 20,
        ..Limits::default()
    });
    decoder.set_version(Version::V1_2);
    let mut input = BytesMut::new();
    while let Some(message) = ws.next().await {
        match message? {
            Message::Text(text) => input.extend_from_slice(text.as_bytes()),
            Message::Binary(data) => input.extend_from_slice(&data),
            Message::Close(_) => break,
            _ => continue,
        }
        while let Some(frame) = decoder.decode(&mut input)? {
            match frame.command {
                Command::Connected => {
                    eprintln!("connected; waiting for messages on {:?}", args.destinations)
                }
                Command::Message => println!(
                    "{} {}",
                    frame.get("destination").unwrap_or_default(),
                    String::from_utf8_lossy(&frame.body)
                ),
                Command::Error => {
                    anyhow::bail!("server error: {}", frame.get("message").unwrap_or_default())
                }
                _ => {}
            }
        }
    }
    Ok(())
}
