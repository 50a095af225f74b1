//! Plugin log lines, forwarded into the host's `tracing` output with the
//! plugin's id; a line with the fields of an unreadable conversation is also
//! kept as a report for the page being made.

use super::latest::log::{self, Level};
use super::sandbox::SandboxState;

fn fields_text(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl log::Host for SandboxState {
    fn enabled(&mut self, level: Level) -> bool {
        if self.log_sink.is_some() {
            return true;
        }
        match level {
            Level::Trace => tracing::enabled!(target: "plugin", tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: "plugin", tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: "plugin", tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: "plugin", tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: "plugin", tracing::Level::ERROR),
        }
    }

    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        if let Some(report) = connector_model::Unreadable::from_log_fields(&fields) {
            self.unreadable.push(report);
        }
        if let Some(sink) = &self.log_sink {
            let line = super::sandbox::LogLine {
                level: match level {
                    Level::Trace => "trace",
                    Level::Debug => "debug",
                    Level::Info => "info",
                    Level::Warn => "warn",
                    Level::Error => "error",
                },
                message: message.clone(),
                fields: fields.clone(),
            };
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
        let plugin = self.http.plugin_id.as_str();
        let fields = fields_text(&fields);
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, fields, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, fields, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, fields, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, fields, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, fields, "{message}"),
        }
    }
}
