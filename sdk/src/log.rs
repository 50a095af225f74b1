//! Structured lines in the host's run log.
//!
//! The macros [`trace!`](crate::trace), [`debug!`](crate::debug),
//! [`info!`](crate::info), [`warn!`](crate::warn) and
//! [`error!`](crate::error) ask the host whether the level is recorded before
//! formatting anything. They take a format string with its arguments,
//! optionally followed by `;` and `key = value` fields (values implement
//! [`std::fmt::Display`]):
//!
//! ```no_run
//! let (count, offset) = (200, 81_920u64);
//! connector_sdk::info!("page read");
//! connector_sdk::debug!("read {} lines", count);
//! connector_sdk::info!("page read"; messages = count, offset = offset);
//! connector_sdk::warn!("skipping {count} items"; reason = "unsupported");
//! ```
//!
//! Outside the host (native tests) nothing is recorded.

use std::fmt::Display;

pub use crate::bindings::connector::source::log::Level;

pub use crate::{debug, error, info, trace, warn};

/// Whether the host records lines of `level`.
pub fn enabled(level: Level) -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::connector::source::log::enabled(level)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = level;
        false
    }
}

/// Records `message` with `fields` at `level`, without asking
/// [`enabled`] first (the host still drops lines below its level).
pub fn write(level: Level, message: &str, fields: &[(&str, &dyn Display)]) {
    #[cfg(target_arch = "wasm32")]
    {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(key, value)| ((*key).to_string(), value.to_string()))
            .collect();
        crate::bindings::connector::source::log::log(level, message, &fields);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (level, message, fields);
    }
}

fn at(level: Level, message: &str) {
    if enabled(level) {
        write(level, message, &[]);
    }
}

/// Records `message` at [`Level::Trace`] if that level is enabled.
pub fn trace(message: &str) {
    at(Level::Trace, message)
}

/// Records `message` at [`Level::Debug`] if that level is enabled.
pub fn debug(message: &str) {
    at(Level::Debug, message)
}

/// Records `message` at [`Level::Info`] if that level is enabled.
pub fn info(message: &str) {
    at(Level::Info, message)
}

/// Records `message` at [`Level::Warn`] if that level is enabled.
pub fn warn(message: &str) {
    at(Level::Warn, message)
}

/// Records `message` at [`Level::Error`] if that level is enabled.
pub fn error(message: &str) {
    at(Level::Error, message)
}

/// Shared implementation of the level macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __log {
    ($level:expr, $fmt:literal $(, $arg:expr)* $(; $($key:ident = $value:expr),+)?) => {{
        let level = $level;
        if $crate::log::enabled(level) {
            $crate::log::write(
                level,
                &::std::format!($fmt $(, $arg)*),
                &[$($((::core::stringify!($key), &$value as &dyn ::core::fmt::Display)),+)?],
            );
        }
    }};
}

/// Records a line at [`Level::Trace`](crate::log::Level::Trace):
/// `trace!("format {}", args; key = value, ...)`.
#[macro_export]
macro_rules! trace {
    ($($t:tt)+) => { $crate::__log!($crate::log::Level::Trace, $($t)+) };
}

/// Records a line at [`Level::Debug`](crate::log::Level::Debug):
/// `debug!("format {}", args; key = value, ...)`.
#[macro_export]
macro_rules! debug {
    ($($t:tt)+) => { $crate::__log!($crate::log::Level::Debug, $($t)+) };
}

/// Records a line at [`Level::Info`](crate::log::Level::Info):
/// `info!("format {}", args; key = value, ...)`.
#[macro_export]
macro_rules! info {
    ($($t:tt)+) => { $crate::__log!($crate::log::Level::Info, $($t)+) };
}

/// Records a line at [`Level::Warn`](crate::log::Level::Warn):
/// `warn!("format {}", args; key = value, ...)`.
#[macro_export]
macro_rules! warn {
    ($($t:tt)+) => { $crate::__log!($crate::log::Level::Warn, $($t)+) };
}

/// Records a line at [`Level::Error`](crate::log::Level::Error):
/// `error!("format {}", args; key = value, ...)`.
#[macro_export]
macro_rules! error {
    ($($t:tt)+) => { $crate::__log!($crate::log::Level::Error, $($t)+) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn macros_compile_and_do_nothing_natively() {
        let n = 3;
        crate::info!("plain");
        crate::debug!("with {} arg", n);
        crate::warn!("inline {n}");
        crate::error!("fields"; count = n, name = "x");
        crate::trace!("both {}", n; count = n);
        super::info("function");
    }
}
