//! A SockJS server, independent of STOMP: the protocol of sockjs-client 1.x as
//! the sockjs-protocol test suite defines it, for any [`Service`].
//!
//! URLs under a prefix (the SockJS base URL):
//! - `` and `/`: the greeting; `/info`: server capabilities, with CORS;
//! - `/iframe.html` (and versioned names): the page of the iframe transports;
//! - `/websocket`: raw WebSocket, handed to [`Service::serve_raw`];
//! - `/{server}/{session}/{transport}`: a session, where the transport is
//!   `websocket`, `xhr`, `xhr_streaming`, `eventsource`, `htmlfile` or
//!   `jsonp` for receiving, and `xhr_send` or `jsonp_send` for sending.
//!
//! Every transport leads to the same [`session::Session`], so the service
//! sees one stream of messages whatever the client picked.

pub mod framing;
mod info;
mod receive;
mod send;
pub mod session;
mod websocket;

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::ws::{WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::future::BoxFuture;
use prometheus::{IntCounterVec, IntGauge};

pub use framing::{BrokenJson, parse_client, quote};
use session::{Registry, Session};

use crate::metrics::Transport;

/// Streaming responses end after this many bytes, so browsers can free what
/// the response holds; sockjs-client then opens a new one.
pub const DEFAULT_RESPONSE_LIMIT: usize = 128 * 1024;

/// Interval of `h` frames on an idle receiving connection.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(25);

/// Time a session may go without a receiving request before it is closed.
pub const DEFAULT_DISCONNECT_DELAY: Duration = Duration::from_secs(5);

/// URL the iframe page loads sockjs-client from.
pub const DEFAULT_CLIENT_URL: &str =
    "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js";

const GREETING: &str = "Welcome to SockJS!\n";

/// A SockJS application: what runs on each session.
pub trait Service: Send + Sync + 'static {
    /// Decides whether a new session or raw WebSocket may start, returning a
    /// ticket held for its lifetime, or the response that refuses it.
    ///
    /// # Errors
    ///
    /// The response to send instead (such as 503 at a session limit).
    fn admit(&self, headers: &HeaderMap) -> Result<Ticket, Box<Response>>;

    /// Serves one session until it ends.
    fn serve(
        &self,
        session: Session,
        transport: Transport,
        ticket: Ticket,
    ) -> BoxFuture<'static, ()>;

    /// Serves one raw WebSocket (no SockJS framing) until it ends.
    fn serve_raw(&self, socket: WebSocket, ticket: Ticket) -> BoxFuture<'static, ()>;
}

/// Whatever a service holds for the life of one session.
pub struct Ticket(pub Box<dyn Send + Sync>);

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket")
    }
}

/// Settings of one SockJS server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Whether the websocket transports are offered (`/info` reports it).
    pub websocket: bool,
    /// Whether session responses set a `JSESSIONID` cookie, which some load
    /// balancers need for sticky sessions.
    pub cookie_needed: bool,
    pub heartbeat: Duration,
    pub disconnect_delay: Duration,
    pub response_limit: usize,
    pub client_url: String,
    /// Largest `xhr_send` or `jsonp_send` body accepted, in bytes.
    pub max_post_bytes: usize,
    /// Most HTTP-transport sessions at once.
    pub max_sessions: usize,
    /// Bytes queued for one session before the service's send fails.
    pub max_queued_bytes: usize,
    /// WebSocket buffer and size limits, applied to every upgrade.
    pub max_message_bytes: usize,
}

/// Counters the SockJS layer updates, when it has any.
#[derive(Clone, Debug)]
pub struct SockJsMetrics {
    /// HTTP-transport sessions open now.
    pub sessions: IntGauge,
    /// Requests refused, by reason: `max_sessions`, `post_too_large`.
    pub rejected: IntCounterVec,
}

/// One SockJS server: options, the service, and the HTTP sessions.
pub struct SockJs {
    pub options: Options,
    service: Arc<dyn Service>,
    registry: Registry,
    metrics: Option<SockJsMetrics>,
}

impl std::fmt::Debug for SockJs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SockJs")
            .field("options", &self.options)
            .field("sessions", &self.registry.len())
            .finish_non_exhaustive()
    }
}

/// One request under a SockJS prefix.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The path after the prefix, such as `/info` or `/000/abc/xhr`.
    pub rest: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Body,
    pub upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            websocket: true,
            cookie_needed: false,
            heartbeat: DEFAULT_HEARTBEAT,
            disconnect_delay: DEFAULT_DISCONNECT_DELAY,
            response_limit: DEFAULT_RESPONSE_LIMIT,
            client_url: DEFAULT_CLIENT_URL.into(),
            max_post_bytes: 128 * 1024,
            max_sessions: 100_000,
            max_queued_bytes: 1024 * 1024,
            max_message_bytes: 256 * 1024,
        }
    }
}

// === impl SockJs ===

impl SockJs {
    pub fn new(
        options: Options,
        service: Arc<dyn Service>,
        metrics: Option<SockJsMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            registry: Registry::new(options.max_sessions, options.max_queued_bytes),
            options,
            service,
            metrics,
        })
    }

    /// Closes sessions that had no receiving request for the disconnect delay,
    /// every second, until `stop` is cancelled.
    pub async fn reap(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {
                    self.registry.reap(self.options.disconnect_delay);
                    if let Some(metrics) = &self.metrics {
                        metrics.sessions.set(self.registry.len() as i64);
                    }
                }
            }
        }
    }

    /// Handles one request under the prefix.
    pub async fn handle(self: &Arc<Self>, request: Request) -> Response {
        let rest = request.rest.clone();
        match rest.as_str() {
            "" | "/" => greeting(&request.method),
            "/info" => info::info(&request.method, &request.headers, &self.options),
            "/websocket" => self.raw_websocket(request),
            path if path.starts_with("/iframe") => {
                info::iframe(path, &request.headers, &self.options.client_url)
            }
            path => match session_url(path) {
                Some((session, transport)) => self.session(session, transport, request).await,
                None => StatusCode::NOT_FOUND.into_response(),
            },
        }
    }

    fn raw_websocket(self: &Arc<Self>, request: Request) -> Response {
        if !self.options.websocket {
            return StatusCode::NOT_FOUND.into_response();
        }
        let upgrade = match request.upgrade {
            Ok(upgrade) => upgrade,
            Err(_) => return websocket::upgrade_required(&request.method, &request.headers),
        };
        let ticket = match self.service.admit(&request.headers) {
            Ok(ticket) => ticket,
            Err(response) => return *response,
        };
        let service = self.service.clone();
        self.configure(upgrade)
            .on_upgrade(move |socket| service.serve_raw(socket, ticket))
    }

    async fn session(self: &Arc<Self>, id: &str, transport: &str, request: Request) -> Response {
        let cookie = request_cookie(&request.headers);
        let mut response = match transport {
            "websocket" => return self.websocket(request),
            "xhr" | "xhr_streaming" | "eventsource" | "htmlfile" | "jsonp" => {
                if request.method == Method::OPTIONS && transport.starts_with("xhr") {
                    return info::preflight(&request.headers, "OPTIONS, POST");
                }
                receive::receive(self, id, transport, &request)
            }
            "xhr_send" | "jsonp_send" => {
                if request.method == Method::OPTIONS && transport == "xhr_send" {
                    return info::preflight(&request.headers, "OPTIONS, POST");
                }
                send::send(self, id, transport, request).await
            }
            _ => return StatusCode::NOT_FOUND.into_response(),
        };
        if self.options.cookie_needed {
            set_cookie(&mut response, cookie);
        }
        response
    }

    fn websocket(self: &Arc<Self>, request: Request) -> Response {
        if !self.options.websocket {
            return StatusCode::NOT_FOUND.into_response();
        }
        let upgrade = match request.upgrade {
            Ok(upgrade) => upgrade,
            Err(_) => return websocket::upgrade_required(&request.method, &request.headers),
        };
        let ticket = match self.service.admit(&request.headers) {
            Ok(ticket) => ticket,
            Err(response) => return *response,
        };
        let this = self.clone();
        self.configure(upgrade)
            .on_upgrade(move |socket| async move {
                let session = Session::new(String::new(), this.options.max_queued_bytes);
                let shared = session.shared.clone();
                let service = this
                    .service
                    .serve(session, Transport::SockJsWebSocket, ticket);
                let pump = websocket::pump(socket, shared, this.options.heartbeat);
                tokio::join!(service, pump);
            })
    }

    fn configure(&self, upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
        super::configure_upgrade(upgrade, self.options.max_message_bytes)
    }

    fn reject(&self, reason: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.rejected.with_label_values(&[reason]).inc();
        }
    }
}

/// Builds routes serving each SockJS server under its prefix (a path without
/// a trailing `/`), for programs that mount SockJS on its own.
pub fn mount(servers: Vec<(String, Arc<SockJs>)>) -> axum::Router {
    let servers = Arc::new(servers);
    axum::Router::new().fallback(
        move |method: Method,
              uri: axum::http::Uri,
              headers: HeaderMap,
              upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
              body: Body| {
            let servers = servers.clone();
            async move {
                let path = uri.path();
                let found = servers.iter().find_map(|(prefix, server)| {
                    let rest = path.strip_prefix(prefix.as_str())?;
                    (rest.is_empty() || rest.starts_with('/'))
                        .then(|| (rest.to_owned(), server.clone()))
                });
                let Some((rest, server)) = found else {
                    return StatusCode::NOT_FOUND.into_response();
                };
                let request = Request {
                    method,
                    rest,
                    query: uri.query().map(str::to_owned),
                    headers,
                    body,
                    upgrade,
                };
                server.handle(request).await
            }
        },
    )
}

/// Splits `/{server}/{session}/{transport}`; server and session ids are
/// non-empty and contain no dots.
fn session_url(path: &str) -> Option<(&str, &str)> {
    let mut parts = path.strip_prefix('/')?.split('/');
    let (Some(server), Some(session), Some(transport), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if [server, session]
        .iter()
        .any(|id| id.is_empty() || id.contains('.'))
    {
        return None;
    }
    Some((session, transport))
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

/// Adds `JSESSIONID` for load balancers that stick sessions by cookie,
/// echoing the client's value or setting a placeholder.
fn set_cookie(response: &mut Response, cookie: Option<String>) {
    let value = cookie.unwrap_or_else(|| "dummy".to_owned());
    if let Ok(value) = HeaderValue::from_str(&format!("JSESSIONID={value}; path=/")) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}

/// Reads `JSESSIONID` from the request's cookies.
fn request_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == "JSESSIONID").then(|| value.to_owned())
        })
}
