//! RabbitMQ: the connection, the declared topology and the queue consumers.

pub mod connection;
pub mod consumer;
pub mod queues;
pub mod runtime;
pub mod settle;
pub mod topology;

/// Why a round of the broker connection ended.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connection failed")]
    Connect(#[source] lapin::Error),
    #[error("declaring exchanges failed")]
    Declare(#[source] lapin::Error),
    #[error("opening a channel failed")]
    Channel(#[source] lapin::Error),
    #[error("connection lost")]
    Lost(#[source] lapin::Error),
    #[error("connection closed")]
    Closed,
    #[error("the broker URL changed")]
    UrlChanged,
}

impl Error {
    /// The error and its causes on one line, for logs.
    pub fn chain(&self) -> crate::error_chain::ErrorChain<'_> {
        crate::error_chain::ErrorChain(self)
    }
}
