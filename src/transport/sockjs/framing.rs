//! SockJS frames: `o` (open), `h` (heartbeat), `a[...]` (messages) and
//! `c[code,"reason"]` (close), and the JSON encoding of messages both ways.

use std::fmt::Write;

use bytes::Bytes;

/// The open frame, sent once when a session starts.
pub const OPEN: &str = "o";
/// The heartbeat frame, sent on idle connections so proxies keep them open.
pub const HEARTBEAT: &str = "h";

/// Encodes messages as one `a[...]` frame.
pub fn messages(messages: &[Bytes]) -> String {
    let size = messages.iter().map(|m| m.len() + 8).sum::<usize>();
    let mut out = String::with_capacity(size + 3);
    out.push_str("a[");
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote(&String::from_utf8_lossy(message), &mut out);
    }
    out.push(']');
    out
}

/// Encodes a close frame, e.g. `c[3000,"Go away!"]`.
pub fn close(code: u16, reason: &str) -> String {
    let mut out = format!("c[{code},");
    quote(reason, &mut out);
    out.push(']');
    out
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
        let frames = [
            Bytes::from_static(b"CONNECTED\nversion:1.2\n\n\0"),
            Bytes::from_static(b"\n"),
        ];
        assert_eq!(
            messages(&frames),
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
