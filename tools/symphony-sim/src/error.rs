//! Error type of the simulator's public API.

/// Everything that can go wrong when configuring, starting or using the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The [`crate::SimConfig`] (or a `--faults` specification) is not usable.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// Binding the listening socket or another I/O operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An RSA key could not be parsed.
    #[error("invalid RSA key: {0}")]
    Key(String),
    /// A JWT could not be built or signed.
    #[error("JWT error: {0}")]
    Jwt(String),
    /// The background server task or thread failed.
    #[error("simulator task failed: {0}")]
    Task(String),
    /// JSON (de)serialisation failed, e.g. while writing the ground truth.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
}
