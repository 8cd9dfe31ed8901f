//! Starts a bridge: binds both listeners, starts the broker connection, and
//! hands back a [`Running`] bridge that shuts down on request.

use std::{io, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tracing::{debug, error, info};

use crate::{
    admin, amqp,
    bridge::Bridge,
    config::{Config, reload},
    shutdown, systemd, transport,
};

/// Error that stops the bridge from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr} ({listener})")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// A started bridge.
#[derive(Debug)]
pub struct Running {
    /// Address of the public WebSocket and SockJS listener.
    pub public_addr: SocketAddr,
    /// Address of the admin listener.
    pub admin_addr: SocketAddr,
    pub bridge: Arc<Bridge>,
}

/// Binds the listeners and starts serving. Returns once both listeners are
/// bound; the broker connection comes up in the background. With `path`, the
/// file is watched and reloaded on change and on SIGHUP.
///
/// # Errors
///
/// [`Error::Bind`] when a listener address is taken or not allowed.
pub async fn start(config: Config, path: Option<PathBuf>) -> Result<Running, Error> {
    let bridge = Arc::new(Bridge::new(config).map_err(Error::Config)?);
    let config = bridge.config();
    let public = bind("public", config.server.listen).await?;
    let admin = bind("admin", config.admin.listen).await?;
    let public_addr = local_addr(&public, "public", config.server.listen)?;
    let admin_addr = local_addr(&admin, "admin", config.admin.listen)?;

    let app = transport::router(bridge.clone(), &config);
    spawn_listener(&bridge, "public", public, app);
    spawn_listener(&bridge, "admin", admin, admin::router(bridge.clone()));
    bridge.tasks.spawn(amqp::connection::run(bridge.clone()));
    if let Some(path) = path {
        bridge.tasks.spawn(reload::watch(bridge.clone(), path));
    }
    bridge.tasks.spawn(systemd::run(bridge.clone()));

    info!(
        version = env!("CARGO_PKG_VERSION"),
        instance = %bridge.instance_id,
        cluster = config.cluster.enabled,
        public = %public_addr,
        admin = %admin_addr,
        queues = config.queues.iter().filter(|q| q.value.enabled).count(),
        "stompbridge started"
    );
    Ok(Running {
        public_addr,
        admin_addr,
        bridge,
    })
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        listener,
        addr,
        source,
    })
}

fn local_addr(
    socket: &TcpListener,
    listener: &'static str,
    addr: SocketAddr,
) -> Result<SocketAddr, Error> {
    socket.local_addr().map_err(|source| Error::Bind {
        listener,
        addr,
        source,
    })
}

fn spawn_listener(
    bridge: &Arc<Bridge>,
    name: &'static str,
    listener: TcpListener,
    app: axum::Router,
) {
    let stop = bridge.shutdown.clone();
    bridge.tasks.spawn(async move {
        // Frames are batched before each write, so Nagle's algorithm would
        // only hold back the last frame of a batch until the client's ACK.
        let listener = listener.tap_io(move |stream| {
            if let Err(error) = stream.set_nodelay(true) {
                debug!(listener = name, %error, "setting TCP_NODELAY failed");
            }
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            error!(listener = name, %error, "listener failed");
        }
    });
}

// === impl Running ===

impl Running {
    /// Runs the shutdown sequence (see [`shutdown`]). Returns whether it
    /// finished within `grace`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        shutdown::run(&self.bridge, grace).await
    }
}
