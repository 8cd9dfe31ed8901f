//! STOMP heart-beat negotiation and the session's timers.
//!
//! STOMP 1.2, "Heart-beating": the client sends `heart-beat: cx,cy` and the
//! server answers `sx,sy`. The server sends every `max(sx, cy)` ms unless either
//! is 0, and expects the client every `max(cx, sy)` ms unless either is 0. A
//! client is dropped after twice its interval of silence, which absorbs network
//! jitter and timers that fire late.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::HeartBeatConfig;

/// Silence tolerated from a client, as a multiple of its negotiated interval.
const TOLERANCE: u32 = 2;

/// Negotiated heart-beat intervals of one session, and when data last moved.
#[derive(Clone, Copy, Debug)]
pub struct HeartBeat {
    /// How often the server must send something; `None` disables.
    pub send_every: Option<Duration>,
    /// How often the client promised to send something; `None` disables.
    pub expect_every: Option<Duration>,
    last_read: Instant,
    last_write: Instant,
}

/// A `heart-beat` header that is not two comma-separated integers.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidHeartBeat;

// === impl HeartBeat ===

impl HeartBeat {
    /// No heart-beats in either direction (STOMP 1.0, or before CONNECT).
    pub fn disabled(now: Instant) -> Self {
        Self {
            send_every: None,
            expect_every: None,
            last_read: now,
            last_write: now,
        }
    }

    /// Negotiates the intervals from the client's `heart-beat` header (absent
    /// means `0,0`) and the server's offer.
    ///
    /// # Errors
    ///
    /// [`InvalidHeartBeat`] when the header is malformed.
    pub fn negotiate(
        header: Option<&str>,
        offer: &HeartBeatConfig,
        now: Instant,
    ) -> Result<Self, InvalidHeartBeat> {
        let (cx, cy) = match header {
            Some(value) => parse(value)?,
            None => (0, 0),
        };
        Ok(Self {
            send_every: interval(Duration::from_millis(cy), offer.send),
            expect_every: interval(Duration::from_millis(cx), offer.receive),
            last_read: now,
            last_write: now,
        })
    }

    /// Records that the client sent data.
    pub fn read(&mut self, now: Instant) {
        self.last_read = now;
    }

    /// Records that data was written to the client.
    pub fn wrote(&mut self, now: Instant) {
        self.last_write = now;
    }

    /// When the next heart-beat is due to be sent.
    /// `None` also when the client asked for an interval so long that the
    /// time is past what the clock can represent.
    pub fn send_due(&self) -> Option<Instant> {
        self.last_write.checked_add(self.send_every?)
    }

    /// When the client counts as silent.
    pub fn receive_due(&self) -> Option<Instant> {
        let silence = self.expect_every?.checked_mul(TOLERANCE)?;
        self.last_read.checked_add(silence)
    }
}

/// The interval in one direction: the larger of both sides, or none if either
/// side is 0.
fn interval(client: Duration, server: Duration) -> Option<Duration> {
    (!client.is_zero() && !server.is_zero()).then(|| client.max(server))
}

fn parse(value: &str) -> Result<(u64, u64), InvalidHeartBeat> {
    let (x, y) = value.split_once(',').ok_or(InvalidHeartBeat)?;
    let x = x.trim().parse().map_err(|_| InvalidHeartBeat)?;
    let y = y.trim().parse().map_err(|_| InvalidHeartBeat)?;
    Ok((x, y))
}

/// The value of the CONNECTED `heart-beat` header for an offer.
pub fn offer_header(offer: &HeartBeatConfig) -> String {
    format!("{},{}", offer.send.as_millis(), offer.receive.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(send: u64, receive: u64) -> HeartBeatConfig {
        HeartBeatConfig {
            send: Duration::from_millis(send),
            receive: Duration::from_millis(receive),
        }
    }

    #[test]
    fn larger_side_wins_in_each_direction() {
        let now = Instant::now();
        let hb = HeartBeat::negotiate(Some("4000,20000"), &offer(10_000, 10_000), now).unwrap();
        assert_eq!(hb.send_every, Some(Duration::from_secs(20)));
        assert_eq!(hb.expect_every, Some(Duration::from_secs(10)));
        assert_eq!(hb.receive_due(), Some(now + Duration::from_secs(20)));
    }

    #[test]
    fn zero_on_either_side_disables_a_direction() {
        let now = Instant::now();
        let hb = HeartBeat::negotiate(Some("0,10000"), &offer(10_000, 10_000), now).unwrap();
        assert_eq!(hb.expect_every, None);
        assert_eq!(hb.send_every, Some(Duration::from_secs(10)));
        let hb = HeartBeat::negotiate(Some("10000,10000"), &offer(0, 10_000), now).unwrap();
        assert_eq!(hb.send_every, None);
        let hb = HeartBeat::negotiate(None, &offer(10_000, 10_000), now).unwrap();
        assert_eq!((hb.send_every, hb.expect_every), (None, None));
    }

    #[test]
    fn malformed_header_is_rejected() {
        let now = Instant::now();
        for value in ["", "10", "a,b", "1,-1", "1;2"] {
            let result = HeartBeat::negotiate(Some(value), &offer(1, 1), now);
            assert_eq!(result.err(), Some(InvalidHeartBeat), "{value:?}");
        }
        assert!(HeartBeat::negotiate(Some(" 1 , 2 "), &offer(1, 1), now).is_ok());
    }

    #[test]
    fn huge_intervals_do_not_overflow() {
        let now = Instant::now();
        let value = format!("{0},{0}", u64::MAX);
        let hb = HeartBeat::negotiate(Some(&value), &offer(10_000, 10_000), now).unwrap();
        // Either far in the future or beyond the clock; never a panic.
        assert!(hb.send_due().is_none_or(|due| due > now));
        assert!(hb.receive_due().is_none_or(|due| due > now));
    }

    #[test]
    fn offer_header_is_in_milliseconds() {
        assert_eq!(offer_header(&offer(10_000, 5_000)), "10000,5000");
    }
}
