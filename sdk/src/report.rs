//! What the host lists for the operator beside the messages: conversations
//! the source would not let the plugin read.
//!
//! A plugin that cannot read a conversation this run (the source refuses
//! the account, a channel is archived out of reach, files are members-only)
//! reports it with [`unreadable`] and goes on with the others; it never
//! fails the run for one conversation. The host lists each conversation
//! reported in the last run, with the reason and the fix, in `connector
//! status`, the status page and the run's admin log. The list is the last
//! complete run's: a conversation the next run reads without reporting it
//! leaves the list once that run completes.

use crate::ids::ConversationId;
use crate::log::{self, Level};

/// The fields of the log record the host recognises as a report (the WIT
/// world is frozen, so the report travels through its `log` interface).
pub mod fields {
    /// The field naming what a record reports.
    pub const REPORT: &str = "connector-report";
    /// Its value for an unreadable conversation.
    pub const UNREADABLE: &str = "unreadable";
    /// The conversation's id.
    pub const CONVERSATION: &str = "conversation";
    /// Why it could not be read.
    pub const REASON: &str = "reason";
    /// What the operator can do.
    pub const FIX: &str = "fix";
}

/// Reports that `conversation` could not be read this run: `reason` is
/// what the source answered, `fix` what the operator can do so that a
/// later run reads it. Also a warning in the run log. Report a
/// conversation once per run; a later report of it in the same run
/// replaces the earlier one.
pub fn unreadable(conversation: impl Into<ConversationId>, reason: &str, fix: &str) {
    let conversation = conversation.into();
    log::write(
        Level::Warn,
        &format!(
            "conversation {} could not be read: {reason}; {fix}",
            conversation.as_str()
        ),
        &[
            (fields::REPORT, &fields::UNREADABLE),
            (fields::CONVERSATION, &conversation.as_str()),
            (fields::REASON, &reason),
            (fields::FIX, &fix),
        ],
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn reporting_outside_the_host_records_nothing() {
        super::unreadable("room-1", "HTTP 403", "add the account to the room");
    }
}
