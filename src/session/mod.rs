//! The STOMP session state machine, independent of the transport.
//!
//! A transport's connection task feeds received bytes into [`Session::receive`],
//! drains the outbox through [`Session::render`], and calls
//! [`Session::on_timer`] at [`Session::deadline`]. The session returns encoded
//! frames to write, or the [`Disconnect`] reason that ends it. It performs no
//! I/O itself.

pub mod connect;
pub mod heartbeat;
pub mod outbox;
pub mod send;
pub mod subscribe;

use std::{collections::HashMap, sync::Arc, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;

use crate::{
    auth::Principal,
    bridge::Bridge,
    config::{Config, HeartBeatConfig},
    disconnect::Disconnect,
    metrics::Limit,
    stomp::{Command, Decoder, Frame, Limits, Version, codec},
};
use heartbeat::HeartBeat;
use outbox::{Delivery, Outbox};
pub use send::SendRequest;

/// Process-unique session number.
pub type SessionId = u64;

/// Settings a session takes from the configuration when it starts.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    pub limits: Limits,
    pub max_subscriptions: usize,
    pub connect_timeout: Duration,
    pub outbox_frames: usize,
    pub write_timeout: Duration,
    pub heart_beat: HeartBeatConfig,
}

/// One STOMP session.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    bridge: Arc<Bridge>,
    settings: Arc<SessionSettings>,
    outbox: Outbox,
    decoder: Decoder,
    input: BytesMut,
    state: State,
    heart_beat: HeartBeat,
    /// Client subscription id → internal key.
    ids: HashMap<String, u64>,
    /// Internal key → subscription.
    subscriptions: HashMap<u64, Subscription>,
    next_key: u64,
    next_message_id: u64,
    /// `receipt` of the frame being handled, echoed as `receipt-id` in an ERROR.
    failed_receipt: Option<String>,
    /// The authenticated user; `None` for an anonymous session.
    principal: Option<Principal>,
    /// When the session's token expires.
    expires_at: Option<Instant>,
    /// SENDs waiting for the connection task to publish them.
    sends: Vec<SendRequest>,
    /// SENDs published and not yet confirmed.
    sends_in_flight: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingConnect { deadline: Instant },
    Connected { version: Version },
}

#[derive(Debug)]
struct Subscription {
    /// The router's key: the destination, or the per-user key of a
    /// `/user/...` destination.
    route: String,
    /// `MESSAGE\nsubscription:<id>\nmessage-id:`, escaped for the session's version.
    head: Bytes,
    /// Whether MESSAGE frames carry an `ack` header (client and client-individual
    /// modes; STOMP 1.2 requires it there).
    ack: bool,
}

/// The `ack` header of SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckMode {
    Auto,
    Client,
    ClientIndividual,
}

// === impl SessionSettings ===

impl SessionSettings {
    pub fn from_config(config: &Config) -> Self {
        let limits = &config.limits;
        Self {
            limits: Limits {
                max_frame_bytes: limits.max_frame_bytes,
                max_headers: limits.max_headers,
                max_header_line_bytes: limits.max_header_line_bytes,
            },
            max_subscriptions: limits.max_subscriptions_per_session,
            connect_timeout: limits.connect_timeout,
            outbox_frames: limits.outbox_frames,
            write_timeout: limits.write_timeout,
            heart_beat: config.stomp.heart_beat,
        }
    }
}

// === impl Session ===

impl Session {
    /// Starts a session that waits for CONNECT. `outbox` is the sending half of
    /// the queue its connection task drains.
    pub fn new(bridge: Arc<Bridge>, outbox: Outbox, now: Instant) -> Self {
        let settings = bridge.session_settings();
        Self {
            id: bridge.next_session_id(),
            decoder: Decoder::new(settings.limits),
            input: BytesMut::new(),
            state: State::AwaitingConnect {
                deadline: now + settings.connect_timeout,
            },
            heart_beat: HeartBeat::disabled(now),
            ids: HashMap::new(),
            subscriptions: HashMap::new(),
            next_key: 0,
            next_message_id: 0,
            failed_receipt: None,
            principal: None,
            expires_at: None,
            sends: Vec::new(),
            sends_in_flight: 0,
            outbox,
            settings,
            bridge,
        }
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Returns the negotiated version, once CONNECTED was sent.
    pub fn version(&self) -> Option<Version> {
        match self.state {
            State::Connected { version } => Some(version),
            State::AwaitingConnect { .. } => None,
        }
    }

    /// Handles bytes from the client: decodes every complete frame and appends
    /// the encoded responses to `out`.
    ///
    /// # Errors
    ///
    /// The reason the session ends. Frames already in `out` (a RECEIPT for
    /// DISCONNECT) are still to be written; for an error, see
    /// [`Session::error_frame`].
    pub fn receive(
        &mut self,
        data: &[u8],
        now: Instant,
        out: &mut Vec<Bytes>,
    ) -> Result<(), Disconnect> {
        self.heart_beat.read(now);
        // Keep the buffer's allocation only while a frame is partly received, so
        // an idle session has no input buffer.
        self.input.extend_from_slice(data);
        while let Some(frame) = self.decoder.decode(&mut self.input).map_err(|error| {
            if let Some(limit) = Limit::of_decode_error(&error) {
                self.bridge.metrics.limit_exceeded(limit);
            }
            Disconnect::Malformed(error)
        })? {
            self.bridge.metrics.frame_received(frame.command);
            self.handle(frame, now, out)?;
        }
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
        Ok(())
    }

    fn handle(
        &mut self,
        frame: Frame,
        now: Instant,
        out: &mut Vec<Bytes>,
    ) -> Result<(), Disconnect> {
        self.failed_receipt = frame.get("receipt").map(str::to_owned);
        let version = match self.state {
            State::AwaitingConnect { .. } => {
                return match frame.command {
                    Command::Connect | Command::Stomp => self.connect(&frame, now, out),
                    other => Err(bad_frame(format!("expected CONNECT, received {other}"))),
                };
            }
            State::Connected { version } => version,
        };
        match frame.command {
            Command::Subscribe => self.subscribe(&frame, version)?,
            Command::Unsubscribe => self.unsubscribe(&frame, version)?,
            // Broadcast delivery needs no acknowledgement; accepted for clients
            // that subscribe with ack modes.
            Command::Ack | Command::Nack => {}
            Command::Disconnect => {
                self.receipt(&frame, version, out);
                return Err(Disconnect::ClientDisconnect);
            }
            Command::Send => {
                // The RECEIPT of a published SEND waits for the broker's confirm.
                if self.send(&frame, version, out)? {
                    return Ok(());
                }
            }
            Command::Begin | Command::Commit | Command::Abort => {
                return Err(bad_frame("transactions are not supported".into()));
            }
            Command::Connect | Command::Stomp => {
                return Err(bad_frame("already connected".into()));
            }
            Command::Connected | Command::Message | Command::Receipt | Command::Error => {
                return Err(bad_frame(format!("{} is a server frame", frame.command)));
            }
        }
        self.receipt(&frame, version, out);
        Ok(())
    }

    pub(crate) fn receipt(&mut self, frame: &Frame, version: Version, out: &mut Vec<Bytes>) {
        if let Some(receipt) = frame.get("receipt") {
            let receipt = Frame::new(Command::Receipt).header("receipt-id", receipt);
            self.emit(&receipt, version, out);
        }
    }

    pub(crate) fn emit(&mut self, frame: &Frame, version: Version, out: &mut Vec<Bytes>) {
        self.bridge.metrics.frames_sent(frame.command, 1);
        out.push(codec::encode_to_bytes(frame, version));
    }

    /// Encodes a queued delivery as a MESSAGE frame, unless its subscription has
    /// ended since it was queued. Returns whether a frame was appended.
    pub fn render(&mut self, delivery: &Delivery, out: &mut Vec<Bytes>) -> bool {
        let State::Connected { version } = self.state else {
            return false;
        };
        let Some(subscription) = self.subscriptions.get(&delivery.subscription) else {
            return false;
        };
        let message_id = self.next_message_id;
        self.next_message_id += 1;
        let mut id = itoa::Buffer::new();
        let id = id.format(message_id).as_bytes();
        let tail = delivery.message.tail(version);

        let mut frame =
            BytesMut::with_capacity(subscription.head.len() + 2 * id.len() + 8 + tail.len());
        frame.put_slice(&subscription.head);
        frame.put_slice(id);
        frame.put_u8(b'\n');
        if subscription.ack {
            frame.put_slice(b"ack:");
            frame.put_slice(id);
            frame.put_u8(b'\n');
        }
        frame.put_slice(tail);
        out.push(frame.freeze());
        true
    }

    /// The next time [`Session::on_timer`] must run.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingConnect { deadline } => Some(deadline),
            State::Connected { .. } => [
                self.heart_beat.send_due(),
                self.heart_beat.receive_due(),
                self.expires_at,
            ]
            .into_iter()
            .flatten()
            .min(),
        }
    }

    /// Sends a heart-beat when one is due, and ends a session whose client was
    /// silent too long or never sent CONNECT.
    ///
    /// # Errors
    ///
    /// [`Disconnect::ConnectTimeout`] or [`Disconnect::HeartbeatTimeout`].
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Bytes>) -> Result<(), Disconnect> {
        if let State::AwaitingConnect { deadline } = self.state {
            if now >= deadline {
                self.bridge.metrics.limit_exceeded(Limit::ConnectTimeout);
                return Err(Disconnect::ConnectTimeout);
            }
            return Ok(());
        }
        if self.heart_beat.receive_due().is_some_and(|due| now >= due) {
            return Err(Disconnect::HeartbeatTimeout);
        }
        if self.expires_at.is_some_and(|at| now >= at) {
            return Err(Disconnect::TokenExpired);
        }
        if self.heart_beat.send_due().is_some_and(|due| now >= due) {
            out.push(Bytes::from_static(b"\n"));
            self.heart_beat.wrote(now);
        }
        Ok(())
    }

    /// Records that frames were written to the client, which postpones the next
    /// heart-beat.
    pub fn wrote(&mut self, now: Instant) {
        self.heart_beat.wrote(now);
    }

    /// Builds the ERROR frame that gives the client the reason the session ends,
    /// if the reason calls for one.
    pub fn error_frame(&mut self, reason: &Disconnect) -> Option<Bytes> {
        if !reason.sends_error_frame() {
            return None;
        }
        let message = reason.to_string();
        let mut frame = Frame::new(Command::Error).header("message", message.clone());
        if *reason == Disconnect::UnsupportedVersion {
            frame = frame.header("version", "1.0,1.1,1.2");
        }
        if let Some(receipt) = self.failed_receipt.take() {
            frame = frame.header("receipt-id", receipt);
        }
        let frame = frame.header("content-type", "text/plain").body(message);
        let version = self.version().unwrap_or(Version::V1_2);
        self.bridge.metrics.frames_sent(Command::Error, 1);
        Some(codec::encode_to_bytes(&frame, version))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let keys: Vec<u64> = self.subscriptions.keys().copied().collect();
        for key in keys {
            self.remove_subscription(key);
        }
        if self.version().is_some() {
            self.bridge.metrics.sessions.dec();
        }
    }
}

/// Picks the highest version in `accept-version`; a CONNECT without the header
/// speaks STOMP 1.0.
fn negotiate_version(header: Option<&str>) -> Result<Version, Disconnect> {
    let Some(header) = header else {
        return Ok(Version::V1_0);
    };
    header
        .split(',')
        .filter_map(Version::parse)
        .max()
        .ok_or(Disconnect::UnsupportedVersion)
}

fn required<'f>(frame: &'f Frame, name: &str) -> Result<&'f str, Disconnect> {
    frame
        .get(name)
        .ok_or_else(|| bad_frame(format!("{} requires a {name} header", frame.command)))
}

fn bad_frame(message: String) -> Disconnect {
    Disconnect::BadFrame(message)
}

#[cfg(test)]
mod tests;
