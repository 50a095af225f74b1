//! The connector host: loads source plugins, drives them, and runs the shared
//! stages that turn their messages into archived emails.
//!
//! A run goes plugin → [`convert`] (RFC 5322 email) → [`map`] (participants to
//! mailboxes, unmapped ones to the quarantine) → [`sink`] (mailbox import),
//! with [`state`] keeping checkpoints, the delivery ledger and run history.
//!
//! Around runs: [`daemon`] runs connectors on their schedules, [`status`]
//! reports on them (text, JSON, HTML, Prometheus, over HTTP), [`report`]
//! writes admin logs and reconciliations, and [`cli`] is the `connector`
//! command line.

pub mod cli;
pub mod config;
pub mod convert;
pub mod daemon;
pub mod map;
pub mod model;
pub mod native;
pub mod pipeline;
pub mod plugin;
pub mod report;
pub mod sink;
pub mod state;
pub mod status;
pub mod wasm;
