//! The `generic` handler: the payload passes through unchanged.

use super::{Incoming, Outcome};
use crate::envelope::Payload;

pub(super) fn handle(message: &Incoming<'_>) -> Outcome {
    Outcome::Publish {
        payload: Payload::from_body(message.body),
        extra: Vec::new(),
    }
}
