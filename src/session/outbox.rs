//! Outbound queue of one session.
//!
//! The router pushes deliveries here without waiting; the session's connection
//! task drains them. Bounded by `limits.outbox_frames`: a session that falls that
//! far behind is closed as a slow consumer, so one stuck client never grows
//! memory or slows delivery to the others.

use std::sync::{Arc, OnceLock};

use tokio::sync::{Notify, mpsc};

use crate::{disconnect::Disconnect, router::Rendered};

/// One MESSAGE for one subscription of a session.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub message: Arc<Rendered>,
    /// The session's internal key of the subscription, not the client's id, so
    /// a message queued before an UNSUBSCRIBE is recognized and dropped even if
    /// the client reuses the id.
    pub subscription: u64,
}

/// Sending half of a session's outbound queue, held by the router.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Delivery>,
    close: Arc<CloseSignal>,
}

/// Receiving half, owned by the session's connection task.
#[derive(Debug)]
pub struct Inbox {
    pub rx: mpsc::Receiver<Delivery>,
    pub close: Arc<CloseSignal>,
}

/// Asks a session's connection task to end the session from outside it.
#[derive(Debug, Default)]
pub struct CloseSignal {
    reason: OnceLock<Disconnect>,
    notify: Notify,
}

/// Result of [`Outbox::push`].
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was full, so the session was signalled to close.
    SlowConsumer,
    /// The session has ended.
    Gone,
}

/// Creates a session's outbound queue holding at most `capacity` deliveries.
pub fn channel(capacity: usize) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let close = Arc::new(CloseSignal::default());
    (
        Outbox {
            tx,
            close: close.clone(),
        },
        Inbox { rx, close },
    )
}

// === impl Outbox ===

impl Outbox {
    /// Queues one delivery without waiting. When the queue is full the session
    /// is asked to close as a slow consumer and the delivery is dropped with it.
    pub fn push(&self, delivery: Delivery) -> Pushed {
        match self.tx.try_send(delivery) {
            Ok(()) => Pushed::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close.close(Disconnect::SlowConsumer);
                Pushed::SlowConsumer
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Pushed::Gone,
        }
    }

    /// Asks the session to end with `reason`.
    pub fn close(&self, reason: Disconnect) {
        self.close.close(reason);
    }
}

// === impl CloseSignal ===

impl CloseSignal {
    /// Records `reason` (the first one wins) and wakes the connection task.
    pub fn close(&self, reason: Disconnect) {
        if self.reason.set(reason).is_ok() {
            self.notify.notify_one();
        }
    }

    /// Waits until [`CloseSignal::close`] is called and returns the reason.
    pub async fn closed(&self) -> Disconnect {
        loop {
            if let Some(reason) = self.reason.get() {
                return reason.clone();
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Rendered;

    fn delivery() -> Delivery {
        Delivery {
            message: Arc::new(Rendered::new(
                "/topic/a",
                "application/json",
                b"{}".as_slice(),
            )),
            subscription: 1,
        }
    }

    #[tokio::test]
    async fn full_outbox_closes_session_as_slow_consumer() {
        let (outbox, inbox) = channel(2);
        assert_eq!(outbox.push(delivery()), Pushed::Queued);
        assert_eq!(outbox.push(delivery()), Pushed::Queued);
        assert_eq!(outbox.push(delivery()), Pushed::SlowConsumer);
        assert_eq!(inbox.close.closed().await, Disconnect::SlowConsumer);
    }

    #[tokio::test]
    async fn push_to_ended_session_reports_gone() {
        let (outbox, inbox) = channel(2);
        drop(inbox);
        assert_eq!(outbox.push(delivery()), Pushed::Gone);
    }
}
