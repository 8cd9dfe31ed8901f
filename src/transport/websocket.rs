//! Raw WebSocket: STOMP frames directly in WebSocket messages, at
//! `server.websocket_path` and at `{sockjs prefix}/websocket`.
//!
//! The client offers `v10.stomp`, `v11.stomp` and `v12.stomp` as subprotocols.
//! The server echoes exactly one of them, the highest offered, because browsers
//! fail the handshake otherwise. RFC 6455, section 4.1, says the selected
//! protocol "MUST be one of the values the client offered".

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{
        State,
        ws::{Message, Utf8Bytes, WebSocketUpgrade},
    },
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use bytes::Bytes;

use super::{
    Endpoints,
    connection::{self, Wire},
};
use crate::{disconnect::Disconnect, metrics::Transport};

/// Subprotocols in order of preference.
pub const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

/// Raw framing: one STOMP frame (or heart-beat) per WebSocket message.
#[derive(Debug)]
pub(crate) struct RawWire;

/// Handles an upgrade request on the raw WebSocket endpoint.
pub(crate) async fn endpoint(
    State(endpoints): State<Arc<Endpoints>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    accept(&endpoints, &headers, upgrade)
}

/// Accepts a raw WebSocket connection, or refuses it (see [`Endpoints::admit`]).
pub(crate) fn accept(
    endpoints: &Arc<Endpoints>,
    headers: &HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let permit = match endpoints.admit(headers) {
        Ok(permit) => permit,
        Err(refusal) => return refusal.into_response(),
    };
    let bridge = endpoints.bridge.clone();
    endpoints
        .configure(upgrade)
        .protocols(SUBPROTOCOLS)
        .on_upgrade(move |socket| connection::serve(socket, RawWire, bridge, permit))
}

// === impl RawWire ===

impl Wire for RawWire {
    const TRANSPORT: Transport = Transport::WebSocket;

    fn open(&mut self, _: &mut Vec<Message>) {}

    fn receive(&mut self, message: Message, chunks: &mut Vec<Bytes>) -> Result<(), Disconnect> {
        match message {
            Message::Text(text) => chunks.push(text.into()),
            Message::Binary(data) => chunks.push(data),
            Message::Close(_) => return Err(Disconnect::TransportClosed),
            // tungstenite replies to pings itself.
            Message::Ping(_) | Message::Pong(_) => {}
        }
        Ok(())
    }

    fn send(&mut self, frames: &mut Vec<Bytes>, messages: &mut Vec<Message>) {
        for frame in frames.drain(..) {
            // A text message must be UTF-8; a frame whose body is not travels as binary.
            messages.push(match Utf8Bytes::try_from(frame.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(frame),
            });
        }
    }

    fn keepalive(&self) -> Option<(Duration, Message)> {
        None
    }

    fn close(&mut self, reason: &Disconnect, messages: &mut Vec<Message>) {
        messages.push(connection::close_message(reason));
    }
}
