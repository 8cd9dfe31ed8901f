//! A rate limit for log lines that one stream of input can repeat without
//! end, such as a dead-lettered message per invalid message. The counters stay
//! exact; only the log lines are limited.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// Lines logged per key and window before the rest are counted instead.
pub const DEFAULT_BURST: u32 = 10;

/// Length of a window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// Allows a burst of lines per key and window.
#[derive(Debug)]
pub struct LogLimiter {
    burst: u32,
    window: Duration,
    keys: Mutex<HashMap<&'static str, Window>>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            keys: Mutex::default(),
        }
    }

    /// Returns `Some(n)` when a line for `key` may be logged now, where `n`
    /// lines were suppressed since the last one; `None` when it must not be.
    pub fn check(&self, key: &'static str) -> Option<u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &'static str, now: Instant) -> Option<u64> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let window = keys.entry(key).or_insert(Window {
            started: now,
            logged: 0,
            suppressed: 0,
        });
        if now.duration_since(window.started) >= self.window {
            window.started = now;
            window.logged = 0;
        }
        if window.logged < self.burst {
            window.logged += 1;
            return Some(std::mem::take(&mut window.suppressed));
        }
        window.suppressed += 1;
        None
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_BURST, DEFAULT_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_suppressed_count_reported() {
        let limiter = LogLimiter::new(2, Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limiter.check_at("a", start), Some(0));
        assert_eq!(limiter.check_at("a", start), Some(0));
        assert_eq!(limiter.check_at("a", start), None);
        assert_eq!(limiter.check_at("a", start), None);
        assert_eq!(
            limiter.check_at("b", start),
            Some(0),
            "keys are limited apart"
        );
        assert_eq!(
            limiter.check_at("a", start + Duration::from_secs(10)),
            Some(2)
        );
    }
}
