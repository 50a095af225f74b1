//! # symphony
//!
//! A source plugin for Symphony: archives IM, MIM, room and wall-post
//! messages through the pod, agent and key-manager REST APIs, with edits,
//! replies, forwards, attachments (downloaded by the host, any size),
//! suppressions and room joins/leaves.
//!
//! * [`config`]: the configuration (`pod_url`, `username`, ...), checked
//!   without I/O.
//! * [`client`]: RSA login (a JWT the host signs with the signing key
//!   `private-key`), session headers, re-login on 401, error classes.
//! * [`session`]: the run: streams, members, message pages, datahose events;
//!   the partitions (`stream:<streamId>` per stream, `datahose`) and the
//!   session of one of them.
//! * [`checkpoint`]: per-stream positions and their binary encoding.
//! * [`normalize`], [`presentation`]: Symphony items into WIT messages,
//!   PresentationML into sanitized HTML and plain text.
//!
//! See `README.md` beside this crate for the operator's view.

#![warn(missing_docs)]

pub mod api;
pub mod checkpoint;
pub mod client;
pub mod config;
pub mod jwt;
pub mod normalize;
pub mod presentation;
pub mod session;

use connector_sdk::{Page, PartitionId, Source, SourceError};

use client::HostBackend;
use session::{Scope, Session};

/// The Symphony source: one sync session.
pub struct Symphony {
    session: Session<HostBackend>,
}

impl Source for Symphony {
    const NAME: &'static str = "symphony";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn validate_config(config_json: &str) -> Result<(), SourceError> {
        config::Config::parse(config_json).map(|_| ())
    }

    fn open(config_json: &str, checkpoint: Option<Vec<u8>>) -> Result<Self, SourceError> {
        Ok(Symphony {
            session: Session::open(config_json, checkpoint, HostBackend)?,
        })
    }

    fn partitions(config_json: &str) -> Result<Vec<PartitionId>, SourceError> {
        Ok(session::partitions(config_json, HostBackend)?
            .into_iter()
            .map(PartitionId::from)
            .collect())
    }

    fn open_partition(
        config_json: &str,
        partition: PartitionId,
        checkpoint: Option<Vec<u8>>,
    ) -> Result<Self, SourceError> {
        let scope = Scope::from_partition(partition.as_str())?;
        Ok(Symphony {
            session: Session::open_scope(config_json, scope, checkpoint, HostBackend)?,
        })
    }

    fn next_page(&mut self) -> Result<Page, SourceError> {
        self.session.next_page()
    }
}

connector_sdk::export!(Symphony);
