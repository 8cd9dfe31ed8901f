//! Serves the SockJS layer alone with the four services the sockjs-protocol
//! test suite expects under one base URL: `echo`, `disabled_websocket_echo`,
//! `cookie_needed_echo` and `close`. Streaming responses end after 4096 bytes,
//! as the suite asks of a test server.
//!
//! ```text
//! cargo run --example sockjs_test_server -- --listen 127.0.0.1:8081
//! SOCKJS_URL=http://127.0.0.1:8081 python3 sockjs-protocol.py
//! ```

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::ws::{CloseFrame, Message, WebSocket},
    http::HeaderMap,
    response::Response,
};
use clap::Parser;
use futures_util::future::BoxFuture;
use stompbridge::{
    metrics::Transport,
    transport::sockjs::{Options, Service, SockJs, Ticket, mount, session::Session},
};
use tokio_util::sync::CancellationToken;

/// Serve the SockJS test services.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
}

/// Sends every message back.
struct Echo;

/// Closes every session at once with 3000 "Go away!".
struct Close;

impl Service for Echo {
    fn admit(&self, _: &HeaderMap) -> Result<Ticket, Box<Response>> {
        Ok(Ticket(Box::new(())))
    }

    fn serve(&self, mut session: Session, _: Transport, _: Ticket) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            while let Some(messages) = session.recv().await {
                if session.send(messages).is_err() {
                    break;
                }
            }
        })
    }

    fn serve_raw(&self, mut socket: WebSocket, _: Ticket) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            while let Some(Ok(message)) = socket.recv().await {
                let echo = match message {
                    Message::Text(_) | Message::Binary(_) => message,
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                if socket.send(echo).await.is_err() {
                    break;
                }
            }
        })
    }
}

impl Service for Close {
    fn admit(&self, _: &HeaderMap) -> Result<Ticket, Box<Response>> {
        Ok(Ticket(Box::new(())))
    }

    fn serve(&self, session: Session, _: Transport, _: Ticket) -> BoxFuture<'static, ()> {
        Box::pin(async move { session.close(3000, "Go away!") })
    }

    fn serve_raw(&self, mut socket: WebSocket, _: Ticket) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let close = CloseFrame {
                code: 3000,
                reason: "Go away!".into(),
            };
            let _ = socket.send(Message::Close(Some(close))).await;
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = Options {
        response_limit: 4096,
        ..Options::default()
    };
    let stop = CancellationToken::new();
    let server = |options: Options, service: Arc<dyn Service>| {
        let server = SockJs::new(options, service, None);
        tokio::spawn(server.clone().reap(stop.clone()));
        server
    };
    let servers = vec![
        ("/echo".to_string(), server(options.clone(), Arc::new(Echo))),
        (
            "/disabled_websocket_echo".to_string(),
            server(
                Options {
                    websocket: false,
                    ..options.clone()
                },
                Arc::new(Echo),
            ),
        ),
        (
            "/cookie_needed_echo".to_string(),
            server(
                Options {
                    cookie_needed: true,
                    ..options.clone()
                },
                Arc::new(Echo),
            ),
        ),
        ("/close".to_string(), server(options, Arc::new(Close))),
    ];
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("SockJS test services on http://{}", listener.local_addr()?);
    axum::serve(listener, mount(servers)).await?;
    Ok(())
}
