//! The plugin runtime: everything between a source plugin and the host's
//! pipeline, whatever the plugin is built with.
//!
//! - What a plugin is and may do: its [`manifest`], the operator's
//!   [`Grants`] and the resulting [`Capabilities`] (checked in one place),
//!   and the [`api_version`]s this runtime runs.
//! - The interface the pipeline drives: [`Source`], [`SourceSession`],
//!   [`Page`], [`PluginError`].
//! - What the host does on a plugin's behalf: outbound [`http`] under the
//!   allow-list and the [`address`] policy, [`attachments`] (downloads, deferred reads, spooling and
//!   size limits), the plugin's key/value store behind [`PluginKv`].
//! - The two kinds of plugin: [`wasm`] components in wasmtime's sandbox and
//!   trusted [`native`] libraries; [`loader`] is the one place that picks.
//!
//! Nothing here knows about emails, mailboxes or the state database.

pub mod address;
pub mod api_version;
pub mod attachments;
pub mod capabilities;
pub mod config;
pub mod context;
pub mod error;
pub mod http;
pub mod kv;
pub mod loader;
pub mod manifest;
pub mod native;
mod normalize;
pub mod origin;
pub mod source;
pub mod wasm;

pub use capabilities::{Capabilities, Grants};
pub use config::ConfigError;
pub use connector_secrets::SecretStore;
pub use context::PluginContext;
pub use error::PluginError;
pub use http::{HttpClient, PluginHttp};
pub use kv::{KvAccess, KvError, MemoryKv, PluginKv};
pub use manifest::{PluginKind, PluginManifest, RequestedPermissions};
pub use origin::Origin;
pub use source::{MAX_PARTICIPANTS, Page, Source, SourceSession};
