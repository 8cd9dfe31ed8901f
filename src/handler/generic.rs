//! The `generic` handler: the payload passes through unchanged.

use super::{Incoming, Outcome};
use crate::envelope::Payload;

/// Passes every message through.
#[derive(Debug, Clone, Copy)]
pub struct Generic;

impl Generic {
    pub fn handle(&self, message: &Incoming<'_>) -> Outcome {
        Outcome {
            payload: Payload::from_body(message.body),
            extra: Vec::new(),
        }
    }
}
