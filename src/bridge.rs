//! State shared by every part of one running bridge: the router, the metrics,
//! the settings sessions start with, and the shutdown signal.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::Config,
    metrics::Metrics,
    router::Router,
    session::{SessionId, SessionSettings},
};

/// The shared state of one bridge.
#[derive(Debug)]
pub struct Bridge {
    pub router: Router,
    pub metrics: Metrics,
    settings: ArcSwap<SessionSettings>,
    /// One permit per open client connection; `limits.max_sessions` in all.
    pub connections: Arc<Semaphore>,
    /// Cancelled when shutdown starts.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Whether RabbitMQ is connected and every consumer is running.
    pub amqp_ready: AtomicBool,
    next_session: AtomicU64,
}

// === impl Bridge ===

impl Bridge {
    pub fn new(config: &Config) -> Self {
        Self {
            router: Router::new(),
            metrics: Metrics::new(),
            settings: ArcSwap::from_pointee(SessionSettings::from_config(config)),
            connections: Arc::new(Semaphore::new(config.limits.max_sessions)),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            amqp_ready: AtomicBool::new(false),
            next_session: AtomicU64::new(1),
        }
    }

    /// Settings for a session starting now.
    pub fn session_settings(&self) -> Arc<SessionSettings> {
        self.settings.load_full()
    }

    pub fn next_session_id(&self) -> SessionId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_amqp_ready(&self) -> bool {
        self.amqp_ready.load(Ordering::Relaxed)
    }

    pub fn set_amqp_ready(&self, ready: bool) {
        self.amqp_ready.store(ready, Ordering::Relaxed);
    }
}
