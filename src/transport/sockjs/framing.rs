//! SockJS frames: `o` (open), `h` (heartbeat), `a[...]` (messages) and
//! `c[code,"reason"]` (close), and the JSON encoding of messages both ways.

use std::fmt::Write;

use super::session::Frame;

/// The open frame, sent once when a session starts.
pub const OPEN: &str = "o";
/// The heartbeat frame, sent on idle connections so proxies keep them open.
pub const HEARTBEAT: &str = "h";

/// Encodes a close frame, e.g. `c[3000,"Go away!"]`.
pub fn close(code: u16, reason: &str) -> String {
    let mut out = format!("c[{code},");
    quote(reason, &mut out);
    out.push(']');
    out
}

/// Returns the text of a frame: `o`, `h`, `a[...]` or `c[code,"reason"]`.
pub fn frame_text(frame: &Frame) -> String {
    match frame {
        Frame::Open => OPEN.into(),
        Frame::Heartbeat => HEARTBEAT.into(),
        Frame::Messages(messages) => strings(messages),
        Frame::Close(code, reason) => close(*code, reason),
    }
}

/// Encodes string messages as one `a[...]` frame.
pub fn strings(messages: &[String]) -> String {
    let size = messages.iter().map(|m| m.len() + 8).sum::<usize>();
    let mut out = String::with_capacity(size + 3);
    out.push_str("a[");
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote(message, &mut out);
    }
    out.push(']');
    out
}

/// Encoding of frames in the response of an HTTP receiving transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `xhr` and `xhr_streaming`: one frame per line.
    Xhr,
    /// `eventsource`: one `data:` event per frame.
    EventSource,
    /// `htmlfile`: one `<script>` calling `p(frame)` per frame.
    HtmlFile(String),
    /// `jsonp`: one call of the callback with the frame.
    Jsonp(String),
}

/// Bytes of `h` that open an `xhr_streaming` response; some browsers deliver
/// nothing of a response before its first 2 KiB.
const XHR_PRELUDE_BYTES: usize = 2048;

/// The `htmlfile` page is padded to this size, for the same reason.
const HTMLFILE_PRELUDE_BYTES: usize = 1024;

impl Encoding {
    /// Returns the prelude a streaming response starts with.
    pub fn prelude(&self) -> Option<String> {
        match self {
            Encoding::Xhr => Some("h".repeat(XHR_PRELUDE_BYTES) + "\n"),
            Encoding::EventSource => Some("\r\n".into()),
            Encoding::HtmlFile(callback) => {
                let mut page = format!(
                    "<!doctype html>\n<html><head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  \
                     <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n</head><body><h2>Don't panic!</h2>\n  \
                     <script>\n    document.domain = document.domain;\n    var c = parent.{callback};\n    c.start();\n    \
                     function p(d) {{c.message(d);}};\n    window.onload = function() {{c.stop();}};\n  </script>"
                );
                let padding = HTMLFILE_PRELUDE_BYTES.saturating_sub(page.len());
                page.push_str(&" ".repeat(padding + 1));
                page.push_str("\r\n");
                Some(page)
            }
            Encoding::Jsonp(_) => None,
        }
    }

    /// Encodes one frame as this transport writes it.
    pub fn frame(&self, frame: &str) -> String {
        match self {
            Encoding::Xhr => format!("{frame}\n"),
            Encoding::EventSource => format!("data: {frame}\r\n\r\n"),
            Encoding::HtmlFile(_) => {
                let mut out = String::from("<script>\np(");
                quote(frame, &mut out);
                out.push_str(");\n</script>\r\n");
                out
            }
            Encoding::Jsonp(callback) => {
                let mut out = format!("/**/{callback}(");
                quote(frame, &mut out);
                out.push_str(");\r\n");
                out
            }
        }
    }

    /// Returns the `Content-Type` of the response.
    pub fn content_type(&self) -> &'static str {
        match self {
            Encoding::Xhr | Encoding::Jsonp(_) => "application/javascript; charset=UTF-8",
            Encoding::EventSource => "text/event-stream",
            Encoding::HtmlFile(_) => "text/html; charset=UTF-8",
        }
    }
}

/// Whether `callback` may name a JavaScript function in `htmlfile` and `jsonp`
/// responses: letters, digits, `-`, `_` and `.` only, so nothing can be injected.
pub fn is_valid_callback(callback: &str) -> bool {
    !callback.is_empty()
        && callback
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A client message that is neither a JSON array of strings nor one string.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("Broken JSON encoding.")]
pub struct BrokenJson;

/// Parses what a client sends: a JSON array of strings, or one JSON string.
///
/// # Errors
///
/// [`BrokenJson`] for anything else.
pub fn parse_client(text: &str) -> Result<Vec<String>, BrokenJson> {
    let text = text.trim();
    if text.starts_with('[') {
        serde_json::from_str::<Vec<String>>(text).map_err(|_| BrokenJson)
    } else {
        serde_json::from_str::<String>(text)
            .map(|message| vec![message])
            .map_err(|_| BrokenJson)
    }
}

/// Appends `text` as a JSON string. Besides what JSON requires, it escapes the
/// characters that some browsers and proxies alter in transit: control
/// characters, zero-width and bidirectional marks, line and paragraph
/// separators, and noncharacters. The SockJS protocol leaves the exact set to
/// the server.
pub fn quote(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if must_escape(c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // fmt::Write for String never returns an error.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn must_escape(c: char) -> bool {
    matches!(
        c as u32,
        0x00..=0x1f
            | 0x7f..=0x9f
            | 0xad
            | 0x0600..=0x0604
            | 0x070f
            | 0x17b4..=0x17b5
            | 0x200c..=0x200f
            | 0x2028..=0x202f
            | 0x2060..=0x206f
            | 0xfeff
            | 0xfff0..=0xffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_frame_holds_stomp_frames_as_strings() {
        let frames = ["CONNECTED\nversion:1.2\n\n\0".to_string(), "\n".to_string()];
        assert_eq!(
            strings(&frames),
            r#"a["CONNECTED\nversion:1.2\n\n\u0000","\n"]"#
        );
    }

    #[test]
    fn close_frame_has_code_and_reason() {
        assert_eq!(close(3000, "Go away!"), r#"c[3000,"Go away!"]"#);
        assert_eq!(
            close(2010, "Another connection still open"),
            r#"c[2010,"Another connection still open"]"#
        );
    }

    #[test]
    fn risky_characters_are_escaped() {
        let mut out = String::new();
        quote("a\u{2028}b\u{200d}c\u{ffff}é\"\\", &mut out);
        assert_eq!(out, r#""a\u2028b\u200dc\uffffé\"\\""#);
    }

    #[test]
    fn client_messages_parse_as_array_or_string() {
        assert_eq!(
            parse_client(r#"["a","b"]"#),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_client(r#""a""#), Ok(vec!["a".into()]));
        assert_eq!(parse_client("[]"), Ok(vec![]));
        assert_eq!(parse_client(r#"["a"#), Err(BrokenJson));
        assert_eq!(parse_client("[1]"), Err(BrokenJson));
        assert_eq!(parse_client("{}"), Err(BrokenJson));
    }
}
