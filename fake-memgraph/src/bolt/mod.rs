//! The Bolt protocol: framing, messages, version negotiation and the server session.

pub mod chunk;
pub mod handshake;
pub mod message;
pub(crate) mod session;
