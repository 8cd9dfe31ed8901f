//! The shutdown sequence, in one place:
//!
//! 1. cancel `bridge.shutdown`: listeners stop accepting, `/readyz` reports not
//!    ready, queue consumers stop between deliveries (RabbitMQ requeues what it
//!    pushed ahead), and every session is sent an ERROR "server shutting down"
//!    and closed;
//! 2. wait for those tasks, at most the grace period;
//! 3. warn if the grace period ran out, then return so the process exits.

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
    bridge.shutdown.cancel();
    bridge.tasks.close();
    let finished = tokio::time::timeout(grace, bridge.tasks.wait())
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
