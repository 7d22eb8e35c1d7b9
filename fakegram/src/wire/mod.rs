//! The wire below the model: MTProto 2.0 encryption ([`crypto`]) and the message layer
//! ([`mtp`]). The Full transport framing is grammers-mtproto's own (`transport::Full`),
//! which is the same in both directions.

pub mod crypto;
pub mod mtp;
