//! The STOMP session state machine, independent of the transport.
//!
//! A transport's connection task feeds received bytes into [`Session::receive`],
//! drains the outbox through [`Session::render`], and calls
//! [`Session::on_timer`] at [`Session::deadline`]. The session returns encoded
//! frames to write, or the [`Disconnect`] reason that ends it. It performs no
//! I/O itself.

pub mod heartbeat;
pub mod outbox;

use std::{collections::HashMap, sync::Arc, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;
use tracing::debug;

use crate::{
    bridge::Bridge,
    config::{Config, HeartBeatConfig},
    disconnect::Disconnect,
    router::Subscriber,
    stomp::{Command, Decoder, Frame, Limits, Version, codec},
};
use heartbeat::HeartBeat;
use outbox::{Delivery, Outbox};

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
    pub sockjs_heartbeat: Duration,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingConnect { deadline: Instant },
    Connected { version: Version },
}

#[derive(Debug)]
struct Subscription {
    destination: String,
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
            sockjs_heartbeat: config.server.sockjs.heartbeat_interval,
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
        while let Some(frame) = self
            .decoder
            .decode(&mut self.input)
            .map_err(Disconnect::Malformed)?
        {
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
                let destination = frame.get("destination").unwrap_or_default();
                return Err(bad_frame(format!("SEND to {destination:?} is not allowed")));
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

    fn connect(
        &mut self,
        frame: &Frame,
        now: Instant,
        out: &mut Vec<Bytes>,
    ) -> Result<(), Disconnect> {
        let version = negotiate_version(frame.get("accept-version"))?;
        let offer = self.settings.heart_beat;
        self.heart_beat = if version == Version::V1_0 {
            HeartBeat::disabled(now)
        } else {
            HeartBeat::negotiate(frame.get("heart-beat"), &offer, now)
                .map_err(|_| bad_frame("invalid heart-beat header".into()))?
        };
        self.decoder.set_version(version);
        self.state = State::Connected { version };
        self.bridge.metrics.sessions.inc();

        let mut connected = Frame::new(Command::Connected)
            .header("version", version.as_str())
            .header("server", concat!("stompbridge/", env!("CARGO_PKG_VERSION")))
            .header("session", self.id.to_string());
        if version > Version::V1_0 {
            connected = connected.header("heart-beat", heartbeat::offer_header(&offer));
        }
        debug!(
            session.id = self.id,
            version = version.as_str(),
            "session connected"
        );
        self.emit(&connected, version, out);
        Ok(())
    }

    fn subscribe(&mut self, frame: &Frame, version: Version) -> Result<(), Disconnect> {
        let destination = required(frame, "destination")?;
        let id = match frame.get("id") {
            Some(id) => id,
            // STOMP 1.0 makes the id optional; the destination then names it.
            None if version == Version::V1_0 => destination,
            None => return Err(bad_frame("SUBSCRIBE requires an id header".into())),
        };
        if !destination.starts_with('/') {
            return Err(bad_frame(format!(
                "invalid destination {destination:?}: must start with '/'"
            )));
        }
        let ack = match frame.get("ack").unwrap_or("auto") {
            "auto" => AckMode::Auto,
            "client" => AckMode::Client,
            "client-individual" => AckMode::ClientIndividual,
            other => return Err(bad_frame(format!("invalid ack mode {other:?}"))),
        };
        if self.ids.contains_key(id) {
            return Err(bad_frame(format!(
                "subscription id {id:?} is already in use"
            )));
        }
        if self.subscriptions.len() >= self.settings.max_subscriptions {
            return Err(Disconnect::TooManySubscriptions(
                self.settings.max_subscriptions,
            ));
        }

        let key = self.next_key;
        self.next_key += 1;
        let mut head = BytesMut::with_capacity(48 + id.len());
        head.put_slice(b"MESSAGE\nsubscription:");
        codec::escape_header_text(id, version, &mut head);
        head.put_slice(b"\nmessage-id:");
        self.ids.insert(id.to_owned(), key);
        self.subscriptions.insert(
            key,
            Subscription {
                destination: destination.to_owned(),
                head: head.freeze(),
                ack: ack != AckMode::Auto,
            },
        );
        self.bridge.router.subscribe(
            destination,
            Subscriber {
                session: self.id,
                key,
                outbox: self.outbox.clone(),
            },
        );
        self.bridge.metrics.subscriptions.inc();
        debug!(
            session.id = self.id,
            subscription.id = id,
            destination,
            "subscribed"
        );
        Ok(())
    }

    fn unsubscribe(&mut self, frame: &Frame, version: Version) -> Result<(), Disconnect> {
        let id = match (frame.get("id"), version) {
            (Some(id), _) => id,
            (None, Version::V1_0) => required(frame, "destination")?,
            (None, _) => return Err(bad_frame("UNSUBSCRIBE requires an id header".into())),
        };
        // An unknown id is a no-op, still answered with its RECEIPT.
        if let Some(key) = self.ids.remove(id) {
            self.remove_subscription(key);
            debug!(session.id = self.id, subscription.id = id, "unsubscribed");
        }
        Ok(())
    }

    fn remove_subscription(&mut self, key: u64) {
        if let Some(subscription) = self.subscriptions.remove(&key) {
            self.bridge
                .router
                .unsubscribe(&subscription.destination, self.id, key);
            self.bridge.metrics.subscriptions.dec();
        }
    }

    fn receipt(&mut self, frame: &Frame, version: Version, out: &mut Vec<Bytes>) {
        if let Some(receipt) = frame.get("receipt") {
            let receipt = Frame::new(Command::Receipt).header("receipt-id", receipt);
            self.emit(&receipt, version, out);
        }
    }

    fn emit(&mut self, frame: &Frame, version: Version, out: &mut Vec<Bytes>) {
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
            State::Connected { .. } => [self.heart_beat.send_due(), self.heart_beat.receive_due()]
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
            return if now >= deadline {
                Err(Disconnect::ConnectTimeout)
            } else {
                Ok(())
            };
        }
        if self.heart_beat.receive_due().is_some_and(|due| now >= due) {
            return Err(Disconnect::HeartbeatTimeout);
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
