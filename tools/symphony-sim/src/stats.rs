//! Request counters, for tests to assert that faults really happened.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A snapshot of what the simulator has served since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Every HTTP request received.
    pub requests: u64,
    /// Responses by HTTP status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Successful logins (`/login` and `/relay`).
    pub logins: u64,
    /// Refused logins (401).
    pub failed_logins: u64,
    /// Requests refused with 401 for a missing, unknown or expired token.
    pub unauthorized: u64,
    /// Of those, sessions that expired (token lifetime or the request budget fault).
    pub expired_sessions: u64,
    /// Injected 429 answers (with `Retry-After`).
    pub throttled_429: u64,
    /// Injected 400 throttling answers (with or without `Retry-After`).
    pub throttled_400: u64,
    /// Injected 5xx answers.
    pub server_errors: u64,
    /// Injected delays.
    pub slowed: u64,
    /// Connections dropped mid-body.
    pub dropped_connections: u64,
    /// Message pages answered 200 (with messages).
    pub message_pages: u64,
    /// Message pages answered 204 (no messages).
    pub empty_message_pages: u64,
    /// Attachment downloads started (200).
    pub attachment_downloads: u64,
    /// Message, single-message and attachment requests refused because the service account
    /// is not a member of the stream.
    pub not_member: u64,
    /// Datahose events delivered again because their batch was not acknowledged in time.
    pub redelivered_events: u64,
}

impl Stats {
    /// Responses with this status.
    pub fn status(&self, code: u16) -> u64 {
        self.by_status.get(&code).copied().unwrap_or(0)
    }
}
