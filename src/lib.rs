//! stompbridge: a daemon that bridges RabbitMQ queues to STOMP clients over
//! WebSocket and SockJS.
//!
//! Data flows one way through the tree:
//!
//! ```text
//! amqp (consume) → handler → envelope → router → session (outbox) → transport
//! ```
//!
//! - [`amqp`] keeps the broker connection, declares the topology and consumes
//!   each configured queue; a message is acknowledged once it is queued on every
//!   subscribed session.
//! - [`handler`] turns a delivery into the bodies and destinations to publish.
//! - [`envelope`] renders the documented JSON bodies.
//! - [`router`] maps destinations to sessions and renders each MESSAGE frame once.
//! - [`session`] is the STOMP state machine, independent of the transport.
//! - [`transport`] serves raw WebSocket and SockJS on the public listener.
//! - [`admin`] serves health checks and metrics on the admin listener.
//!
//! STOMP features not supported: transactions (BEGIN, COMMIT, ABORT get an
//! ERROR) and client SEND (an ERROR naming the destination).

pub mod admin;
pub mod amqp;
pub mod auth;
pub mod bridge;
pub mod cluster;
pub mod config;
pub mod destination;
pub mod disconnect;
pub mod envelope;
pub mod error_chain;
pub mod handler;
pub mod log_limit;
pub mod metrics;
pub mod router;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod stomp;
pub mod systemd;
pub mod transport;

/// Installs ring as the process's TLS crypto provider, which the webhook HTTP
/// client needs. Calling it again does nothing.
#[expect(
    deprecated,
    reason = "ring builds with the C compiler alone; aws-lc-rs, the suggested provider, needs cmake"
)]
pub fn install_tls_provider() {
    // An error means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Version and commit of this build, as `--version` prints them.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STOMPBRIDGE_COMMIT"),
    ")"
);
