//! The SockJS websocket transport: `{prefix}/{server}/{session}/websocket`.
//!
//! The server sends `o` on open, `a[...]` with one or more STOMP frames as JSON
//! strings, `h` when the connection is idle and `c[code,"reason"]` before
//! closing. The client sends a JSON array of strings (or one string) per
//! message; an empty message is ignored and broken JSON ends the session.

use std::time::Duration;

use axum::extract::ws::Message;
use bytes::Bytes;

use super::framing;
use crate::{
    disconnect::Disconnect,
    metrics::Transport,
    transport::connection::{self, Wire},
};

/// SockJS framing over one WebSocket.
#[derive(Debug)]
pub(crate) struct SockJsWire {
    pub heartbeat: Duration,
}

impl Wire for SockJsWire {
    const TRANSPORT: Transport = Transport::SockJsWebSocket;

    fn open(&mut self, messages: &mut Vec<Message>) {
        messages.push(Message::text(framing::OPEN));
    }

    fn receive(&mut self, message: Message, chunks: &mut Vec<Bytes>) -> Result<(), Disconnect> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(data) => data.try_into().map_err(|_| Disconnect::BrokenJson)?,
            Message::Close(_) => return Err(Disconnect::TransportClosed),
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
        };
        if text.is_empty() {
            return Ok(());
        }
        let messages = framing::parse_client(&text).map_err(|_| Disconnect::BrokenJson)?;
        chunks.extend(messages.into_iter().map(Bytes::from));
        Ok(())
    }

    fn send(&mut self, frames: &mut Vec<Bytes>, messages: &mut Vec<Message>) {
        messages.push(Message::text(framing::messages(frames)));
        frames.clear();
    }

    fn keepalive(&self) -> Option<(Duration, Message)> {
        Some((self.heartbeat, Message::text(framing::HEARTBEAT)))
    }

    fn close(&mut self, reason: &Disconnect, messages: &mut Vec<Message>) {
        let (code, text) = reason.sockjs_close();
        messages.push(Message::text(framing::close(code, text)));
        messages.push(connection::close_message(reason));
    }
}
