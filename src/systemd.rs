//! systemd integration for `Type=notify` units: `READY=1` once the listeners
//! are bound and RabbitMQ is connected for the first time, `STOPPING=1` when
//! shutdown starts, and `WATCHDOG=1` at half the unit's `WatchdogSec` while
//! the runtime is responsive. Outside systemd (no `NOTIFY_SOCKET`) every call
//! does nothing.

use std::{sync::Arc, time::Duration};

use sd_notify::NotifyState;
use tracing::{debug, warn};

use crate::bridge::Bridge;

/// Tells systemd the service is ready once RabbitMQ is first connected, then
/// pings the watchdog until shutdown.
pub async fn run(bridge: Arc<Bridge>) {
    while !bridge.readiness().rabbitmq_connected {
        tokio::select! {
            () = bridge.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);

    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    debug!(
        timeout_ms = timeout.as_millis() as u64,
        "systemd watchdog enabled"
    );
    let mut ticks = tokio::time::interval(timeout / 2);
    loop {
        tokio::select! {
            () = bridge.shutdown.cancelled() => return,
            _ = ticks.tick() => send(&[NotifyState::Watchdog]),
        }
    }
}

/// Tells systemd that shutdown started.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        warn!(%error, "cannot notify systemd");
    }
}
