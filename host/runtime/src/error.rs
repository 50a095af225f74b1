//! How a plugin call can fail, classified so the pipeline knows whether to
//! retry, and worded so the operator knows what to do.

/// A failed call into a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin says its configuration is wrong.
    #[error("plugin configuration rejected: {0}; fix [plugin-config] in the connector file")]
    InvalidConfig(String),
    /// The source rejected the credentials.
    #[error("the source rejected the credentials: {0}; check the connector's secrets")]
    Auth(String),
    /// The source asks to slow down.
    #[error("the source is throttling requests (retry after {}); the run retries by itself", .0.map_or("an unstated time".to_string(), |s| format!("{s} s")))]
    RateLimited(Option<u32>),
    /// Network or server trouble that may pass.
    #[error(
        "temporary failure at the source: {0}; the run retries, and the next run resumes from the last checkpoint"
    )]
    Transient(String),
    /// A failure that retrying will not fix.
    #[error("the plugin gave up: {0}; see the plugin's log lines above for the cause")]
    Permanent(String),
    /// The plugin crashed (a trap: panic, unreachable, bad memory access).
    #[error("the plugin crashed: {message}{}; nothing of the unfinished page was committed, so the next run starts from the last checkpoint; report this to the plugin's author", stderr_suffix(.stderr))]
    Trap {
        /// The trap and backtrace.
        message: String,
        /// What the plugin wrote to stderr (its panic message).
        stderr: String,
    },
    /// The plugin ran past its time limit and was stopped.
    #[error(
        "the plugin ran longer than its limit of {secs} s and was stopped; raise timeout-secs in the manifest if the source is just slow, otherwise report it to the plugin's author"
    )]
    Deadline {
        /// The limit.
        secs: u32,
    },
    /// The plugin tried to use more memory than allowed.
    #[error(
        "the plugin needed more than its limit of {mb} MiB of memory and was stopped; raise memory-mb in the manifest (and in [grants] if set there) or lower the plugin's page size"
    )]
    MemoryLimit {
        /// The limit.
        mb: u32,
    },
    /// The plugin broke the host's contract (an unknown conversation, an
    /// oversized checkpoint, a failed attachment download).
    #[error("the plugin broke the host contract: {0}; report this to the plugin's author")]
    Protocol(String),
    /// The plugin could not be loaded or instantiated.
    #[error("cannot load the plugin: {0}")]
    Load(String),
}

fn stderr_suffix(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!(" (plugin stderr: {stderr})")
    }
}

impl PluginError {
    /// Whether the same call may succeed if tried again later in this run.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PluginError::RateLimited(_) | PluginError::Transient(_)
        )
    }
}
