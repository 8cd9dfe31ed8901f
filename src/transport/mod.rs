//! The public listener: raw WebSocket and SockJS endpoints.
//!
//! Every endpoint ends in `connection::serve`, which runs one STOMP session
//! per connection. The number of open connections is bounded by
//! `limits.max_sessions`; past it, upgrade requests get 503.

pub(crate) mod connection;
pub mod sockjs;
mod stomp;
pub mod websocket;

use std::sync::Arc;

use axum::{
    Router,
    extract::ws::WebSocketUpgrade,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::sync::OwnedSemaphorePermit;

use tracing::debug;

use crate::{bridge::Bridge, config::Config, metrics::Limit};

/// Capacity of a connection's WebSocket read buffer, in bytes, and the
/// maximum read per system call. Small, because every idle connection has one: a STOMP
/// CONNECT or SUBSCRIBE fits, and a larger SEND is read in several calls into
/// a buffer grown to its size.
const READ_BUFFER_BYTES: usize = 1024;

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
            max_message_bytes: max_message_bytes(config),
        }
    }

    /// Takes a connection slot for a request whose `Origin` is allowed, or
    /// returns the response that refuses it: 403 for an origin not in
    /// `server.allowed_origins`, 503 at `limits.max_sessions`.
    pub(crate) fn admit(&self, headers: &HeaderMap) -> Result<OwnedSemaphorePermit, Refusal> {
        self.check_origin(headers)?;
        self.bridge
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                self.bridge.metrics.limit_exceeded(Limit::Sessions);
                self.bridge
                    .metrics
                    .connections_rejected
                    .with_label_values(&["max_sessions"])
                    .inc();
                Refusal::TooManySessions
            })
    }

    /// Refuses a browser request from an origin not in `server.allowed_origins`.
    /// Requests without `Origin` (not from a browser) pass.
    pub(crate) fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let allowed = &self.bridge.config().server.allowed_origins;
        if origin
            .to_str()
            .is_ok_and(|origin| origin_allowed(allowed, origin))
        {
            return Ok(());
        }
        self.bridge
            .metrics
            .connections_rejected
            .with_label_values(&["origin"])
            .inc();
        debug!(origin = ?origin, "origin not allowed");
        Err(Refusal::Origin)
    }

    /// Applies the buffer and size limits to an upgrade.
    pub(crate) fn configure(&self, upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
        configure_upgrade(upgrade, self.max_message_bytes)
    }

    /// Returns the part of `path` after the SockJS prefix it falls under, if any.
    fn sockjs_rest<'p>(&self, path: &'p str) -> Option<&'p str> {
        self.sockjs_paths.iter().find_map(|prefix| {
            let rest = path.strip_prefix(prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some(rest)
        })
    }
}

/// Builds the public listener's routes, and starts the task that reclaims
/// abandoned SockJS sessions.
pub fn router(bridge: Arc<Bridge>, config: &Config) -> Router {
    let endpoints = Arc::new(Endpoints::new(bridge.clone(), config));
    let service = Arc::new(stomp::StompService {
        endpoints: endpoints.clone(),
    });
    let sockjs = sockjs::SockJs::new(
        sockjs_options(config),
        service,
        Some(sockjs::SockJsMetrics {
            sessions: bridge.metrics.sockjs_sessions.clone(),
            rejected: bridge.metrics.sockjs_rejected.clone(),
        }),
    );
    bridge
        .tasks
        .spawn(sockjs.clone().reap(bridge.shutdown.clone()));
    let state = Arc::new(Public { endpoints, sockjs });
    Router::new()
        .route(&config.server.websocket_path, get(raw_endpoint))
        .fallback(dispatch)
        .with_state(state)
}

/// State shared by the public routes.
#[derive(Debug)]
struct Public {
    endpoints: Arc<Endpoints>,
    sockjs: Arc<sockjs::SockJs>,
}

async fn raw_endpoint(
    axum::extract::State(public): axum::extract::State<Arc<Public>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    websocket::endpoint(
        axum::extract::State(public.endpoints.clone()),
        headers,
        upgrade,
    )
    .await
}

/// Routes every request that no fixed route took: SockJS URLs under a
/// configured prefix, 404 otherwise.
async fn dispatch(
    axum::extract::State(public): axum::extract::State<Arc<Public>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    body: axum::body::Body,
) -> Response {
    let Some(rest) = public.endpoints.sockjs_rest(uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Err(refusal) = public.endpoints.check_origin(&headers) {
        return refusal.into_response();
    }
    // The raw WebSocket under a SockJS prefix speaks STOMP, so it negotiates
    // the STOMP subprotocols.
    let upgrade = upgrade.map(|upgrade| {
        if rest == "/websocket" {
            websocket::offer_subprotocols(upgrade)
        } else {
            upgrade
        }
    });
    let request = sockjs::Request {
        method,
        rest: rest.to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
        upgrade,
    };
    public.sockjs.handle(request).await
}

fn sockjs_options(config: &Config) -> sockjs::Options {
    let sockjs = &config.server.sockjs;
    sockjs::Options {
        websocket: sockjs.websocket,
        cookie_needed: sockjs.cookie_needed,
        heartbeat: sockjs.heartbeat_interval,
        disconnect_delay: sockjs.disconnect_delay,
        response_limit: sockjs.response_limit,
        client_url: sockjs.client_url.clone(),
        max_post_bytes: sockjs.max_post_bytes,
        max_sessions: sockjs.max_sessions,
        max_queued_bytes: sockjs.max_queued_bytes,
        max_message_bytes: max_message_bytes(config),
    }
}

/// Largest WebSocket message accepted. A message may hold several STOMP
/// frames, so this is a multiple of the frame limit.
fn max_message_bytes(config: &Config) -> usize {
    config.limits.max_frame_bytes.saturating_mul(4)
}

/// Applies the buffer and size limits to an upgrade.
pub(crate) fn configure_upgrade(
    upgrade: WebSocketUpgrade,
    max_message_bytes: usize,
) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(max_message_bytes)
        .max_frame_size(max_message_bytes)
}

/// Returns whether `origin` matches an entry of `allowed`: `*` matches any origin,
/// `https://*.example.com` any subdomain of example.com over https, and any
/// other entry that origin exactly (ASCII case-insensitive).
pub fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|entry| {
        if entry == "*" || entry.eq_ignore_ascii_case(origin) {
            return true;
        }
        let Some((scheme, host)) = entry.split_once("://*.") else {
            return false;
        };
        let Some((origin_scheme, origin_host)) = origin.split_once("://") else {
            return false;
        };
        let suffix = format!(".{host}");
        origin_scheme.eq_ignore_ascii_case(scheme)
            && origin_host.len() > suffix.len()
            && origin_host
                .to_ascii_lowercase()
                .ends_with(&suffix.to_ascii_lowercase())
    })
}

/// Reason a connection was refused before its session started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 403: the `Origin` is not in `server.allowed_origins`.
    Origin,
    /// 503: `limits.max_sessions` connections are open.
    TooManySessions,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Origin => (StatusCode::FORBIDDEN, "origin not allowed\n").into_response(),
            Refusal::TooManySessions => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many sessions, try again later\n",
            )
                .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_subdomain() {
        let allowed = vec![
            "https://app.example.com".to_string(),
            "https://*.example.org".to_string(),
        ];
        assert!(origin_allowed(&allowed, "https://app.example.com"));
        assert!(origin_allowed(&allowed, "HTTPS://APP.EXAMPLE.COM"));
        assert!(!origin_allowed(&allowed, "http://app.example.com"));
        assert!(!origin_allowed(&allowed, "https://evil.com"));
        assert!(origin_allowed(&allowed, "https://a.example.org"));
        assert!(origin_allowed(&allowed, "https://a.b.example.org"));
        assert!(!origin_allowed(&allowed, "https://example.org"));
        assert!(!origin_allowed(&allowed, "https://evilexample.org"));
        assert!(!origin_allowed(&allowed, "http://a.example.org"));
        assert!(origin_allowed(&["*".to_string()], "null"));
    }
}
