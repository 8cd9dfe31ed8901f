//! The websocket transport: `{prefix}/{server}/{session}/websocket`.
//!
//! The server sends `o` on open, `a[...]` with queued messages, `h` when the
//! connection is idle and `c[code,"reason"]` before closing. The client sends
//! a JSON array of strings (or one string) per message; an empty message or
//! array is ignored and broken JSON closes the connection at once. A session
//! lives as long as its WebSocket, so session ids may be reused.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::ws::{Message, WebSocket},
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
};

use super::{
    framing, info,
    session::{Attach, Frame, INTERRUPTED, Shared},
};

/// Moves messages between `socket` and the session until either ends.
pub(super) async fn pump(mut socket: WebSocket, shared: Arc<Shared>, heartbeat: Duration) {
    let token = match shared.attach() {
        Attach::Attached(token) => token,
        Attach::Busy => return,
    };
    if socket.send(Message::text(framing::OPEN)).await.is_err() {
        shared.close(INTERRUPTED.0, INTERRUPTED.1);
        return;
    }
    loop {
        tokio::select! {
            frame = shared.next_frame(heartbeat) => {
                let closing = matches!(frame, Frame::Close(..));
                let text = framing::frame_text(&frame);
                if socket.send(Message::text(text)).await.is_err() {
                    shared.close(INTERRUPTED.0, INTERRUPTED.1);
                    break;
                }
                if closing {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            }
            received = socket.recv() => {
                if !received_message(&shared, received).await {
                    shared.close(INTERRUPTED.0, INTERRUPTED.1);
                    break;
                }
            }
        }
    }
    shared.detach(token);
}

/// Hands one client message to the session; `false` ends the connection.
async fn received_message(shared: &Shared, received: Option<Result<Message, axum::Error>>) -> bool {
    let text = match received {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(Message::Binary(data))) => match String::from_utf8(data.to_vec()) {
            Ok(text) => text.into(),
            Err(_) => return false,
        },
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => return true,
        Some(Ok(Message::Close(_)) | Err(_)) | None => return false,
    };
    if text.is_empty() {
        return true;
    }
    let Ok(messages) = framing::parse_client(&text) else {
        return false;
    };
    if messages.is_empty() {
        return true;
    }
    match shared.inbound() {
        Some(inbound) => inbound.send(messages).await.is_ok(),
        None => true,
    }
}

/// Builds the response to a request on a WebSocket URL that is not a valid
/// WebSocket upgrade. RFC 6455, section 4.4: a server that does not speak the
/// requested version responds with the versions it does, here only 13.
pub(super) fn upgrade_required(method: &Method, headers: &HeaderMap) -> Response {
    if *method != Method::GET {
        return info::not_allowed("GET");
    }
    let version = headers.get("sec-websocket-version");
    if version.is_some_and(|v| v.as_bytes() != b"13") {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [("sec-websocket-version", "13")],
            "Unsupported WebSocket version: only version 13 (RFC 6455) is spoken.",
        )
            .into_response();
    }
    (
        StatusCode::BAD_REQUEST,
        "Can \"Upgrade\" only to \"WebSocket\".",
    )
        .into_response()
}
