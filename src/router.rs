//! Destination → subscribed sessions, in process.
//!
//! The AMQP consumers publish each rendered message here once per destination;
//! the router pushes it into the outbox of every subscribed session. The table is
//! split into shards by destination hash, so subscribing and unsubscribing on one
//! destination never wait for a publish on another, and publishing only takes a
//! shard's read lock.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, RwLock},
};

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    session::{
        SessionId,
        outbox::{Delivery, Outbox, Pushed},
    },
    stomp::{Version, codec},
};

/// Shards of the subscription table. A power of two well above the core count,
/// so publishers and subscribers rarely meet on one lock.
const SHARDS: usize = 64;

/// A MESSAGE frame without its per-subscriber headers (`subscription`,
/// `message-id`, `ack`), encoded once and shared by every subscriber.
#[derive(Debug)]
pub struct Rendered {
    /// From the `destination` header line to the closing NUL, one variant per
    /// STOMP version, indexed by [`Version::index`]. The variants differ only when
    /// the destination contains a character that STOMP 1.1 or 1.2 escapes.
    tails: [Bytes; 3],
    /// Whether the body is UTF-8, so the frame can travel as WebSocket text.
    pub is_utf8: bool,
}

/// One subscription in the routing table.
#[derive(Clone, Debug)]
pub struct Subscriber {
    pub session: SessionId,
    /// Session-unique key of the subscription, carried in each [`Delivery`].
    pub key: u64,
    pub outbox: Outbox,
}

/// Outcome of one [`Router::publish`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Deliveries queued on sessions.
    pub queued: u64,
    /// Sessions whose outbox was full, now closing as slow consumers.
    pub slow: u64,
}

/// One shard: destination → its subscribers.
type Table = HashMap<Box<str>, Vec<Subscriber>>;

/// The subscription table.
#[derive(Debug)]
pub struct Router {
    shards: Box<[RwLock<Table>]>,
    hasher: RandomState,
}

// === impl Rendered ===

impl Rendered {
    /// Encodes the shared part of a MESSAGE frame for `destination`.
    pub fn new(destination: &str, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self::with_redelivered(destination, content_type, body, false)
    }

    /// As [`Rendered::new`], with a `redelivered:true` header when RabbitMQ
    /// delivered the message before (to a consumer that did not acknowledge it).
    pub fn with_redelivered(
        destination: &str,
        content_type: &str,
        body: impl Into<Bytes>,
        redelivered: bool,
    ) -> Self {
        let body = body.into();
        let is_utf8 = std::str::from_utf8(&body).is_ok();
        let tail = |version| {
            Tail {
                destination,
                content_type,
                body: &body,
                redelivered,
            }
            .encode(version)
        };
        let plain = tail(Version::V1_0);
        let tails = if codec::needs_escape(destination) || codec::needs_escape(content_type) {
            [plain, tail(Version::V1_1), tail(Version::V1_2)]
        } else {
            [plain.clone(), plain.clone(), plain]
        };
        Self { tails, is_utf8 }
    }

    /// Returns the shared part of the frame for a session speaking `version`.
    pub fn tail(&self, version: Version) -> &Bytes {
        &self.tails[version.index()]
    }
}

/// The parts of a MESSAGE frame that every subscriber shares.
struct Tail<'a> {
    destination: &'a str,
    content_type: &'a str,
    body: &'a [u8],
    redelivered: bool,
}

impl Tail<'_> {
    fn encode(&self, version: Version) -> Bytes {
        let mut out = BytesMut::with_capacity(96 + self.destination.len() + self.body.len());
        out.put_slice(b"destination:");
        codec::escape_header_text(self.destination, version, &mut out);
        out.put_slice(b"\ncontent-type:");
        codec::escape_header_text(self.content_type, version, &mut out);
        if self.redelivered {
            out.put_slice(b"\nredelivered:true");
        }
        out.put_slice(b"\ncontent-length:");
        out.put_slice(itoa::Buffer::new().format(self.body.len()).as_bytes());
        out.put_slice(b"\n\n");
        out.put_slice(self.body);
        out.put_u8(0);
        out.freeze()
    }
}

// === impl Router ===

impl Router {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, destination: &str) -> &RwLock<Table> {
        let hash = self.hasher.hash_one(destination);
        // SHARDS is a power of two, so masking picks a shard uniformly.
        &self.shards[(hash as usize) & (SHARDS - 1)]
    }

    /// Adds a subscriber to `destination`.
    pub fn subscribe(&self, destination: &str, subscriber: Subscriber) {
        let mut table = self
            .shard(destination)
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table
            .entry(destination.into())
            .or_default()
            .push(subscriber);
    }

    /// Removes the subscription `key` of `session` from `destination`, if present.
    pub fn unsubscribe(&self, destination: &str, session: SessionId, key: u64) {
        let mut table = self
            .shard(destination)
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(subscribers) = table.get_mut(destination) else {
            return;
        };
        if let Some(i) = subscribers
            .iter()
            .position(|s| s.session == session && s.key == key)
        {
            subscribers.swap_remove(i);
        }
        if subscribers.is_empty() {
            table.remove(destination);
        }
    }

    /// Returns whether any session subscribes to `destination`, so a message
    /// without receivers is not rendered at all.
    pub fn has_subscribers(&self, destination: &str) -> bool {
        self.shard(destination)
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(destination)
    }

    /// Queues `message` on every session subscribed to `destination`, without
    /// waiting for any of them.
    pub fn publish(&self, destination: &str, message: &Arc<Rendered>) -> Published {
        let table = self
            .shard(destination)
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut published = Published::default();
        let Some(subscribers) = table.get(destination) else {
            return published;
        };
        for subscriber in subscribers {
            let delivery = Delivery {
                message: message.clone(),
                subscription: subscriber.key,
            };
            match subscriber.outbox.push(delivery) {
                Pushed::Queued => published.queued += 1,
                Pushed::SlowConsumer => published.slow += 1,
                Pushed::Gone => {}
            }
        }
        published
    }
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::outbox;

    #[test]
    fn tail_is_escaped_only_when_needed() {
        let plain = Rendered::new("/topic/a", "application/json", &b"{}"[..]);
        assert_eq!(
            &plain.tail(Version::V1_2)[..],
            b"destination:/topic/a\ncontent-type:application/json\ncontent-length:2\n\n{}\0"
        );
        assert_eq!(plain.tail(Version::V1_0), plain.tail(Version::V1_2));

        let colon = Rendered::new("/topic/a:b", "text/plain", &b""[..]);
        assert!(
            colon
                .tail(Version::V1_0)
                .starts_with(b"destination:/topic/a:b\n")
        );
        assert!(
            colon
                .tail(Version::V1_2)
                .starts_with(b"destination:/topic/a\\cb\n")
        );
    }

    #[tokio::test]
    async fn publish_reaches_only_subscribers_of_the_destination() {
        let router = Router::new();
        let (a, mut a_inbox) = outbox::channel(8);
        let (b, mut b_inbox) = outbox::channel(8);
        router.subscribe(
            "/topic/x",
            Subscriber {
                session: 1,
                key: 7,
                outbox: a,
            },
        );
        router.subscribe(
            "/topic/y",
            Subscriber {
                session: 2,
                key: 9,
                outbox: b,
            },
        );

        let message = Arc::new(Rendered::new("/topic/x", "application/json", &b"1"[..]));
        let published = router.publish("/topic/x", &message);
        assert_eq!(published, Published { queued: 1, slow: 0 });
        assert_eq!(a_inbox.rx.try_recv().unwrap().subscription, 7);
        assert!(b_inbox.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn unsubscribe_removes_only_that_subscription() {
        let router = Router::new();
        let (a, mut inbox) = outbox::channel(8);
        router.subscribe(
            "/topic/x",
            Subscriber {
                session: 1,
                key: 1,
                outbox: a.clone(),
            },
        );
        router.subscribe(
            "/topic/x",
            Subscriber {
                session: 1,
                key: 2,
                outbox: a,
            },
        );
        router.unsubscribe("/topic/x", 1, 1);

        let message = Arc::new(Rendered::new("/topic/x", "application/json", &b"1"[..]));
        assert_eq!(router.publish("/topic/x", &message).queued, 1);
        assert_eq!(inbox.rx.try_recv().unwrap().subscription, 2);
        router.unsubscribe("/topic/x", 1, 2);
        assert!(!router.has_subscribers("/topic/x"));
    }

    #[tokio::test]
    async fn full_session_counted_as_slow() {
        let router = Router::new();
        let (slow, _slow_inbox) = outbox::channel(1);
        let (fast, mut fast_inbox) = outbox::channel(8);
        router.subscribe(
            "/topic/x",
            Subscriber {
                session: 1,
                key: 1,
                outbox: slow,
            },
        );
        router.subscribe(
            "/topic/x",
            Subscriber {
                session: 2,
                key: 1,
                outbox: fast,
            },
        );

        let message = Arc::new(Rendered::new("/topic/x", "application/json", &b"1"[..]));
        router.publish("/topic/x", &message);
        let second = router.publish("/topic/x", &message);
        assert_eq!(second, Published { queued: 1, slow: 1 });
        assert!(fast_inbox.rx.try_recv().is_ok());
        assert!(fast_inbox.rx.try_recv().is_ok());
    }
}
