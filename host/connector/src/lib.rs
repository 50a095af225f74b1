//! The connector host: the `connector` command and the stages it runs
//! around a source plugin.
//!
//! A run goes plugin → convert (`connector-email`) → [`map`] (participants
//! to mailboxes, unmapped ones to the quarantine) → sink (`connector-sink-*`)
//! → commit (`connector-state`); [`pipeline`] is that run loop. The plugin
//! itself runs in `connector-runtime`.
//!
//! Around runs: [`config`] reads the connector file, [`daemon`] runs
//! connectors on their schedules, [`status`] reports on them (text, JSON,
//! HTML, Prometheus, over HTTP), [`report`] writes admin logs and
//! reconciliations, and [`cli`] is the command line. `ARCHITECTURE.md`
//! maps every crate.

pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod map;
pub mod pipeline;
pub mod report;
pub mod status;
