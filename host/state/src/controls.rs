//! What admins ask of a connector's runs, shared by every worker of the
//! state: a pause (no run starts until it is resumed) and a "run now"
//! request, which whichever worker runs the connector takes, once.

use crate::error::StateError;

/// A pause in force: who paused the connector, and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PauseRecord {
    /// Who paused it (an audit actor: a console user, `cli:<OS user>`).
    pub by: String,
    /// When, on the state's clock, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A request to run a connector at once, not yet taken by a worker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunRequest {
    /// Who asked.
    pub by: String,
    /// When, on the state's clock, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// The connectors' pauses and run requests.
pub trait ConnectorControls {
    /// Pauses `connector` for `by`; returns the pause in force (an earlier
    /// pause, if the connector was already paused, is kept).
    fn pause(&mut self, connector: &str, by: &str) -> Result<PauseRecord, StateError>;

    /// Lifts the connector's pause; returns the pause lifted, `None` when
    /// it was not paused. (Who resumed it is the audit trail's to record.)
    fn resume(&mut self, connector: &str) -> Result<Option<PauseRecord>, StateError>;

    /// The connector's pause, if it is paused.
    fn paused(&self, connector: &str) -> Result<Option<PauseRecord>, StateError>;

    /// Every paused connector with its pause, by connector.
    fn paused_connectors(&self) -> Result<Vec<(String, PauseRecord)>, StateError>;

    /// Asks for a run of `connector` at once; returns the request pending
    /// (an earlier one not yet taken is kept).
    fn request_run(&mut self, connector: &str, by: &str) -> Result<RunRequest, StateError>;

    /// Takes the connector's pending run request, if any: of several
    /// workers taking at once, exactly one gets it.
    fn take_run_request(&mut self, connector: &str) -> Result<Option<RunRequest>, StateError>;

    /// Every pending run request, by connector.
    fn run_requests(&self) -> Result<Vec<(String, RunRequest)>, StateError>;
}
