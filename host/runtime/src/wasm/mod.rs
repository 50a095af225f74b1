//! WebAssembly source plugins: components for the `connector:source` world,
//! run in wasmtime's sandbox with only the capabilities they are granted.
//!
//! Every released version of the WIT world has its own bindings module
//! (`since_v0_1_0`, …; the newest is `latest`). The API version of a plugin
//! is read from the component's import and export names
//! ([`api_version::detect`]), checked against the manifest, and the plugin
//! is linked and called through the bindings of that version, so that
//! plugins built against an older world keep running on a newer host.

#![warn(missing_docs)]

pub mod api_version;
mod convert;
pub mod engine;
mod host_http;
mod host_kv;
mod host_log;
mod host_secrets;
mod limits;
mod runner;
mod sandbox;
mod since_v0_1_0;
mod since_v0_2_0;
mod versioned;

/// The newest WIT world's bindings: the types the host works with.
use since_v0_2_0 as latest;

pub use engine::PluginEngine;
pub use runner::{WasmPlugin, WasmSession};
pub use sandbox::{LogLine, LogSink};
