//! SockJS endpoints under each prefix of `server.sockjs.paths`.
//!
//! URLs, as sockjs-client builds them:
//! - `{prefix}` and `{prefix}/`: the greeting;
//! - `{prefix}/info`: server capabilities, with CORS headers;
//! - `{prefix}/websocket`: raw WebSocket, no SockJS framing;
//! - `{prefix}/{server}/{session}/websocket`: SockJS framing over WebSocket.
//!
//! The HTTP fallback transports (xhr, eventsource, htmlfile, jsonp) and the
//! iframe page are not served yet: their URLs return 404, which makes
//! sockjs-client skip them.

pub mod framing;
mod info;
mod websocket;

use std::sync::Arc;

use axum::{
    extract::{
        State,
        ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

use super::{Endpoints, connection};
use websocket::SockJsWire;

const GREETING: &str = "Welcome to SockJS!\n";

/// Routes every request that no fixed route took.
pub(crate) async fn dispatch(
    State(endpoints): State<Arc<Endpoints>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(rest) = endpoints.sockjs_rest(uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match rest {
        "" | "/" => greeting(&method),
        "/info" => match endpoints.check_origin(&headers) {
            Ok(()) => info::handle(&method, &headers),
            Err(refusal) => refusal.into_response(),
        },
        "/websocket" => match upgrade {
            Ok(upgrade) => super::websocket::accept(&endpoints, &headers, upgrade),
            Err(_) => upgrade_required(&method),
        },
        _ => session_url(&endpoints, rest, &method, &headers, upgrade),
    }
}

/// Serves `/{server}/{session}/{transport}`.
fn session_url(
    endpoints: &Arc<Endpoints>,
    rest: &str,
    method: &Method,
    headers: &HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let mut parts = rest.trim_start_matches('/').split('/');
    let (Some(server), Some(session), Some(transport), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // SockJS: server and session ids are non-empty and contain no dots.
    if [server, session]
        .iter()
        .any(|id| id.is_empty() || id.contains('.'))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    if transport != "websocket" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(_) => return upgrade_required(method),
    };
    let permit = match endpoints.admit(headers) {
        Ok(permit) => permit,
        Err(refusal) => return refusal.into_response(),
    };
    let bridge = endpoints.bridge.clone();
    let wire = SockJsWire {
        heartbeat: bridge.session_settings().sockjs_heartbeat,
    };
    endpoints
        .configure(upgrade)
        .on_upgrade(move |socket| connection::serve(socket, wire, bridge, permit))
}

fn greeting(method: &Method) -> Response {
    if *method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        GREETING,
    )
        .into_response()
}

/// Builds the response to a request on a WebSocket URL that is not a WebSocket upgrade.
fn upgrade_required(method: &Method) -> Response {
    if *method != Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET")]).into_response();
    }
    (
        StatusCode::BAD_REQUEST,
        "Can \"Upgrade\" only to \"WebSocket\".",
    )
        .into_response()
}

// === impl Endpoints ===

impl Endpoints {
    /// Returns the part of `path` after the SockJS prefix it falls under, if any.
    fn sockjs_rest<'p>(&self, path: &'p str) -> Option<&'p str> {
        self.sockjs_paths.iter().find_map(|prefix| {
            let rest = path.strip_prefix(prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some(rest)
        })
    }
}
