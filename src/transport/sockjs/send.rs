//! The sending transports: `xhr_send` (a JSON array of strings as the body)
//! and `jsonp_send` (the same array as the form field `d`, or as the body).
//!
//! An unknown or ended session gets 404, an empty payload 500 "Payload
//! expected.", broken JSON 500 "Broken JSON encoding.", and a body over
//! `max_post_bytes` 413.

use std::sync::Arc;

use axum::{
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{
    Request, SockJs,
    framing::parse_client,
    info::{self, NO_CACHE},
    receive::server_error,
};

/// Serves `xhr_send` and `jsonp_send`.
pub(super) async fn send(
    sockjs: &Arc<SockJs>,
    id: &str,
    transport: &str,
    request: Request,
) -> Response {
    if request.method != Method::POST {
        return info::not_allowed("OPTIONS, POST");
    }
    let Some(shared) = sockjs.registry.get(id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body = match axum::body::to_bytes(request.body, sockjs.options.max_post_bytes).await {
        Ok(body) => body,
        Err(_) => {
            sockjs.reject("post_too_large");
            return (StatusCode::PAYLOAD_TOO_LARGE, "Payload too large.").into_response();
        }
    };
    let form = request
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let payload = if transport == "jsonp_send" && form {
        form_urlencoded::parse(&body)
            .find(|(name, _)| name == "d")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    if payload.is_empty() {
        return server_error("Payload expected.");
    }
    let Ok(messages) = parse_client(&payload) else {
        return server_error("Broken JSON encoding.");
    };
    let Some(inbound) = shared.inbound() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !messages.is_empty() && inbound.send(messages).await.is_err() {
        return StatusCode::NOT_FOUND.into_response();
    }

    let mut response = if transport == "xhr_send" {
        // Some browsers treat a 204 without a content type as XML and warn.
        (
            StatusCode::NO_CONTENT,
            [
                (header::CONTENT_TYPE, "text/plain; charset=UTF-8"),
                (header::CACHE_CONTROL, NO_CACHE),
            ],
        )
            .into_response()
    } else {
        // Some browsers mishandle a 204 here, hence a body.
        (
            [
                (header::CONTENT_TYPE, "text/plain; charset=UTF-8"),
                (header::CACHE_CONTROL, NO_CACHE),
            ],
            "ok",
        )
            .into_response()
    };
    info::cors(&request.headers, response.headers_mut());
    response
}
