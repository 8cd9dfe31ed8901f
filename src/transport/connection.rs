//! The task that serves one WebSocket connection, whatever its framing.
//!
//! One task per connection owns the socket and the [`Session`]: it reads client
//! messages, drains the session's outbox, fires the session's timers and writes
//! everything pending with one flush. A [`Wire`] adapts the framing (raw STOMP
//! or SockJS). Writes are bounded by `limits.write_timeout`.

use std::{sync::Arc, time::Duration};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream::FuturesOrdered};
use tokio::{sync::OwnedSemaphorePermit, time::Instant};
use tracing::{Instrument, debug, debug_span};

use crate::{
    bridge::Bridge,
    disconnect::Disconnect,
    metrics::Transport,
    session::{
        Session,
        outbox::{self, Delivery},
        send,
    },
    stomp::Command,
};

/// Deliveries taken from the outbox per wake-up; they are written with one flush.
const BATCH: usize = 256;

/// Time allowed to write the final ERROR and close frames to a closing session.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The framing of STOMP frames in WebSocket messages on one endpoint.
pub(crate) trait Wire: Send {
    /// The `transport` label of connections using this framing.
    const TRANSPORT: Transport;

    /// Messages to send as soon as the connection opens.
    fn open(&mut self, messages: &mut Vec<Message>);

    /// Extracts STOMP bytes from one received message into `chunks`.
    ///
    /// # Errors
    ///
    /// The reason to end the session: the client closed, or sent something the
    /// framing does not allow.
    fn receive(&mut self, message: Message, chunks: &mut Vec<Bytes>) -> Result<(), Disconnect>;

    /// Moves encoded STOMP frames from `frames` into messages to send.
    fn send(&mut self, frames: &mut Vec<Bytes>, messages: &mut Vec<Message>);

    /// Interval and message of a framing-level keep-alive, if the framing has one.
    fn keepalive(&self) -> Option<(Duration, Message)>;

    /// Messages that close the connection for `reason`.
    fn close(&mut self, reason: &Disconnect, messages: &mut Vec<Message>);
}

/// Serves `socket` until the session ends. `permit` counts the connection
/// against `limits.max_sessions` until then.
pub(crate) async fn serve<W: Wire>(
    socket: WebSocket,
    wire: W,
    bridge: Arc<Bridge>,
    permit: OwnedSemaphorePermit,
) {
    // Counts as a task of the bridge, so shutdown waits for this session.
    let _task = bridge.tasks.token();
    let settings = bridge.session_settings();
    let (outbox, inbox) = outbox::channel(settings.outbox_frames);
    let session = Session::new(bridge.clone(), outbox, Instant::now());
    let span = debug_span!(
        "session",
        session.id = session.id(),
        transport = W::TRANSPORT.label()
    );
    let label = [W::TRANSPORT.label()];
    bridge
        .metrics
        .connections_total
        .with_label_values(&label)
        .inc();
    let open = bridge.metrics.connections.with_label_values(&label);
    open.inc();

    let mut connection = Connection {
        socket,
        wire,
        session,
        inbox,
        bridge: bridge.clone(),
        frames: Vec::new(),
        messages: Vec::new(),
        last_write: Instant::now(),
        sends: FuturesOrdered::new(),
    };
    async move {
        debug!("session opened");
        let reason = connection.run().await;
        bridge.metrics.disconnected(&reason);
        debug!(reason = reason.label(), "session closed");
        connection.close(&reason).await;
    }
    .instrument(span)
    .await;
    open.dec();
    drop(permit);
}

struct Connection<W> {
    socket: WebSocket,
    wire: W,
    session: Session,
    inbox: outbox::Inbox,
    bridge: Arc<Bridge>,
    /// Encoded STOMP frames waiting for the next write.
    frames: Vec<Bytes>,
    /// WebSocket messages waiting for the next write.
    messages: Vec<Message>,
    last_write: Instant,
    /// Client SENDs being published, in order.
    sends: FuturesOrdered<SendFuture>,
}

type SendFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Option<String>, Result<(), String>)> + Send>,
>;

impl<W: Wire> Connection<W> {
    async fn run(&mut self) -> Disconnect {
        let write_timeout = self.session.settings().write_timeout;
        let keepalive = self.wire.keepalive();
        let mut batch: Vec<Delivery> = Vec::new();
        self.wire.open(&mut self.messages);

        loop {
            if let Err(reason) = self.flush(write_timeout).await {
                return reason;
            }
            let far = Instant::now() + Duration::from_secs(86_400);
            let deadline = self.session.deadline().unwrap_or(far);
            let keepalive_due = keepalive
                .as_ref()
                .map_or(far, |(every, _)| self.last_write + *every);

            // Biased: a close request wins over more input or output.
            let result = tokio::select! {
                biased;
                reason = self.inbox.close.closed() => Err(reason),
                () = self.bridge.sessions_closing.cancelled() => Err(Disconnect::Shutdown),
                received = self.socket.recv(), if self.session.can_read() => self.on_message(received),
                Some((receipt, result)) = self.sends.next() => {
                    self.session.send_completed(receipt, result, &mut self.frames)
                }
                count = self.inbox.rx.recv_many(&mut batch, BATCH) => {
                    self.render(&mut batch, count);
                    Ok(())
                }
                () = tokio::time::sleep_until(deadline) => {
                    self.session.on_timer(Instant::now(), &mut self.frames)
                }
                () = tokio::time::sleep_until(keepalive_due) => {
                    if let Some((_, message)) = &keepalive {
                        self.messages.push(message.clone());
                    }
                    Ok(())
                }
            };
            if let Err(reason) = result {
                // Frames produced before the end (a RECEIPT for DISCONNECT) still
                // go out; a failed write changes nothing about the reason.
                let _ = self.flush(write_timeout).await;
                return reason;
            }
        }
    }

    fn on_message(
        &mut self,
        received: Option<Result<Message, axum::Error>>,
    ) -> Result<(), Disconnect> {
        let message = match received {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                debug!(%error, "websocket read failed");
                return Err(Disconnect::TransportClosed);
            }
            None => return Err(Disconnect::TransportClosed),
        };
        let mut chunks = Vec::new();
        self.wire.receive(message, &mut chunks)?;
        let now = Instant::now();
        let mut result = Ok(());
        for chunk in chunks {
            result = self.session.receive(&chunk, now, &mut self.frames);
            if result.is_err() {
                break;
            }
        }
        for request in self.session.take_sends() {
            let channel = self.bridge.publisher();
            self.sends
                .push_back(Box::pin(send::publish(channel, request)));
        }
        result
    }

    fn render(&mut self, batch: &mut Vec<Delivery>, count: usize) {
        let before = self.frames.len();
        for delivery in batch.drain(..count) {
            self.session.render(&delivery, &mut self.frames);
        }
        let rendered = (self.frames.len() - before) as u64;
        self.bridge.metrics.frames_sent(Command::Message, rendered);
    }

    /// Writes every delivery still queued in the outbox.
    async fn drain_outbox(&mut self) {
        let mut batch = Vec::new();
        loop {
            let count = {
                let rx = &mut self.inbox.rx;
                let mut count = 0;
                while count < BATCH {
                    match rx.try_recv() {
                        Ok(delivery) => batch.push(delivery),
                        Err(_) => break,
                    }
                    count += 1;
                }
                batch.len()
            };
            if count == 0 {
                return;
            }
            self.render(&mut batch, count);
            let timeout = self.session.settings().write_timeout;
            if self.flush(timeout).await.is_err() {
                return;
            }
        }
    }

    /// Writes pending frames and messages with one flush.
    async fn flush(&mut self, timeout: Duration) -> Result<(), Disconnect> {
        if !self.frames.is_empty() {
            self.wire.send(&mut self.frames, &mut self.messages);
        }
        if self.messages.is_empty() {
            return Ok(());
        }
        let socket = &mut self.socket;
        let messages = &mut self.messages;
        let write = async {
            for message in messages.drain(..) {
                socket.feed(message).await?;
            }
            socket.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => {
                let now = Instant::now();
                self.last_write = now;
                self.session.wrote(now);
                Ok(())
            }
            Ok(Err(error)) => {
                debug!(%error, "websocket write failed");
                Err(Disconnect::TransportClosed)
            }
            Err(_) => Err(Disconnect::WriteTimeout),
        }
    }

    /// Tells the client why the session ends, then closes the socket.
    async fn close(&mut self, reason: &Disconnect) {
        if matches!(
            reason,
            Disconnect::TransportClosed | Disconnect::WriteTimeout
        ) {
            return;
        }
        self.messages.clear();
        self.frames.clear();
        if *reason == Disconnect::Shutdown {
            // The consumers have stopped and acknowledged what is queued here,
            // so it is written before the ERROR rather than lost.
            self.drain_outbox().await;
        }
        if let Some(error) = self.session.error_frame(reason) {
            self.frames.push(error);
            self.wire.send(&mut self.frames, &mut self.messages);
        }
        self.wire.close(reason, &mut self.messages);
        let _ = self.flush(CLOSE_WRITE_TIMEOUT).await;
    }
}

/// Builds a WebSocket close message with the reason's close code.
pub(crate) fn close_message(reason: &Disconnect) -> Message {
    let text = reason.to_string();
    // RFC 6455, section 5.5: control frame payloads are at most 125 bytes, two
    // of which hold the code.
    let text = truncate_utf8(&text, 123);
    Message::Close(Some(CloseFrame {
        code: reason.websocket_close_code(),
        reason: text.into(),
    }))
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
