//! Handlers: what a queue does with each message before it is broadcast.
//!
//! A handler reads one delivery and returns the payload for the queue's
//! envelope plus any extra publications, or a [`Failure`]. The consumer
//! broadcasts and acknowledges only after success. Handlers are an enum rather
//! than trait objects: the set is closed and chosen by `handler:` in the YAML.

mod generic;

use bytes::Bytes;

use crate::{config::HandlerKind, envelope::Payload};

/// One message as a handler sees it.
#[derive(Debug)]
pub struct Incoming<'a> {
    pub queue: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub redelivered: bool,
}

/// What a successful handler produced.
#[derive(Debug)]
pub struct Outcome {
    /// The envelope's `payload`.
    pub payload: Payload,
    /// Publications beyond the queue's broadcast destinations.
    pub extra: Vec<Publication>,
}

/// A body for one destination.
#[derive(Debug, Clone)]
pub struct Publication {
    pub destination: String,
    pub body: Bytes,
}

/// Why a handler failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The message can never succeed (invalid input); it is dead-lettered.
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// The message may succeed later; it is retried.
    #[error("transient failure: {0}")]
    Transient(String),
}

/// A queue's configured handler.
#[derive(Debug, Clone)]
pub enum Handler {
    Generic(generic::Generic),
}

// === impl Handler ===

impl Handler {
    pub fn new(kind: HandlerKind) -> Self {
        match kind {
            HandlerKind::Generic => Handler::Generic(generic::Generic),
        }
    }

    /// The envelope's `handlerType`.
    pub fn kind(&self) -> HandlerKind {
        match self {
            Handler::Generic(_) => HandlerKind::Generic,
        }
    }

    /// Handles one message.
    ///
    /// # Errors
    ///
    /// A [`Failure`] saying whether the message may succeed on a retry.
    pub async fn handle(&self, message: &Incoming<'_>) -> Result<Outcome, Failure> {
        match self {
            Handler::Generic(generic) => Ok(generic.handle(message)),
        }
    }
}
