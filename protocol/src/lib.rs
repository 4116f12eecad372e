//! The typed, framed protocol between the unprivileged x2gobroker parts
//! (HTTP daemon, SSH-mode CLI, admin CLI) and the root auth helper.
//!
//! Wire format: a 4-byte big-endian payload length followed by the payload,
//! encoded by [`frame::encode`] and decoded by [`frame::decode`] — the only
//! two places that know the codec.
#![forbid(unsafe_code)]

pub mod client;
pub mod control;
pub mod frame;
pub mod message;
pub mod paths;
pub mod secret;

pub use frame::{decode, encode, FrameError, MAX_FRAME_LEN};
pub use message::*;
pub use secret::Password;

/// Version spoken by this build; exchanged in the `Hello` handshake.
pub const PROTOCOL_VERSION: u16 = 2;
