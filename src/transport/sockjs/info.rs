//! `{prefix}/info`: the server's capabilities, read by sockjs-client before it
//! picks a transport, with the CORS and caching headers the protocol requires.

use axum::{
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};

/// Cache lifetime of preflight responses, in seconds (one year, as sockjs-node uses).
const PREFLIGHT_MAX_AGE: &str = "31536000";

/// Headers that stop any cache from keeping a response.
pub(crate) const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";

/// Handles GET and OPTIONS on `/info`.
pub(crate) fn handle(method: &Method, request: &HeaderMap) -> Response {
    match *method {
        Method::GET => {
            let body = serde_json::json!({
                "websocket": true,
                "origins": ["*:*"],
                "cookie_needed": false,
                "entropy": rand::random::<u32>(),
            });
            let mut response = (
                [
                    (header::CONTENT_TYPE, "application/json; charset=UTF-8"),
                    (header::CACHE_CONTROL, NO_CACHE),
                ],
                body.to_string(),
            )
                .into_response();
            cors(request, response.headers_mut());
            response
        }
        Method::OPTIONS => preflight(request, "OPTIONS, GET"),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// Builds the 204 response to a CORS preflight request, allowing `methods`.
pub(crate) fn preflight(request: &HeaderMap, methods: &'static str) -> Response {
    let mut response = (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, methods),
            (header::CACHE_CONTROL, "public, max-age=31536000"),
            (header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE),
        ],
    )
        .into_response();
    cors(request, response.headers_mut());
    response
}

/// Adds CORS headers: the request's `Origin` is echoed with credentials
/// allowed (sockjs-client sends cookies), or `*` without one.
pub(crate) fn cors(request: &HeaderMap, response: &mut HeaderMap) {
    let origin = request
        .get(header::ORIGIN)
        .filter(|origin| origin.as_bytes() != b"null");
    match origin {
        Some(origin) => {
            response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            response.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        None => {
            response.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
    if let Some(requested) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        response.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
}
