//! The connector file an operator writes: which plugin to run, what it is
//! granted, where its mail goes ([`sink`]) and when it runs ([`schedule`]).
//! The plugin's own manifest is read by `connector-runtime`.

pub mod connector;
pub mod folder;
mod plugin_config;
pub mod schedule;
pub mod sink;
pub mod transcripts;

pub use connector::{ConnectorConfig, MappingConfig};
pub use connector_runtime::ConfigError;
pub use schedule::Schedule;
pub use sink::SinkConfig;
pub use transcripts::{Delivery, TranscriptConfig};
