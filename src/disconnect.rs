//! The closed set of reasons a session ends.
//!
//! Each reason maps to what the client sees (an ERROR frame's `message` header,
//! a WebSocket close code, a SockJS close frame) and to the `reason` label of the
//! disconnect metric. Reasons marked as retryable tell clients that reconnecting
//! later is expected to work; the others point at a client bug or a policy.

use crate::{
    auth::{Action, AuthError},
    stomp::DecodeError,
};

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Disconnect {
    /// The client sent DISCONNECT.
    #[error("client disconnected")]
    ClientDisconnect,
    /// The client closed the transport or it failed.
    #[error("connection closed")]
    TransportClosed,
    /// A frame could not be decoded.
    #[error("{0}")]
    Malformed(DecodeError),
    /// A frame was well formed but broke the protocol (missing header, wrong
    /// order, unsupported command). The text says which.
    #[error("{0}")]
    BadFrame(String),
    /// CONNECT offered no version the server speaks.
    #[error("supported protocol versions are 1.0 1.1 1.2")]
    UnsupportedVersion,
    /// No CONNECT within `limits.connect_timeout`.
    #[error("no CONNECT frame received in time")]
    ConnectTimeout,
    /// The client sent nothing for twice its negotiated heart-beat interval.
    #[error("no heart-beat received in time")]
    HeartbeatTimeout,
    /// The session fell `limits.outbox_frames` messages behind.
    #[error("slow consumer: too many undelivered messages")]
    SlowConsumer,
    /// One write to the client took longer than `limits.write_timeout`.
    #[error("write to client timed out")]
    WriteTimeout,
    /// The session asked for more than `limits.max_subscriptions_per_session`.
    #[error("too many subscriptions: the limit is {0}")]
    TooManySubscriptions(usize),
    /// The server is shutting down.
    #[error("server shutting down")]
    Shutdown,
    /// SockJS: a message that is not a JSON string or array of strings.
    #[error("broken JSON encoding")]
    BrokenJson,
    /// CONNECT without a valid token under `auth.anonymous: deny`, or a
    /// rejected token refresh.
    #[error("authentication failed: {0}")]
    AuthFailed(AuthError),
    /// The session's token expired.
    #[error("token expired")]
    TokenExpired,
    /// An access rule denied a SUBSCRIBE or SEND.
    #[error("access denied: {action} to {destination}", action = .0.as_str(), destination = .1)]
    AccessDenied(Action, String),
    /// A SEND could not be published to RabbitMQ; the text says why.
    #[error("SEND failed: {0}")]
    SendFailed(String),
}

// === impl Disconnect ===

impl Disconnect {
    /// Every metric label, so the disconnect counter can be pre-registered.
    pub const LABELS: [&'static str; 16] = [
        "client_disconnect",
        "transport_closed",
        "malformed_frame",
        "bad_frame",
        "unsupported_version",
        "connect_timeout",
        "heartbeat_timeout",
        "slow_consumer",
        "write_timeout",
        "too_many_subscriptions",
        "shutdown",
        "broken_json",
        "auth_failed",
        "token_expired",
        "access_denied",
        "send_failed",
    ];

    /// The `reason` label of `stompbridge_disconnects_total`.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// Position of the label in [`Disconnect::LABELS`].
    pub fn index(&self) -> usize {
        match self {
            Disconnect::ClientDisconnect => 0,
            Disconnect::TransportClosed => 1,
            Disconnect::Malformed(_) => 2,
            Disconnect::BadFrame(_) => 3,
            Disconnect::UnsupportedVersion => 4,
            Disconnect::ConnectTimeout => 5,
            Disconnect::HeartbeatTimeout => 6,
            Disconnect::SlowConsumer => 7,
            Disconnect::WriteTimeout => 8,
            Disconnect::TooManySubscriptions(_) => 9,
            Disconnect::Shutdown => 10,
            Disconnect::BrokenJson => 11,
            Disconnect::AuthFailed(_) => 12,
            Disconnect::TokenExpired => 13,
            Disconnect::AccessDenied(..) => 14,
            Disconnect::SendFailed(_) => 15,
        }
    }

    /// Whether the client is told with an ERROR frame. A client that left, a
    /// broken transport, and a broken SockJS encoding get none.
    pub fn sends_error_frame(&self) -> bool {
        !matches!(
            self,
            Disconnect::ClientDisconnect | Disconnect::TransportClosed | Disconnect::BrokenJson
        )
    }

    /// Whether reconnecting later is expected to work. False means the client
    /// sent something it must change first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Disconnect::TransportClosed
                | Disconnect::HeartbeatTimeout
                | Disconnect::SlowConsumer
                | Disconnect::WriteTimeout
                | Disconnect::Shutdown
                | Disconnect::TokenExpired
                | Disconnect::SendFailed(_)
        )
    }

    /// WebSocket close code (RFC 6455, section 7.4.1): 1000 for a normal end,
    /// 1001 when the server goes away, 1002 for protocol errors, 1008 for
    /// policy limits, 1011 when the server cannot keep up.
    pub fn websocket_close_code(&self) -> u16 {
        match self {
            Disconnect::ClientDisconnect | Disconnect::TransportClosed => 1000,
            Disconnect::Shutdown => 1001,
            Disconnect::Malformed(_)
            | Disconnect::BadFrame(_)
            | Disconnect::UnsupportedVersion
            | Disconnect::BrokenJson => 1002,
            Disconnect::ConnectTimeout
            | Disconnect::HeartbeatTimeout
            | Disconnect::TooManySubscriptions(_)
            | Disconnect::AuthFailed(_)
            | Disconnect::TokenExpired
            | Disconnect::AccessDenied(..) => 1008,
            Disconnect::SlowConsumer | Disconnect::WriteTimeout | Disconnect::SendFailed(_) => 1011,
        }
    }

    /// SockJS close frame code and reason. 3000 "Go away!" is the protocol's
    /// close for a server-ended session; a normal end uses 1000.
    pub fn sockjs_close(&self) -> (u16, &'static str) {
        match self {
            Disconnect::ClientDisconnect | Disconnect::TransportClosed => (1000, "Normal closure"),
            _ => (3000, "Go away!"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_indexed() {
        let samples = [
            Disconnect::ClientDisconnect,
            Disconnect::TransportClosed,
            Disconnect::Malformed(DecodeError::MissingNul),
            Disconnect::BadFrame("x".into()),
            Disconnect::UnsupportedVersion,
            Disconnect::ConnectTimeout,
            Disconnect::HeartbeatTimeout,
            Disconnect::SlowConsumer,
            Disconnect::WriteTimeout,
            Disconnect::TooManySubscriptions(1),
            Disconnect::Shutdown,
            Disconnect::BrokenJson,
            Disconnect::AuthFailed(AuthError::Expired),
            Disconnect::TokenExpired,
            Disconnect::AccessDenied(Action::Send, "/x".into()),
            Disconnect::SendFailed("x".into()),
        ];
        for (i, reason) in samples.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let unique: std::collections::HashSet<_> = Disconnect::LABELS.iter().collect();
        assert_eq!(unique.len(), Disconnect::LABELS.len());
    }
}
