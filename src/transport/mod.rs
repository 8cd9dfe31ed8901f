//! The public listener: raw WebSocket and SockJS endpoints.
//!
//! Every endpoint ends in `connection::serve`, which runs one STOMP session
//! per connection. The number of open connections is bounded by
//! `limits.max_sessions`; past it, upgrade requests get 503.

pub(crate) mod connection;
pub mod sockjs;
pub mod websocket;

use std::sync::Arc;

use axum::{
    Router,
    extract::ws::WebSocketUpgrade,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::sync::OwnedSemaphorePermit;

use crate::{bridge::Bridge, config::Config};

/// Initial capacity of a connection's WebSocket read buffer, in bytes. Small,
/// because every idle connection has one. It grows for larger messages.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Bytes of outgoing WebSocket data buffered before a write is forced; the
/// connection task flushes after each batch anyway.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// State shared by the public endpoints.
#[derive(Debug)]
pub struct Endpoints {
    pub(crate) bridge: Arc<Bridge>,
    /// SockJS prefixes, longest first, so `/ws/chat` matches before `/ws`.
    sockjs_paths: Vec<String>,
    /// Largest WebSocket message accepted. A message may hold several STOMP
    /// frames, so this is a multiple of the frame limit.
    max_message_bytes: usize,
}

// === impl Endpoints ===

impl Endpoints {
    pub fn new(bridge: Arc<Bridge>, config: &Config) -> Self {
        let mut sockjs_paths = config.server.sockjs.paths.clone();
        sockjs_paths.sort_by_key(|path| std::cmp::Reverse(path.len()));
        Self {
            bridge,
            sockjs_paths,
            max_message_bytes: config.limits.max_frame_bytes.saturating_mul(4),
        }
    }

    /// Takes a connection slot, or `None` at `limits.max_sessions`.
    pub(crate) fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.bridge.connections.clone().try_acquire_owned().ok()
    }

    /// Applies the buffer and size limits to an upgrade.
    pub(crate) fn configure(&self, upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
        upgrade
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(WRITE_BUFFER_BYTES)
            .max_message_size(self.max_message_bytes)
            .max_frame_size(self.max_message_bytes)
    }
}

/// Builds the public listener's routes.
pub fn router(bridge: Arc<Bridge>, config: &Config) -> Router {
    let endpoints = Arc::new(Endpoints::new(bridge, config));
    Router::new()
        .route(&config.server.websocket_path, get(websocket::endpoint))
        .fallback(sockjs::dispatch)
        .with_state(endpoints)
}

/// Builds the 503 response to an upgrade request past `limits.max_sessions`.
pub(crate) fn too_many_sessions() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "too many sessions, try again later\n",
    )
        .into_response()
}
