//! WebAssembly source plugins: components for the `connector:source` world,
//! run in wasmtime's sandbox with only the capabilities they are granted.

mod bindings;
mod convert;
pub mod engine;
mod host_http;
mod host_kv;
mod host_log;
mod host_secrets;
mod limits;
mod runner;
mod sandbox;

pub use engine::PluginEngine;
pub use host_http::HttpClient;
pub use runner::{KvAccess, WasmPlugin, WasmSession};
