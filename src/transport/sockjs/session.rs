//! SockJS sessions, independent of the transport that carries them.
//!
//! A session has an application side ([`Session`]: messages in, messages out,
//! close) and a receiving side used by transports: at most one receiving
//! request (or WebSocket) is attached at a time and takes the queued messages
//! as frames. HTTP sessions live in a [`Registry`] keyed by session id; a
//! session without a receiving request for the disconnect delay is closed and
//! forgotten, which ends it for the application too.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};

/// Close code and reason the protocol sends when a receiving request is
/// replaced while another is attached.
pub const ANOTHER_CONNECTION: (u16, &str) = (2010, "Another connection still open");

/// Close code and reason when a receiving request was aborted by the client.
pub const INTERRUPTED: (u16, &str) = (1002, "Connection interrupted");

/// Batches of client messages buffered for the application before a sender
/// waits.
const INBOUND_BATCHES: usize = 64;

/// The next thing a receiving request sends.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Open,
    Heartbeat,
    Messages(Vec<String>),
    Close(u16, String),
}

/// Reason the application could not queue messages.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// More than the session's byte limit is queued: the client does not
    /// receive fast enough.
    Full,
    /// The session has ended.
    Closed,
}

/// The application's end of a session.
#[derive(Debug)]
pub struct Session {
    pub shared: Arc<Shared>,
    inbound: mpsc::Receiver<Vec<String>>,
}

/// State shared by the application and the transports.
#[derive(Debug)]
pub struct Shared {
    pub id: String,
    state: Mutex<State>,
    /// Wakes the attached receiver when messages or a close arrive.
    notify: Notify,
    /// Wakes the application when the session ends from the transport side.
    ended: Notify,
    max_queued_bytes: usize,
}

#[derive(Debug)]
struct State {
    outgoing: VecDeque<String>,
    outgoing_bytes: usize,
    close: Option<(u16, String)>,
    /// Token of the attached receiver.
    receiver: Option<u64>,
    next_receiver: u64,
    /// When the last receiver detached, for the disconnect delay.
    detached_at: Option<Instant>,
    /// Sender of client messages; dropped when the session ends.
    inbound: Option<mpsc::Sender<Vec<String>>>,
}

/// Result of [`Shared::attach`].
#[derive(Debug, PartialEq, Eq)]
pub enum Attach {
    Attached(u64),
    /// Another receiver is attached; send it [`ANOTHER_CONNECTION`].
    Busy,
}

/// Sessions of the HTTP transports, by id.
#[derive(Debug)]
pub struct Registry {
    sessions: Mutex<HashMap<String, Arc<Shared>>>,
    max_sessions: usize,
    max_queued_bytes: usize,
}

// === impl Session ===

impl Session {
    /// Creates a session and its shared state.
    pub fn new(id: String, max_queued_bytes: usize) -> Self {
        let (tx, inbound) = mpsc::channel(INBOUND_BATCHES);
        let shared = Arc::new(Shared {
            id,
            state: Mutex::new(State {
                outgoing: VecDeque::new(),
                outgoing_bytes: 0,
                close: None,
                receiver: None,
                next_receiver: 0,
                detached_at: Some(Instant::now()),
                inbound: Some(tx),
            }),
            notify: Notify::new(),
            ended: Notify::new(),
            max_queued_bytes,
        });
        Self { shared, inbound }
    }

    /// Returns the next batch of client messages, or `None` once the session
    /// has ended.
    pub async fn recv(&mut self) -> Option<Vec<String>> {
        self.inbound.recv().await
    }

    /// Queues messages for the client.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] past the byte limit, [`SendError::Closed`] after
    /// the session closed.
    pub fn send(&self, messages: Vec<String>) -> Result<(), SendError> {
        self.shared.send(messages)
    }

    /// Closes the session: receivers get `c[code,"reason"]` until it expires.
    pub fn close(&self, code: u16, reason: &str) {
        self.shared.close(code, reason);
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, messages: Vec<String>) -> Result<(), SendError> {
        let mut state = self.lock();
        if state.close.is_some() {
            return Err(SendError::Closed);
        }
        let bytes: usize = messages.iter().map(String::len).sum();
        if state.outgoing_bytes + bytes > self.max_queued_bytes && !state.outgoing.is_empty() {
            return Err(SendError::Full);
        }
        state.outgoing_bytes += bytes;
        state.outgoing.extend(messages);
        drop(state);
        self.notify.notify_one();
        Ok(())
    }

    /// Closes the session with `code` and `reason` (the first close wins) and
    /// ends it for the application.
    pub fn close(&self, code: u16, reason: &str) {
        let mut state = self.lock();
        if state.close.is_none() {
            state.close = Some((code, reason.to_owned()));
        }
        state.inbound = None;
        drop(state);
        self.notify.notify_one();
        self.ended.notify_waiters();
    }

    /// Returns whether the session was closed.
    pub fn is_closed(&self) -> bool {
        self.lock().close.is_some()
    }

    /// Waits until the session is closed.
    pub async fn closed(&self) {
        loop {
            let ended = self.ended.notified();
            if self.is_closed() {
                return;
            }
            ended.await;
        }
    }

    /// Returns the sender for client messages while the session is open.
    pub fn inbound(&self) -> Option<mpsc::Sender<Vec<String>>> {
        self.lock().inbound.clone()
    }

    /// Attaches a receiver, unless one is attached already.
    pub fn attach(&self) -> Attach {
        let mut state = self.lock();
        if state.receiver.is_some() {
            return Attach::Busy;
        }
        let token = state.next_receiver;
        state.next_receiver += 1;
        state.receiver = Some(token);
        state.detached_at = None;
        Attach::Attached(token)
    }

    /// Detaches receiver `token`, which starts the disconnect delay.
    pub fn detach(&self, token: u64) {
        let mut state = self.lock();
        if state.receiver == Some(token) {
            state.receiver = None;
            state.detached_at = Some(Instant::now());
        }
    }

    /// Waits for what receiver `token` sends next: queued messages, the close
    /// frame, or a heartbeat after `heartbeat` without either.
    pub async fn next_frame(&self, heartbeat: Duration) -> Frame {
        let deadline = Instant::now() + heartbeat;
        loop {
            let notified = self.notify.notified();
            if let Some(frame) = self.take_frame() {
                return frame;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return Frame::Heartbeat,
            }
        }
    }

    /// Takes what is ready without waiting.
    pub fn take_frame(&self) -> Option<Frame> {
        let mut state = self.lock();
        if !state.outgoing.is_empty() {
            state.outgoing_bytes = 0;
            return Some(Frame::Messages(state.outgoing.drain(..).collect()));
        }
        state
            .close
            .as_ref()
            .map(|(code, reason)| Frame::Close(*code, reason.clone()))
    }

    /// Returns whether no receiver has been attached for `delay`.
    fn expired(&self, now: Instant, delay: Duration) -> bool {
        self.lock()
            .detached_at
            .is_some_and(|at| now.duration_since(at) >= delay)
    }
}

// === impl Registry ===

impl Registry {
    pub fn new(max_sessions: usize, max_queued_bytes: usize) -> Self {
        Self {
            sessions: Mutex::default(),
            max_sessions,
            max_queued_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Shared>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Arc<Shared>> {
        self.lock().get(id).cloned()
    }

    /// Creates a session under `id`, or returns `None` at the session limit.
    pub fn create(&self, id: &str) -> Option<Session> {
        let mut sessions = self.lock();
        if sessions.len() >= self.max_sessions {
            return None;
        }
        let session = Session::new(id.to_owned(), self.max_queued_bytes);
        sessions.insert(id.to_owned(), session.shared.clone());
        Some(session)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes and removes the sessions that had no receiver for `delay`.
    /// Returns how many were reclaimed.
    pub fn reap(&self, delay: Duration) -> usize {
        let now = Instant::now();
        let expired: Vec<Arc<Shared>> = {
            let mut sessions = self.lock();
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, s)| s.expired(now, delay))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for session in &expired {
            session.close(INTERRUPTED.0, INTERRUPTED.1);
        }
        expired.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_reach_the_attached_receiver() {
        let session = Session::new("s".into(), 1024);
        assert_eq!(session.shared.attach(), Attach::Attached(0));
        assert_eq!(session.shared.attach(), Attach::Busy);
        session.send(vec!["a".into(), "b".into()]).unwrap();
        assert_eq!(
            session.shared.next_frame(Duration::from_secs(1)).await,
            Frame::Messages(vec!["a".into(), "b".into()])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_receiver_gets_a_heartbeat() {
        let session = Session::new("s".into(), 1024);
        session.shared.attach();
        assert_eq!(
            session.shared.next_frame(Duration::from_secs(25)).await,
            Frame::Heartbeat
        );
    }

    #[tokio::test]
    async fn closed_session_keeps_answering_with_its_close_frame() {
        let mut session = Session::new("s".into(), 1024);
        session.close(3000, "Go away!");
        for _ in 0..2 {
            assert_eq!(
                session.shared.take_frame(),
                Some(Frame::Close(3000, "Go away!".into()))
            );
        }
        assert_eq!(session.send(vec!["x".into()]), Err(SendError::Closed));
        assert_eq!(session.recv().await, None, "the application sees the end");
    }

    #[test]
    fn queue_past_the_byte_limit_is_full() {
        let session = Session::new("s".into(), 10);
        session.send(vec!["12345678".into()]).unwrap();
        assert_eq!(session.send(vec!["12345".into()]), Err(SendError::Full));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_without_receiver_are_reaped() {
        let registry = Registry::new(2, 1024);
        let mut first = registry.create("a").unwrap();
        let _second = registry.create("b").unwrap();
        assert!(registry.create("c").is_none(), "session limit");
        let token = match first.shared.attach() {
            Attach::Attached(token) => token,
            Attach::Busy => unreachable!(),
        };
        tokio::time::advance(Duration::from_secs(6)).await;
        // "b" was never attached; "a" has a receiver.
        assert_eq!(registry.reap(Duration::from_secs(5)), 1);
        first.shared.detach(token);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(registry.reap(Duration::from_secs(5)), 1);
        assert!(registry.is_empty());
        assert_eq!(first.recv().await, None);
    }
}
