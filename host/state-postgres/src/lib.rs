//! PostgreSQL state store (in progress).
