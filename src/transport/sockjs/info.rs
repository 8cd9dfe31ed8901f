//! `/info`, the iframe page, and the CORS and caching headers.
//!
//! sockjs-client reads `/info` before it picks a transport. Responses that may
//! be cached (preflights, the iframe page) allow it for a year, and responses
//! that must not be cached carry [`NO_CACHE`].

use axum::{
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::Options;

/// Cache lifetime of cacheable responses, in seconds (one year).
const YEAR_SECONDS: &str = "31536000";

/// The `Cache-Control` value that stops any cache from keeping a response.
pub(super) const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";

/// Handles GET and OPTIONS on `/info`.
pub(super) fn info(method: &Method, request: &HeaderMap, options: &Options) -> Response {
    match *method {
        Method::GET => {
            let body = serde_json::json!({
                "websocket": options.websocket,
                "origins": ["*:*"],
                "cookie_needed": options.cookie_needed,
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
        _ => not_allowed("OPTIONS, GET"),
    }
}

/// Builds the 204 response to a CORS preflight request, allowing `methods`.
pub(super) fn preflight(request: &HeaderMap, methods: &'static str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    cacheable(headers);
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(YEAR_SECONDS),
    );
    cors(request, response.headers_mut());
    response
}

/// Builds a 405 response with `Allow` and no body.
pub(super) fn not_allowed(methods: &'static str) -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, methods)]).into_response()
}

/// Adds CORS headers: the request's `Origin` is echoed (`null` included, which
/// pages opened from files send) with credentials allowed, because
/// sockjs-client sends cookies; without an `Origin`, `*`. Requested headers
/// are allowed as asked.
pub(super) fn cors(request: &HeaderMap, response: &mut HeaderMap) {
    match request.get(header::ORIGIN) {
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
    if let Some(requested) = request
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|value| !value.is_empty())
    {
        response.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
}

/// Marks a response cacheable for a year.
fn cacheable(headers: &mut HeaderMap) {
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000"),
    );
    let expires = httpdate::fmt_http_date(
        std::time::SystemTime::now() + std::time::Duration::from_secs(31_536_000),
    );
    if let Ok(expires) = HeaderValue::from_str(&expires) {
        headers.insert(header::EXPIRES, expires);
    }
}

/// Serves `/iframe.html` and its versioned names (`/iframe-0.1.2.html`): a
/// page that loads sockjs-client from `client_url` for the iframe-based
/// transports. Cacheable, with an `ETag` checked against `If-None-Match`.
pub(super) fn iframe(path: &str, request: &HeaderMap, client_url: &str) -> Response {
    let name = path.strip_prefix('/').unwrap_or(path);
    let valid = name == "iframe.html"
        || name
            .strip_prefix("iframe-")
            .and_then(|rest| rest.strip_suffix(".html"))
            .is_some_and(|version| !version.contains('/'));
    if !valid {
        return StatusCode::NOT_FOUND.into_response();
    }
    let body = iframe_page(client_url);
    let etag = format!("\"{:016x}\"", fnv1a(body.as_bytes()));
    if request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|value| value.as_bytes() == etag.as_bytes())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=UTF-8")], body).into_response();
    cacheable(response.headers_mut());
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn iframe_page(client_url: &str) -> String {
    // The client URL comes from the configuration; a quote in it would end
    // the attribute, so it is escaped.
    let client_url = client_url.replace('"', "&quot;");
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  \
         <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  \
         <script src=\"{client_url}\"></script>\n  <script>\n    document.domain = document.domain;\n    \
         SockJS.bootstrap_iframe();\n  </script>\n</head>\n<body>\n  <h2>Don't panic!</h2>\n  \
         <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>"
    )
}

/// FNV-1a, enough for an ETag of a page that only changes with the configuration.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
