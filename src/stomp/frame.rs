//! STOMP frame types: commands, protocol versions and the frame itself.
//!
//! A frame is transport-neutral; [`super::codec`] turns bytes into frames and back.

use std::fmt;

use bytes::Bytes;

/// A STOMP command, client or server side (STOMP 1.2, "Frames and Headers").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Stomp,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    Connected,
    Message,
    Receipt,
    Error,
}

/// A negotiated STOMP protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V1_0,
    V1_1,
    V1_2,
}

/// One STOMP frame. Repeated headers are kept in order and lookups return the
/// first, as STOMP 1.2 specifies: "only the first header entry SHOULD be used as
/// the value".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

// === impl Command ===

impl Command {
    /// Every command, in declaration order; indexes match [`Command::index`].
    pub const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    /// Parses a command line. Commands are case-sensitive.
    pub fn parse(line: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().as_bytes() == line)
    }

    /// Returns the command as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Position in [`Command::ALL`], used to index per-command metrics.
    pub fn index(self) -> usize {
        self as usize
    }

    /// CONNECT, STOMP and CONNECTED headers are never escaped (STOMP 1.2, "Value
    /// Encoding": they "do not escape the carriage return, line feed or colon octets
    /// in order to remain backward compatible with STOMP 1.0").
    pub fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Version ===

impl Version {
    /// Parses one entry of `accept-version`.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }

    /// The version as it appears in the `version` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// Position among the three versions, used to pick a pre-encoded frame variant.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Frame ===

impl Frame {
    /// Creates a frame with no headers and an empty body.
    pub fn new(command: Command) -> Self {
        Self {
            command,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Appends a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body and its `content-length` header.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self.headers
            .push(("content-length".into(), self.body.len().to_string()));
        self
    }

    /// Returns the value of the first header named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_parse_round_trips() {
        for command in Command::ALL {
            assert_eq!(Command::parse(command.as_str().as_bytes()), Some(command));
            assert_eq!(Command::ALL[command.index()], command);
        }
        assert_eq!(Command::parse(b"connect"), None);
        assert_eq!(Command::parse(b""), None);
    }

    #[test]
    fn first_repeated_header_wins() {
        let frame = Frame::new(Command::Send)
            .header("foo", "first")
            .header("foo", "second");
        assert_eq!(frame.get("foo"), Some("first"));
    }
}
