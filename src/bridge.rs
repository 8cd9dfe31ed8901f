//! State shared by every part of one running bridge: the current
//! configuration, the router, the metrics, the state of each queue, and the
//! shutdown signal.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::{AccessRules, Authenticator},
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
    /// The configuration in force; reloads replace it.
    config: watch::Sender<Arc<Config>>,
    settings: ArcSwap<SessionSettings>,
    /// Checks CONNECT frames; rebuilt with each applied configuration.
    authenticator: ArcSwap<Authenticator>,
    access: ArcSwap<AccessRules>,
    /// Confirm-mode channel for client SENDs, while RabbitMQ is connected.
    publisher: Mutex<Option<lapin::Channel>>,
    /// One permit per open client connection; `limits.max_sessions` in all.
    pub connections: Arc<Semaphore>,
    /// Cancelled when shutdown starts: listeners, consumers and the reload
    /// watcher stop.
    pub shutdown: CancellationToken,
    /// Cancelled once the broker side has stopped at shutdown.
    pub amqp_stopped: CancellationToken,
    /// Cancelled after the broker side stopped: sessions write what they have
    /// queued, send the shutdown ERROR and close.
    pub sessions_closing: CancellationToken,
    /// Every connection and background task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    amqp_connected: AtomicBool,
    /// Whether the configuration file watch is in place.
    pub config_watched: AtomicBool,
    queues: Mutex<BTreeMap<String, QueueState>>,
    /// Whether this instance's cluster queue is consumed (cluster mode only).
    cluster_consuming: AtomicBool,
    /// This instance's name: `cluster.instance_id`, or the host name and a
    /// random suffix.
    pub instance_id: String,
    next_session: AtomicU64,
}

/// What is happening with one configured queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// Being declared, or waiting for the broker connection.
    Starting,
    /// Declared, bound and consumed.
    Consuming,
    /// Declared and bound; `auto_start: false` keeps it unconsumed.
    Declared,
    /// Declaration or consumption failed; the text says why.
    Failed(String),
}

/// Whether the bridge can do its job, for `/readyz`.
#[derive(Clone, Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub instance: String,
    pub rabbitmq_connected: bool,
    pub shutting_down: bool,
    /// Enabled queues that are not being consumed, with their state.
    pub queues_not_consuming: BTreeMap<String, QueueState>,
}

// === impl Bridge ===

impl Bridge {
    /// Creates the shared state for a validated configuration.
    ///
    /// # Errors
    ///
    /// A message when the authentication or access settings cannot be built;
    /// validation rules that out for a loaded configuration.
    pub fn new(config: Config) -> Result<Self, String> {
        let settings = SessionSettings::from_config(&config);
        let (authenticator, access) = security(&config)?;
        let max_sessions = config.limits.max_sessions;
        let instance_id = config
            .cluster
            .instance_id
            .clone()
            .unwrap_or_else(default_instance_id);
        let metrics = Metrics::new();
        metrics
            .instance_info
            .with_label_values(&[&instance_id])
            .set(1);
        Ok(Self {
            router: Router::new(),
            metrics,
            config: watch::Sender::new(Arc::new(config)),
            settings: ArcSwap::from_pointee(settings),
            authenticator: ArcSwap::from_pointee(authenticator),
            access: ArcSwap::from_pointee(access),
            publisher: Mutex::default(),
            connections: Arc::new(Semaphore::new(max_sessions)),
            shutdown: CancellationToken::new(),
            amqp_stopped: CancellationToken::new(),
            sessions_closing: CancellationToken::new(),
            tasks: TaskTracker::new(),
            amqp_connected: AtomicBool::new(false),
            config_watched: AtomicBool::new(false),
            queues: Mutex::default(),
            cluster_consuming: AtomicBool::new(false),
            instance_id,
            next_session: AtomicU64::new(1),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// A receiver that wakes on every applied reload.
    pub fn watch_config(&self) -> watch::Receiver<Arc<Config>> {
        self.config.subscribe()
    }

    /// Puts a new configuration in force: sessions starting from now use its
    /// settings, every session uses its access rules from the next frame, and
    /// the broker side applies its queues.
    ///
    /// # Errors
    ///
    /// A message when its authentication or access settings cannot be built;
    /// the running configuration then stays.
    pub fn apply_config(&self, config: Arc<Config>) -> Result<(), String> {
        let (authenticator, access) = security(&config)?;
        self.authenticator.store(Arc::new(authenticator));
        self.access.store(Arc::new(access));
        self.settings
            .store(Arc::new(SessionSettings::from_config(&config)));
        self.config.send_replace(config);
        Ok(())
    }

    pub fn authenticator(&self) -> Arc<Authenticator> {
        self.authenticator.load_full()
    }

    pub fn access(&self) -> Arc<AccessRules> {
        self.access.load_full()
    }

    /// The channel for client SENDs, or `None` while RabbitMQ is away.
    pub fn publisher(&self) -> Option<lapin::Channel> {
        self.publisher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_publisher(&self, channel: Option<lapin::Channel>) {
        *self.publisher.lock().unwrap_or_else(|p| p.into_inner()) = channel;
    }

    /// Settings for a session starting now.
    pub fn session_settings(&self) -> Arc<SessionSettings> {
        self.settings.load_full()
    }

    pub fn next_session_id(&self) -> SessionId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub fn set_amqp_connected(&self, connected: bool) {
        self.amqp_connected.store(connected, Ordering::Relaxed);
        self.metrics.rabbitmq_connected.set(i64::from(connected));
    }

    /// Records the state of a queue.
    pub fn set_queue_state(&self, queue: &str, state: QueueState) {
        self.lock_queues().insert(queue.to_owned(), state);
    }

    /// Records that a queue's consumer is running.
    pub fn queue_consuming(&self, queue: &str) {
        self.set_queue_state(queue, QueueState::Consuming);
    }

    pub fn set_cluster_consuming(&self, consuming: bool) {
        self.cluster_consuming.store(consuming, Ordering::Relaxed);
    }

    /// Counters of `queue` if the configuration in force names it, so label
    /// values stay within the configured queue names.
    pub fn configured_queue_metrics(&self, queue: &str) -> Option<crate::metrics::QueueMetrics> {
        let config = self.config();
        config
            .queues
            .iter()
            .any(|q| q.value.name == queue)
            .then(|| self.metrics.queue(queue))
    }

    /// Forgets a queue that was removed or disabled.
    pub fn forget_queue(&self, queue: &str) {
        self.lock_queues().remove(queue);
    }

    /// The state of every queue the bridge manages.
    pub fn queue_states(&self) -> BTreeMap<String, QueueState> {
        self.lock_queues().clone()
    }

    /// Ready means RabbitMQ is connected, every enabled queue with
    /// `auto_start` is consumed, and shutdown has not started.
    pub fn readiness(&self) -> Readiness {
        let config = self.config();
        let states = self.lock_queues();
        let mut not_consuming = BTreeMap::new();
        for queue in config.queues.iter().map(|q| &q.value) {
            if !queue.enabled || !queue.auto_start {
                continue;
            }
            let state = states
                .get(&queue.name)
                .cloned()
                .unwrap_or(QueueState::Starting);
            if state != QueueState::Consuming {
                not_consuming.insert(queue.name.clone(), state);
            }
        }
        if config.cluster.enabled && !self.cluster_consuming.load(Ordering::Relaxed) {
            not_consuming.insert(
                format!("{} (cluster queue)", config.cluster.exchange),
                QueueState::Starting,
            );
        }
        let connected = self.amqp_connected.load(Ordering::Relaxed);
        let shutting_down = self.shutdown.is_cancelled();
        Readiness {
            instance: self.instance_id.clone(),
            ready: connected && not_consuming.is_empty() && !shutting_down,
            rabbitmq_connected: connected,
            shutting_down,
            queues_not_consuming: not_consuming,
        }
    }

    /// Whether [`Bridge::readiness`] says ready.
    pub fn is_ready(&self) -> bool {
        self.readiness().ready
    }

    fn lock_queues(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, QueueState>> {
        self.queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn security(config: &Config) -> Result<(Authenticator, AccessRules), String> {
    let authenticator = Authenticator::new(&config.auth)?;
    let access = AccessRules::new(&config.access)
        .map_err(|(i, error)| format!("access[{i}].destination: {error}"))?;
    Ok((authenticator, access))
}

/// The host name and a random suffix, unique across restarts on one host.
fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| {
            !name.is_empty() && crate::config::destination_segment_problem(name).is_none()
        })
        .unwrap_or_else(|| "stompbridge".into());
    format!("{host}-{:08x}", rand::random::<u32>())
}
