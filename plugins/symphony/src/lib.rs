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
//! * [`session`]: the run: streams, members, message pages, datahose events.
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

use connector_sdk::{Page, Source, SourceError};

use client::HostBackend;
use session::Session;

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

    fn next_page(&mut self) -> Result<Page, SourceError> {
        self.session.next_page()
    }
}

connector_sdk::export!(Symphony);
