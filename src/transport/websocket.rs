//! Raw WebSocket: STOMP frames directly in WebSocket messages, at
//! `server.websocket_path` and at `{sockjs prefix}/websocket`.
//!
//! The client offers `v10.stomp`, `v11.stomp` and `v12.stomp` as subprotocols.
//! The server echoes exactly one of them, the highest offered, because browsers
//! fail the handshake otherwise. RFC 6455, section 4.1, requires that the selected
//! protocol "MUST be one of the values the client offered".

use std::sync::Arc;

use axum::{
    extract::{State, ws::WebSocketUpgrade},
    http::HeaderMap,
    response::{IntoResponse, Response},
};

use super::{
    Endpoints,
    connection::{self, WsLink},
};

/// Subprotocols in order of preference.
pub const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

/// Handles an upgrade request on the raw WebSocket endpoint.
pub(crate) async fn endpoint(
    State(endpoints): State<Arc<Endpoints>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let permit = match endpoints.admit(&headers) {
        Ok(permit) => permit,
        Err(refusal) => return refusal.into_response(),
    };
    let bridge = endpoints.bridge.clone();
    offer_subprotocols(endpoints.configure(upgrade)).on_upgrade(move |socket| {
        // The session runs in a task of its own, so axum's upgrade task, which
        // is about twice the size of the session's, ends here instead of
        // staying with every idle connection.
        tokio::spawn(connection::serve(WsLink { socket }, bridge, permit));
        std::future::ready(())
    })
}

/// Offers the STOMP subprotocols on an upgrade, for the SockJS `/websocket`
/// URL too.
pub(crate) fn offer_subprotocols(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade.protocols(SUBPROTOCOLS)
}
