use std::{sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::{outbox::Inbox, *};
use crate::{router::Rendered, stomp::Frame};

fn bridge(yaml: &str) -> Arc<Bridge> {
    let config = crate::config::parse("test.yaml", yaml, |_| None).unwrap();
    Arc::new(Bridge::new(config).unwrap())
}

struct Harness {
    bridge: Arc<Bridge>,
    session: Session,
    inbox: Inbox,
    now: Instant,
}

impl Harness {
    fn new() -> Self {
        Self::with_config("{}")
    }

    fn with_config(yaml: &str) -> Self {
        let bridge = bridge(yaml);
        let (outbox, inbox) = outbox::channel(16);
        let now = Instant::now();
        let session = Session::new(bridge.clone(), outbox, now);
        Self {
            bridge,
            session,
            inbox,
            now,
        }
    }

    /// Sends raw bytes and decodes every frame the session responds with.
    fn send(&mut self, input: &[u8]) -> (Vec<Frame>, Result<(), Disconnect>) {
        let mut out = Vec::new();
        let result = self.session.receive(input, self.now, &mut out);
        (decode(&out), result)
    }

    /// Sends raw bytes and asserts the session accepted them.
    fn ok(&mut self, input: &[u8]) -> Vec<Frame> {
        let (frames, result) = self.send(input);
        assert_eq!(
            result,
            Ok(()),
            "input rejected: {:?}",
            String::from_utf8_lossy(input)
        );
        frames
    }

    fn connected(version: &str) -> Self {
        let mut harness = Self::new();
        let connect = format!("CONNECT\naccept-version:{version}\nheart-beat:0,0\n\n\0");
        let (frames, result) = harness.send(connect.as_bytes());
        assert_eq!(result, Ok(()));
        assert_eq!(frames[0].command, Command::Connected);
        harness
    }

    fn error(&mut self, reason: &Disconnect) -> Frame {
        let bytes = self.session.error_frame(reason).expect("an ERROR frame");
        decode(&[bytes]).remove(0)
    }

    fn publish(&self, destination: &str, body: &'static [u8]) -> usize {
        let message = Arc::new(Rendered::new(destination, "application/json", body));
        self.bridge.router.publish(destination, &message).queued as usize
    }

    fn drain(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Ok(delivery) = self.inbox.rx.try_recv() {
            self.session.render(&delivery, &mut out);
        }
        decode(&out)
    }
}

fn decode(encoded: &[Bytes]) -> Vec<Frame> {
    let mut decoder = Decoder::new(Limits::default());
    decoder.set_version(Version::V1_2);
    let mut frames = Vec::new();
    for bytes in encoded {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
    }
    frames
}

#[test]
fn connect_negotiates_the_highest_common_version() {
    let mut h = Harness::new();
    let frames = h.ok(b"CONNECT\naccept-version:1.0,1.1,1.2\nheart-beat:10000,10000\nhost:x\n\n\0");
    let connected = &frames[0];
    assert_eq!(connected.command, Command::Connected);
    assert_eq!(connected.get("version"), Some("1.2"));
    assert_eq!(connected.get("heart-beat"), Some("10000,10000"));
    assert!(connected.get("server").unwrap().starts_with("stompbridge/"));
    assert_eq!(
        connected.get("session"),
        Some(h.session.id().to_string().as_str())
    );
    assert_eq!(h.session.version(), Some(Version::V1_2));
}

#[test]
fn stomp_command_connects_like_connect() {
    let mut h = Harness::new();
    let (frames, _) = h.send(b"STOMP\naccept-version:1.1\nhost:x\n\n\0");
    assert_eq!(frames[0].get("version"), Some("1.1"));
}

#[test]
fn connect_without_accept_version_is_stomp_1_0() {
    let mut h = Harness::new();
    let (frames, _) = h.send(b"CONNECT\n\n\0");
    assert_eq!(frames[0].get("version"), Some("1.0"));
    assert_eq!(frames[0].get("heart-beat"), None);
    assert_eq!(h.session.deadline(), None);
}

#[test]
fn unsupported_version_gets_error_with_supported_versions() {
    let mut h = Harness::new();
    let (frames, result) = h.send(b"CONNECT\naccept-version:2.0,3.1\n\n\0");
    assert!(frames.is_empty());
    assert_eq!(result, Err(Disconnect::UnsupportedVersion));
    let error = h.error(&Disconnect::UnsupportedVersion);
    assert_eq!(error.command, Command::Error);
    assert_eq!(error.get("version"), Some("1.0,1.1,1.2"));
    assert!(error.get("message").unwrap().contains("1.2"));
}

#[test]
fn frame_before_connect_is_rejected() {
    let mut h = Harness::new();
    let (_, result) = h.send(b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0");
    let Err(reason) = result else {
        panic!("SUBSCRIBE before CONNECT was accepted")
    };
    assert!(reason.to_string().contains("expected CONNECT"), "{reason}");
}

#[test]
fn second_connect_is_rejected() {
    let mut h = Harness::connected("1.2");
    let (_, result) = h.send(b"CONNECT\naccept-version:1.2\n\n\0");
    assert_eq!(
        result,
        Err(Disconnect::BadFrame("already connected".into()))
    );
}

#[test]
fn malformed_heart_beat_is_rejected() {
    let mut h = Harness::new();
    let (_, result) = h.send(b"CONNECT\naccept-version:1.2\nheart-beat:soon\n\n\0");
    assert_eq!(
        result,
        Err(Disconnect::BadFrame("invalid heart-beat header".into()))
    );
}

#[test]
fn subscribe_requires_destination_and_id() {
    let mut h = Harness::connected("1.2");
    let (_, result) = h.send(b"SUBSCRIBE\nid:1\n\n\0");
    assert_eq!(
        result,
        Err(Disconnect::BadFrame(
            "SUBSCRIBE requires a destination header".into()
        ))
    );

    let mut h = Harness::connected("1.2");
    let (_, result) = h.send(b"SUBSCRIBE\ndestination:/topic/a\n\n\0");
    assert_eq!(
        result,
        Err(Disconnect::BadFrame(
            "SUBSCRIBE requires an id header".into()
        ))
    );
}

#[test]
fn v1_0_subscription_id_defaults_to_destination() {
    let mut h = Harness::connected("1.0");
    let (_, result) = h.send(b"SUBSCRIBE\ndestination:/topic/a\n\n\0");
    assert_eq!(result, Ok(()));
    assert_eq!(h.publish("/topic/a", b"{}"), 1);
    let frames = h.drain();
    assert_eq!(frames[0].get("subscription"), Some("/topic/a"));
    let (_, result) = h.send(b"UNSUBSCRIBE\ndestination:/topic/a\n\n\0");
    assert_eq!(result, Ok(()));
    assert_eq!(h.publish("/topic/a", b"{}"), 0);
}

#[test]
fn message_carries_the_documented_headers() {
    let mut h = Harness::connected("1.2");
    h.ok(b"SUBSCRIBE\nid:sub-0\ndestination:/topic/queues/tgm_iot\n\n\0");
    h.publish("/topic/queues/tgm_iot", br#"{"a":1}"#);
    h.publish("/topic/queues/tgm_iot", br#"{"a":2}"#);
    let frames = h.drain();
    assert_eq!(frames.len(), 2);
    let message = &frames[0];
    assert_eq!(message.command, Command::Message);
    assert_eq!(message.get("destination"), Some("/topic/queues/tgm_iot"));
    assert_eq!(message.get("subscription"), Some("sub-0"));
    assert_eq!(message.get("content-type"), Some("application/json"));
    assert_eq!(message.get("content-length"), Some("7"));
    assert_eq!(message.get("ack"), None);
    assert_eq!(&message.body[..], br#"{"a":1}"#);
    assert_ne!(message.get("message-id"), frames[1].get("message-id"));
}

#[test]
fn client_ack_mode_adds_ack_header() {
    let mut h = Harness::connected("1.2");
    h.ok(b"SUBSCRIBE\nid:1\ndestination:/topic/a\nack:client-individual\n\n\0");
    h.publish("/topic/a", b"{}");
    let frames = h.drain();
    assert_eq!(frames[0].get("ack"), frames[0].get("message-id"));
    let (_, result) = h.send(b"ACK\nid:0\n\n\0NACK\nid:0\n\n\0");
    assert_eq!(result, Ok(()));
}

#[test]
fn invalid_ack_mode_is_rejected() {
    let mut h = Harness::connected("1.2");
    let (_, result) = h.send(b"SUBSCRIBE\nid:1\ndestination:/topic/a\nack:sometimes\n\n\0");
    assert_eq!(
        result,
        Err(Disconnect::BadFrame(
            "invalid ack mode \"sometimes\"".into()
        ))
    );
}

#[test]
fn subscription_id_is_escaped_in_message() {
    let mut h = Harness::connected("1.2");
    h.ok(b"SUBSCRIBE\nid:a\\cb\ndestination:/topic/a\n\n\0");
    h.publish("/topic/a", b"{}");
    let frames = h.drain();
    assert_eq!(frames[0].get("subscription"), Some("a:b"));
}

#[test]
fn every_frame_with_receipt_gets_a_receipt() {
    let mut h = Harness::connected("1.2");
    let (frames, result) = h.send(
        b"SUBSCRIBE\nid:1\ndestination:/topic/a\nreceipt:r1\n\n\0\
          ACK\nid:5\nreceipt:r2\n\n\0\
          UNSUBSCRIBE\nid:1\nreceipt:r3\n\n\0\
          UNSUBSCRIBE\nid:unknown\nreceipt:r4\n\n\0",
    );
    assert_eq!(result, Ok(()));
    let receipts: Vec<_> = frames
        .iter()
        .map(|f| f.get("receipt-id").unwrap())
        .collect();
    assert_eq!(receipts, ["r1", "r2", "r3", "r4"]);
    assert!(frames.iter().all(|f| f.command == Command::Receipt));
}

#[test]
fn disconnect_sends_receipt_then_ends() {
    let mut h = Harness::connected("1.2");
    let (frames, result) = h.send(b"DISCONNECT\nreceipt:bye\n\n\0");
    assert_eq!(frames[0].get("receipt-id"), Some("bye"));
    assert_eq!(result, Err(Disconnect::ClientDisconnect));
    assert!(
        h.session
            .error_frame(&Disconnect::ClientDisconnect)
            .is_none()
    );
}

#[test]
fn error_names_the_receipt_of_the_failing_frame() {
    let mut h = Harness::connected("1.2");
    let (_, result) = h.send(b"SUBSCRIBE\nreceipt:77\nid:1\n\n\0");
    let reason = result.unwrap_err();
    let error = h.error(&reason);
    assert_eq!(error.get("receipt-id"), Some("77"));
    assert_eq!(
        error.get("message"),
        Some("SUBSCRIBE requires a destination header")
    );
    assert_eq!(&error.body[..], b"SUBSCRIBE requires a destination header");
}

#[test]
fn no_message_after_unsubscribe_even_if_already_queued() {
    let mut h = Harness::connected("1.2");
    h.ok(b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0");
    h.publish("/topic/a", b"1");
    h.ok(b"UNSUBSCRIBE\nid:1\n\n\0");
    // The id is reused at once for another destination.
    h.ok(b"SUBSCRIBE\nid:1\ndestination:/topic/b\n\n\0");
    h.publish("/topic/b", b"2");
    let frames = h.drain();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].get("destination"), Some("/topic/b"));
}

#[test]
fn duplicate_subscription_id_is_rejected() {
    let mut h = Harness::connected("1.2");
    h.ok(b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0");
    let (_, result) = h.send(b"SUBSCRIBE\nid:1\ndestination:/topic/b\n\n\0");
    assert!(result.unwrap_err().to_string().contains("already in use"));
}

#[test]
fn subscription_limit_is_enforced() {
    let mut h = Harness::with_config("limits:\n  max_subscriptions_per_session: 2\n");
    h.ok(b"CONNECT\naccept-version:1.2\n\n\0");
    h.ok(b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0");
    h.ok(b"SUBSCRIBE\nid:2\ndestination:/topic/b\n\n\0");
    let (_, result) = h.send(b"SUBSCRIBE\nid:3\ndestination:/topic/c\n\n\0");
    assert_eq!(result, Err(Disconnect::TooManySubscriptions(2)));
}

#[test]
fn unsupported_commands_get_clear_errors() {
    for (input, expected) in [
        (
            &b"BEGIN\ntransaction:t\n\n\0"[..],
            "transactions are not supported",
        ),
        (b"MESSAGE\n\n\0", "MESSAGE is a server frame"),
    ] {
        let mut h = Harness::connected("1.2");
        let (_, result) = h.send(input);
        assert_eq!(result, Err(Disconnect::BadFrame(expected.into())));
    }
}

#[test]
fn send_outside_the_rules_is_denied() {
    let mut h = Harness::connected("1.2");
    let (_, result) = h.send(b"SEND\ndestination:/topic/a\n\nhi\0");
    let denied = Disconnect::AccessDenied(crate::auth::Action::Send, "/topic/a".into());
    assert_eq!(result, Err(denied.clone()));
    assert_eq!(denied.to_string(), "access denied: SEND to /topic/a");
}

#[test]
fn anonymous_session_cannot_use_user_destinations() {
    let mut h = Harness::connected("1.2");
    let (_, result) = h.send(b"SUBSCRIBE\nid:1\ndestination:/user/queue/notifications\n\n\0");
    assert_eq!(
        result,
        Err(Disconnect::AccessDenied(
            crate::auth::Action::Subscribe,
            "/user/queue/notifications".into()
        ))
    );
}

#[test]
fn dropping_a_session_removes_its_subscriptions() {
    let mut h = Harness::connected("1.2");
    h.ok(b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0");
    assert!(h.bridge.router.has_subscribers("/topic/a"));
    assert_eq!(h.bridge.metrics.subscriptions.get(), 1);
    assert_eq!(h.bridge.metrics.sessions.get(), 1);
    let bridge = h.bridge.clone();
    drop(h);
    assert!(!bridge.router.has_subscribers("/topic/a"));
    assert_eq!(bridge.metrics.subscriptions.get(), 0);
    assert_eq!(bridge.metrics.sessions.get(), 0);
}

#[test]
fn connect_timeout_ends_a_silent_connection() {
    let mut h = Harness::new();
    let deadline = h.session.deadline().unwrap();
    assert_eq!(deadline, h.now + Duration::from_secs(10));
    let mut out = Vec::new();
    assert_eq!(
        h.session
            .on_timer(deadline - Duration::from_millis(1), &mut out),
        Ok(())
    );
    assert_eq!(
        h.session.on_timer(deadline, &mut out),
        Err(Disconnect::ConnectTimeout)
    );
}

#[test]
fn heart_beats_sent_and_silence_closes() {
    let mut h = Harness::new();
    h.ok(b"CONNECT\naccept-version:1.2\nheart-beat:1000,1000\n\n\0");
    let start = h.now;
    // The server sends every max(10000, 1000) ms and expects every max(1000, 10000) ms.
    assert_eq!(h.session.deadline(), Some(start + Duration::from_secs(10)));

    let mut out = Vec::new();
    h.session
        .on_timer(start + Duration::from_secs(10), &mut out)
        .unwrap();
    assert_eq!(out, [Bytes::from_static(b"\n")]);

    // A client heart-beat resets the silence timer.
    let mut out = Vec::new();
    h.session
        .receive(b"\n", start + Duration::from_secs(15), &mut out)
        .unwrap();
    assert!(out.is_empty());
    assert_eq!(
        h.session
            .on_timer(start + Duration::from_secs(34), &mut out),
        Ok(())
    );
    assert_eq!(
        h.session
            .on_timer(start + Duration::from_secs(35), &mut out),
        Err(Disconnect::HeartbeatTimeout)
    );
}
