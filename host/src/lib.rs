//! The connector host: loads source plugins, drives them, and runs the shared
//! stages that turn their messages into archived emails.
//!
//! A run goes plugin → [`convert`] (RFC 5322 email) → [`map`] (participants to
//! mailboxes, unmapped ones to the quarantine) → [`sink`] (mailbox import),
//! with [`state`] keeping checkpoints, the delivery ledger and run history.

pub mod config;
pub mod convert;
pub mod map;
pub mod model;
pub mod pipeline;
pub mod plugin;
pub mod sink;
pub mod state;
pub mod wasm;
