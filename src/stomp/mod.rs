//! The STOMP wire protocol: frame types and the codec.
//!
//! Nothing here knows about sessions or transports; [`crate::session`] drives it.

pub mod codec;
mod frame;

pub use codec::{DecodeError, Decoder, Limits};
pub use frame::{Command, Frame, Version};
