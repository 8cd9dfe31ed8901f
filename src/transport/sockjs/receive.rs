//! The HTTP receiving transports: `xhr` and `jsonp` (polling: one frame per
//! request) and `xhr_streaming`, `eventsource` and `htmlfile` (streaming: a
//! prelude, then frames until the response limit or the close frame).
//!
//! A request for an unknown session id opens a new session and starts the
//! service on it; its first frame is `o`. A second receiving request while one
//! is attached gets `c[2010,"Another connection still open"]`. A client that
//! aborts its attached request interrupts the session (`c[1002,...]`).

use std::{convert::Infallible, sync::Arc};

use axum::{
    body::Body,
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{
    Request, SockJs,
    framing::{self, Encoding},
    info::{self, NO_CACHE},
    session::{ANOTHER_CONNECTION, Attach, Frame, INTERRUPTED, Shared},
};
use crate::metrics::Transport;

/// Chunks buffered between the frame loop and the response body.
const BODY_CHUNKS: usize = 16;

/// Serves a receiving request.
pub(super) fn receive(
    sockjs: &Arc<SockJs>,
    id: &str,
    transport: &str,
    request: &Request,
) -> Response {
    let (encoding, streaming, label, method) = match transport {
        "xhr" => (
            Encoding::Xhr,
            false,
            Transport::SockJsXhrPolling,
            Method::POST,
        ),
        "xhr_streaming" => (
            Encoding::Xhr,
            true,
            Transport::SockJsXhrStreaming,
            Method::POST,
        ),
        "eventsource" => (
            Encoding::EventSource,
            true,
            Transport::SockJsEventSource,
            Method::GET,
        ),
        "htmlfile" | "jsonp" => {
            let callback = match callback(request.query.as_deref()) {
                Ok(callback) => callback,
                Err(message) => return server_error(message),
            };
            if transport == "htmlfile" {
                (
                    Encoding::HtmlFile(callback),
                    true,
                    Transport::SockJsHtmlFile,
                    Method::GET,
                )
            } else {
                (
                    Encoding::Jsonp(callback),
                    false,
                    Transport::SockJsJsonp,
                    Method::GET,
                )
            }
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    if request.method != method {
        return info::not_allowed(if method == Method::GET {
            "GET"
        } else {
            "OPTIONS, POST"
        });
    }

    let (shared, opened) = match sockjs.registry.get(id) {
        Some(shared) => (shared, false),
        None => match open(sockjs, id, label, request) {
            Ok(shared) => (shared, true),
            Err(response) => return *response,
        },
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(BODY_CHUNKS);
    let stream = Stream {
        tx,
        encoding: encoding.clone(),
        written: 0,
    };
    let limit = if streaming {
        sockjs.options.response_limit
    } else {
        0
    };
    tokio::spawn(stream.run(shared, opened, streaming, limit, sockjs.options.heartbeat));

    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut response = (
        [
            (header::CONTENT_TYPE, encoding.content_type()),
            (header::CACHE_CONTROL, NO_CACHE),
        ],
        body,
    )
        .into_response();
    info::cors(&request.headers, response.headers_mut());
    response
}

/// Opens a session and starts the service on it.
fn open(
    sockjs: &Arc<SockJs>,
    id: &str,
    transport: Transport,
    request: &Request,
) -> Result<Arc<Shared>, Box<Response>> {
    let ticket = sockjs.service.admit(&request.headers)?;
    let Some(session) = sockjs.registry.create(id) else {
        sockjs.reject("max_sessions");
        let refusal = (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many SockJS sessions, try again later\n",
        );
        return Err(Box::new(refusal.into_response()));
    };
    let shared = session.shared.clone();
    tokio::spawn(sockjs.service.serve(session, transport, ticket));
    Ok(shared)
}

/// Reads and checks the `c` (callback) query parameter. The error is the
/// message of the 500 response.
fn callback(query: Option<&str>) -> Result<String, &'static str> {
    let value = query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .find(|(name, _)| name == "c")
        .map(|(_, value)| value.into_owned());
    match value {
        None => Err("\"callback\" parameter required"),
        Some(callback) if framing::is_valid_callback(&callback) => Ok(callback),
        Some(_) => Err("invalid \"callback\" parameter"),
    }
}

pub(super) fn server_error(message: &'static str) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        message,
    )
        .into_response()
}

/// Writes frames into one response body.
struct Stream {
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    encoding: Encoding,
    written: usize,
}

impl Stream {
    async fn run(
        mut self,
        shared: Arc<Shared>,
        opened: bool,
        streaming: bool,
        limit: usize,
        heartbeat: std::time::Duration,
    ) {
        if streaming && let Some(prelude) = self.encoding.prelude() {
            // The prelude does not count toward the response limit.
            let alive = self.tx.send(Ok(Bytes::from(prelude))).await.is_ok();
            if !alive {
                return;
            }
        }
        if opened && (!self.frame(&Frame::Open).await || !streaming) {
            return;
        }
        let token = match shared.attach() {
            Attach::Attached(token) => token,
            Attach::Busy => {
                let (code, reason) = ANOTHER_CONNECTION;
                self.frame(&Frame::Close(code, reason.into())).await;
                return;
            }
        };

        loop {
            let frame = tokio::select! {
                frame = shared.next_frame(heartbeat) => frame,
                () = self.tx.closed() => {
                    // The client aborted the request.
                    shared.close(INTERRUPTED.0, INTERRUPTED.1);
                    break;
                }
            };
            let closing = matches!(frame, Frame::Close(..));
            if !self.frame(&frame).await {
                shared.close(INTERRUPTED.0, INTERRUPTED.1);
                break;
            }
            if closing || !streaming || self.written >= limit {
                break;
            }
        }
        shared.detach(token);
    }

    async fn frame(&mut self, frame: &Frame) -> bool {
        let text = self.encoding.frame(&framing::frame_text(frame));
        self.write(text).await
    }

    /// Sends a chunk; `false` when the client has gone.
    async fn write(&mut self, text: String) -> bool {
        self.written += text.len();
        self.tx.send(Ok(Bytes::from(text))).await.is_ok()
    }
}
