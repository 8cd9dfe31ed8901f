//! The task that serves one STOMP session, whatever carries it.
//!
//! One task per session owns the [`Session`] and its [`Link`]: it reads client
//! data, drains the session's outbox, fires the session's timers, publishes
//! client SENDs and writes everything pending at once. A link is a raw
//! WebSocket ([`WsLink`]) or a SockJS session on any SockJS transport
//! ([`SockJsLink`]). Writes are bounded by `limits.write_timeout`.

use std::{future::Future, pin::Pin, sync::Arc, task::Poll, time::Duration};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream::FuturesOrdered};
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span};

use super::sockjs::session::{self as sockjs, SendError};
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

/// Deliveries taken from the outbox per wake-up; they are written at once.
const BATCH: usize = 256;

/// Time allowed to write the final ERROR and close frames to a closing session.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Carrier of one STOMP session's frames.
pub(crate) trait Link: Send {
    /// Returns the `transport` label of this link.
    fn transport(&self) -> Transport;

    /// Waits for the next data from the client. Cancel-safe: dropping the
    /// future loses nothing.
    ///
    /// # Errors
    ///
    /// The reason to end the session: the client left, or sent something the
    /// transport does not allow.
    fn recv(&mut self) -> impl Future<Output = Result<Vec<Bytes>, Disconnect>> + Send;

    /// Sends the encoded frames in `frames`, which it empties.
    ///
    /// # Errors
    ///
    /// The reason to end the session when the client cannot take them.
    fn send(
        &mut self,
        frames: &mut Vec<Bytes>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), Disconnect>> + Send;

    /// Ends the link for `reason`, after the ERROR frame `error` if any.
    fn close(
        &mut self,
        reason: &Disconnect,
        error: Option<Bytes>,
    ) -> impl Future<Output = ()> + Send;
}

/// A raw WebSocket: one STOMP frame (or heart-beat) per WebSocket message.
#[derive(Debug)]
pub(crate) struct WsLink {
    pub socket: WebSocket,
}

/// A SockJS session on any SockJS transport; one STOMP frame per SockJS message.
#[derive(Debug)]
pub(crate) struct SockJsLink {
    pub session: sockjs::Session,
    pub transport: Transport,
}

/// Serves one STOMP session on `link` until it ends, then drops `permit`,
/// the session's place under `limits.max_sessions`.
///
/// Not an `async fn`: the session is set up here and moved into the future,
/// which then contains it once. An `async fn` would keep a second slot for the
/// locals moved into the awaited block, about 1 KiB more for every idle
/// connection. Callers pass the future on as it is, since wrapping it in an
/// async block would also keep it twice.
pub(crate) fn serve<L: Link, P: Send + 'static>(
    link: L,
    bridge: Arc<Bridge>,
    permit: P,
) -> impl Future<Output = ()> + Send {
    // Counts as a task of the bridge, so shutdown waits for this session.
    let task = bridge.tasks.token();
    let settings = bridge.session_settings();
    let (outbox, inbox) = outbox::channel(settings.outbox_frames);
    let session = Session::new(bridge.clone(), outbox, Instant::now());
    let transport = link.transport();
    let span = debug_span!(
        "session",
        session.id = session.id(),
        transport = transport.label()
    );
    let label = [transport.label()];
    bridge
        .metrics
        .connections_total
        .with_label_values(&label)
        .inc();
    let open = bridge.metrics.connections.with_label_values(&label);
    open.inc();

    let mut connection = Connection {
        link,
        session,
        inbox,
        bridge: bridge.clone(),
        frames: Vec::new(),
        sends: FuturesOrdered::new(),
    };
    async move {
        debug!("session opened");
        let reason = connection.run().await;
        bridge.metrics.disconnected(&reason);
        debug!(reason = reason.label(), "session closed");
        connection.close(&reason).await;
        open.dec();
        drop((task, permit));
    }
    .instrument(span)
}

type SendFuture = Pin<Box<dyn Future<Output = (Option<String>, Result<(), String>)> + Send>>;

struct Connection<L> {
    link: L,
    session: Session,
    inbox: outbox::Inbox,
    bridge: Arc<Bridge>,
    /// Encoded STOMP frames waiting for the next write.
    frames: Vec<Bytes>,
    /// Client SENDs being published, in order.
    sends: FuturesOrdered<SendFuture>,
}

impl<L: Link> Connection<L> {
    async fn run(&mut self) -> Disconnect {
        let write_timeout = self.session.settings().write_timeout;
        let mut batch: Vec<Delivery> = Vec::new();
        // Made once and reused, so a wake-up for a message registers no new
        // timer or waiter, a cost paid by every session a message reaches.
        let close = self.inbox.close.clone();
        let closed = close.closed();
        let shutdown = self.bridge.sessions_closing.clone().cancelled_owned();
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(closed, shutdown, timer);
        // The session deadline the timer is set to, or `None` when the timer
        // must be set again.
        let mut armed: Option<Option<Instant>> = None;
        // The reason the session ends, once known. Frames produced before the
        // end (a RECEIPT for DISCONNECT) are still written.
        let mut ending: Option<Disconnect> = None;
        loop {
            // The only write of the loop, so the future stores its state once.
            if !self.frames.is_empty() {
                let written = self.link.send(&mut self.frames, write_timeout).await;
                match (ending.take(), written) {
                    // A failed write changes nothing about an earlier reason.
                    (Some(reason), _) | (None, Err(reason)) => return reason,
                    (None, Ok(())) => self.session.wrote(Instant::now()),
                }
            } else if let Some(reason) = ending {
                return reason;
            }
            let deadline = self.session.deadline();
            if armed != Some(deadline) {
                let far = || Instant::now() + Duration::from_secs(86_400);
                timer.as_mut().reset(deadline.unwrap_or_else(far));
                armed = Some(deadline);
            }

            // Biased: a close request wins over more input or output.
            let result = tokio::select! {
                biased;
                reason = &mut closed => Err(reason),
                () = &mut shutdown => Err(Disconnect::Shutdown),
                received = self.link.recv(), if self.session.can_read() => self.on_data(received),
                Some((receipt, result)) = self.sends.next() => {
                    self.session.send_completed(receipt, result, &mut self.frames)
                }
                count = self.inbox.rx.recv_many(&mut batch, BATCH) => {
                    self.render(&mut batch, count);
                    Ok(())
                }
                () = &mut timer => {
                    armed = None;
                    self.session.on_timer(Instant::now(), &mut self.frames)
                }
            };
            ending = result.err();
        }
    }

    fn on_data(&mut self, received: Result<Vec<Bytes>, Disconnect>) -> Result<(), Disconnect> {
        let chunks = received?;
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
            while batch.len() < BATCH {
                match self.inbox.rx.try_recv() {
                    Ok(delivery) => batch.push(delivery),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            let count = batch.len();
            self.render(&mut batch, count);
            let timeout = self.session.settings().write_timeout;
            if self.link.send(&mut self.frames, timeout).await.is_err() {
                return;
            }
        }
    }

    /// Tells the client why the session ends, then closes the link.
    async fn close(&mut self, reason: &Disconnect) {
        if matches!(
            reason,
            Disconnect::TransportClosed | Disconnect::WriteTimeout
        ) {
            return;
        }
        self.frames.clear();
        if *reason == Disconnect::Shutdown {
            // The consumers have stopped and acknowledged what is queued here,
            // so it is written before the ERROR rather than lost.
            self.drain_outbox().await;
        }
        let error = self.session.error_frame(reason);
        self.link.close(reason, error).await;
    }
}

// === impl WsLink ===

impl Link for WsLink {
    fn transport(&self) -> Transport {
        Transport::WebSocket
    }

    async fn recv(&mut self) -> Result<Vec<Bytes>, Disconnect> {
        loop {
            match self.socket.recv().await {
                Some(Ok(Message::Text(text))) => return Ok(vec![text.into()]),
                Some(Ok(Message::Binary(data))) => return Ok(vec![data]),
                // tungstenite replies to pings itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => return Err(Disconnect::TransportClosed),
                Some(Err(error)) => {
                    debug!(%error, "websocket read failed");
                    return Err(Disconnect::TransportClosed);
                }
            }
        }
    }

    async fn send(&mut self, frames: &mut Vec<Bytes>, timeout: Duration) -> Result<(), Disconnect> {
        let socket = &mut self.socket;
        let write = async {
            for frame in frames.drain(..) {
                socket.feed(ws_message(frame)).await?;
            }
            socket.flush().await
        };
        let mut write = std::pin::pin!(write);
        // Most writes finish at once, so only a write that waits for the
        // client needs the timer.
        let written = match futures_util::poll!(write.as_mut()) {
            Poll::Ready(result) => Ok(result),
            Poll::Pending => tokio::time::timeout(timeout, write).await,
        };
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                debug!(%error, "websocket write failed");
                Err(Disconnect::TransportClosed)
            }
            Err(_) => Err(Disconnect::WriteTimeout),
        }
    }

    async fn close(&mut self, reason: &Disconnect, error: Option<Bytes>) {
        let socket = &mut self.socket;
        let write = async {
            if let Some(error) = error {
                socket.feed(ws_message(error)).await?;
            }
            socket.feed(close_message(reason)).await?;
            socket.flush().await
        };
        let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, write).await;
    }
}

/// A frame as a WebSocket message: text when it is UTF-8 (a text message must
/// be), else binary.
fn ws_message(frame: Bytes) -> Message {
    match Utf8Bytes::try_from(frame.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(frame),
    }
}

/// Builds a WebSocket close message with the reason's close code.
fn close_message(reason: &Disconnect) -> Message {
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

// === impl SockJsLink ===

impl Link for SockJsLink {
    fn transport(&self) -> Transport {
        self.transport
    }

    async fn recv(&mut self) -> Result<Vec<Bytes>, Disconnect> {
        match self.session.recv().await {
            Some(messages) => Ok(messages.into_iter().map(Bytes::from).collect()),
            None => Err(Disconnect::TransportClosed),
        }
    }

    async fn send(
        &mut self,
        frames: &mut Vec<Bytes>,
        _timeout: Duration,
    ) -> Result<(), Disconnect> {
        // SockJS messages are strings; every frame the bridge sends is UTF-8.
        let messages = frames
            .drain(..)
            .map(|frame| String::from_utf8_lossy(&frame).into_owned())
            .collect();
        match self.session.send(messages) {
            Ok(()) => Ok(()),
            Err(SendError::Full) => Err(Disconnect::SlowConsumer),
            Err(SendError::Closed) => Err(Disconnect::TransportClosed),
        }
    }

    async fn close(&mut self, reason: &Disconnect, error: Option<Bytes>) {
        if let Some(error) = error {
            let _ = self
                .session
                .send(vec![String::from_utf8_lossy(&error).into_owned()]);
        }
        let (code, text) = reason.sockjs_close();
        self.session.close(code, text);
    }
}
