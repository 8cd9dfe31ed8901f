//! The shutdown sequence, in one place:
//!
//! 1. cancel `bridge.shutdown`: listeners stop accepting, `/readyz` reports not
//!    ready, queue consumers stop between deliveries (deliveries being handled
//!    finish, and RabbitMQ requeues what it pushed ahead when the channels
//!    close);
//! 2. once the broker side has stopped, cancel `bridge.sessions_closing`:
//!    every session writes what is still queued for it, then gets an ERROR
//!    "server shutting down" (SockJS: `c[3000,"Go away!"]`) and is closed;
//! 3. wait for all tasks; the grace period bounds steps 1 to 3 together;
//! 4. warn if the grace period ran out, then return so the process exits.

use std::time::Duration;

use tracing::{info, warn};

use crate::bridge::Bridge;

/// Time the bridge waits for sessions and consumers to finish at shutdown.
/// Config: `server.shutdown_grace`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Runs the shutdown sequence. Returns whether everything finished in time.
pub async fn run(bridge: &Bridge, grace: Duration) -> bool {
    info!(grace_secs = grace.as_secs_f64(), "shutdown started");
    crate::systemd::stopping();
    let deadline = tokio::time::Instant::now() + grace;
    bridge.shutdown.cancel();
    bridge.tasks.close();
    let _ = tokio::time::timeout_at(deadline, bridge.amqp_stopped.cancelled()).await;
    bridge.sessions_closing.cancel();
    let finished = tokio::time::timeout_at(deadline, bridge.tasks.wait())
        .await
        .is_ok();
    if finished {
        info!("shutdown finished");
    } else {
        warn!(
            remaining_tasks = bridge.tasks.len(),
            "shutdown grace period ran out"
        );
    }
    finished
}
