//! Incremental STOMP decoder and encoder.
//!
//! The session feeds every transport message into one [`Decoder`], which returns
//! frames as they complete, whether a frame arrived split across messages or
//! several arrived in one. Every frame is bounded by [`Limits`]; input past a
//! limit is an error before it is buffered further.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use memchr::memchr;

use super::{Command, Frame, Version};

/// Largest frame (command, headers and body) accepted from a client, in bytes.
/// Config: `limits.max_frame_bytes`.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;

/// Most header lines accepted in one frame. Config: `limits.max_headers`.
pub const DEFAULT_MAX_HEADERS: usize = 32;

/// Longest header line accepted, in bytes, before unescaping. Sized for a JWT in
/// `Authorization`. Config: `limits.max_header_line_bytes`.
pub const DEFAULT_MAX_HEADER_LINE_BYTES: usize = 8 * 1024;

/// Bounds applied while decoding client frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_headers: usize,
    pub max_header_line_bytes: usize,
}

/// Why a client frame could not be decoded. Every variant is a fatal protocol
/// error: the session responds with an ERROR frame and closes.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("frame too large: more than {max} bytes")]
    FrameTooLarge { max: usize },
    #[error("too many headers: more than {max}")]
    TooManyHeaders { max: usize },
    #[error("header line too long: more than {max} bytes")]
    HeaderLineTooLong { max: usize },
    #[error("malformed header line {0:?}: no colon")]
    MalformedHeader(String),
    #[error("header is not valid UTF-8")]
    HeaderNotUtf8,
    #[error("invalid escape sequence \\{0} in header")]
    InvalidEscape(char),
    #[error("invalid content-length {0:?}")]
    InvalidContentLength(String),
    #[error("frame body is not followed by a NUL octet")]
    MissingNul,
}

/// Turns a byte stream into frames. Holds the partly received frame between calls.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Option<Version>,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Waiting for the blank line that ends the headers. `scanned` is where the
    /// search resumes, so a frame split into many pieces is scanned once.
    Head { scanned: usize },
    /// Headers parsed; waiting for `body_len` bytes (when `content-length` was
    /// given) or for the NUL octet, searched from `scanned`.
    Body {
        frame: Frame,
        head_len: usize,
        body_len: Option<usize>,
        scanned: usize,
    },
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_header_line_bytes: DEFAULT_MAX_HEADER_LINE_BYTES,
        }
    }
}

// === impl Decoder ===

impl Decoder {
    /// A decoder for a session that has not negotiated a version yet, so header
    /// values are taken literally until [`Decoder::set_version`].
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            version: None,
            state: State::Head { scanned: 0 },
        }
    }

    /// Applies the version negotiated by CONNECT to the header escaping of all
    /// later frames.
    pub fn set_version(&mut self, version: Version) {
        self.version = Some(version);
    }

    /// Decodes the next complete frame from the front of `buf`, consuming it.
    /// Returns `Ok(None)` when more input is needed. Heart-beat EOLs between
    /// frames are consumed silently.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] when the input breaks the protocol or a limit. The
    /// decoder state is then unspecified and the session must close.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if let State::Head { .. } = self.state {
            skip_heart_beats(buf);
            if !self.decode_head(buf)? {
                return Ok(None);
            }
        }
        self.decode_body(buf)
    }

    /// Parses the command and headers once they are complete. Returns whether
    /// the state moved on to the body.
    fn decode_head(&mut self, buf: &BytesMut) -> Result<bool, DecodeError> {
        let State::Head { scanned } = &mut self.state else {
            return Ok(true);
        };
        let Some(head_len) = find_head_end(buf, scanned, &self.limits)? else {
            return Ok(false);
        };
        let (frame, body_len) = parse_head(&buf[..head_len], self.version, &self.limits)?;
        // The frame is the head, the body and the closing NUL. A client may
        // declare any content-length, so the sum saturates rather than wraps.
        if head_len.saturating_add(body_len.unwrap_or(0)) >= self.limits.max_frame_bytes {
            return Err(DecodeError::FrameTooLarge {
                max: self.limits.max_frame_bytes,
            });
        }
        self.state = State::Body {
            frame,
            head_len,
            body_len,
            scanned: head_len,
        };
        Ok(true)
    }

    fn decode_body(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let State::Body {
            mut frame,
            head_len,
            body_len,
            scanned,
        } = std::mem::replace(&mut self.state, State::Head { scanned: 0 })
        else {
            return Ok(None);
        };
        let max = self.limits.max_frame_bytes;
        let nul_at = match body_len {
            Some(len) if buf.len() <= head_len + len => None,
            Some(len) if buf[head_len + len] != 0 => return Err(DecodeError::MissingNul),
            Some(len) => Some(head_len + len),
            None => memchr(0, &buf[scanned..]).map(|offset| scanned + offset),
        };
        let Some(nul_at) = nul_at else {
            // Everything buffered belongs to this frame until its NUL arrives.
            if buf.len() >= max {
                return Err(DecodeError::FrameTooLarge { max });
            }
            self.state = State::Body {
                frame,
                head_len,
                body_len,
                scanned: buf.len(),
            };
            return Ok(None);
        };
        if nul_at >= max {
            return Err(DecodeError::FrameTooLarge { max });
        }

        let mut raw = buf.split_to(nul_at + 1);
        raw.advance(head_len);
        raw.truncate(nul_at - head_len);
        frame.body = raw.freeze();
        Ok(Some(frame))
    }
}

/// Drops EOLs (heart-beats) in front of the next frame.
fn skip_heart_beats(buf: &mut BytesMut) {
    let mut skip = 0;
    while skip < buf.len() {
        match buf[skip] {
            b'\n' => skip += 1,
            b'\r' if buf.get(skip + 1) == Some(&b'\n') => skip += 2,
            _ => break,
        }
    }
    buf.advance(skip);
}

/// Finds the end of the blank line that closes the headers, resuming at
/// `scanned`. Enforces the line-length and frame-size limits while searching.
fn find_head_end(
    buf: &[u8],
    scanned: &mut usize,
    limits: &Limits,
) -> Result<Option<usize>, DecodeError> {
    let mut line_start = *scanned;
    while let Some(offset) = memchr(b'\n', &buf[line_start..]) {
        let line_end = line_start + offset;
        let line = &buf[line_start..line_end];
        if line.len() > limits.max_header_line_bytes {
            return Err(DecodeError::HeaderLineTooLong {
                max: limits.max_header_line_bytes,
            });
        }
        if line_start > 0 && (line.is_empty() || line == b"\r") {
            return Ok(Some(line_end + 1));
        }
        line_start = line_end + 1;
    }
    *scanned = line_start;
    if buf.len() - line_start > limits.max_header_line_bytes {
        return Err(DecodeError::HeaderLineTooLong {
            max: limits.max_header_line_bytes,
        });
    }
    if buf.len() > limits.max_frame_bytes {
        return Err(DecodeError::FrameTooLarge {
            max: limits.max_frame_bytes,
        });
    }
    Ok(None)
}

/// Parses a complete head (command line, header lines and the blank line).
/// Returns the frame without its body and the declared `content-length`.
fn parse_head(
    head: &[u8],
    version: Option<Version>,
    limits: &Limits,
) -> Result<(Frame, Option<usize>), DecodeError> {
    let mut lines = head.split(|&b| b == b'\n').map(strip_cr);
    let command_line = lines.next().unwrap_or_default();
    let command = Command::parse(command_line).ok_or_else(|| {
        DecodeError::UnknownCommand(String::from_utf8_lossy(command_line).into_owned())
    })?;
    // Until CONNECTED is sent there is no version, and CONNECT itself is never
    // escaped, so header values are taken literally.
    let unescape = version.filter(|_| command.escapes_headers());

    let mut frame = Frame::new(command);
    for line in lines.take_while(|line| !line.is_empty()) {
        if frame.headers.len() == limits.max_headers {
            return Err(DecodeError::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        let colon = memchr(b':', line).ok_or_else(|| {
            DecodeError::MalformedHeader(String::from_utf8_lossy(line).into_owned())
        })?;
        let name = decode_header_text(&line[..colon], unescape)?;
        let value = decode_header_text(&line[colon + 1..], unescape)?;
        frame.headers.push((name, value));
    }

    let body_len = match frame.get("content-length") {
        Some(value) => Some(
            value
                .trim()
                .parse::<usize>()
                .map_err(|_| DecodeError::InvalidContentLength(value.to_owned()))?,
        ),
        None => None,
    };
    Ok((frame, body_len))
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Decodes a header name or value as UTF-8 and undoes the escaping of
/// `version`: STOMP 1.1 defines `\n`, `\c` and `\\`, STOMP 1.2 adds `\r`, and
/// "undefined escape sequences such as \t MUST be treated as a fatal protocol
/// error". STOMP 1.0 has no escaping.
fn decode_header_text(raw: &[u8], version: Option<Version>) -> Result<String, DecodeError> {
    let text = std::str::from_utf8(raw).map_err(|_| DecodeError::HeaderNotUtf8)?;
    let version = match version {
        Some(v) if v >= Version::V1_1 && text.contains('\\') => v,
        _ => return Ok(text.to_owned()),
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('\\') => out.push('\\'),
            Some('r') if version == Version::V1_2 => out.push('\r'),
            Some(other) => return Err(DecodeError::InvalidEscape(other)),
            None => return Err(DecodeError::InvalidEscape(' ')),
        }
    }
    Ok(out)
}

/// Escapes a header name or value for `version`: STOMP 1.1 escapes `\n`, `:`
/// and `\`, STOMP 1.2 adds `\r`, STOMP 1.0 escapes nothing.
pub fn escape_header_text(text: &str, version: Version, out: &mut BytesMut) {
    if version == Version::V1_0 || !needs_escape(text) {
        out.put_slice(text.as_bytes());
        return;
    }
    for c in text.chars() {
        match c {
            '\n' => out.put_slice(b"\\n"),
            ':' => out.put_slice(b"\\c"),
            '\\' => out.put_slice(b"\\\\"),
            '\r' if version == Version::V1_2 => out.put_slice(b"\\r"),
            c => {
                let mut utf8 = [0; 4];
                out.put_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

/// Returns whether [`escape_header_text`] would change `text` for STOMP 1.1 or 1.2.
pub fn needs_escape(text: &str) -> bool {
    text.bytes()
        .any(|b| matches!(b, b'\n' | b'\r' | b':' | b'\\'))
}

/// Encodes `frame` for a session speaking `version`. Headers are written as
/// given; callers that send a body set `content-length` (see [`Frame::body`]).
pub fn encode(frame: &Frame, version: Version, out: &mut BytesMut) {
    let escape = if frame.command.escapes_headers() {
        version
    } else {
        Version::V1_0
    };
    out.put_slice(frame.command.as_str().as_bytes());
    out.put_u8(b'\n');
    for (name, value) in &frame.headers {
        escape_header_text(name, escape, out);
        out.put_u8(b':');
        escape_header_text(value, escape, out);
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.put_slice(&frame.body);
    out.put_u8(0);
}

/// Encodes `frame` into a new buffer.
pub fn encode_to_bytes(frame: &Frame, version: Version) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + frame.body.len());
    encode(frame, version, &mut out);
    out.freeze()
}

#[cfg(test)]
mod tests;
