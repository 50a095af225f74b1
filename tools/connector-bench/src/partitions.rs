//! `partitions`: walking a pod of many streams with partitions read one at
//! a time and several at once. The Symphony simulator holds `--streams`
//! streams (3,000 added in bulk, half rooms, half IMs, one message each, beside
//! a few generated ones) and answers
//! every call after `--latency-ms` (20), as a remote pod does; the
//! Symphony plugin lists one partition per stream. The same pod is walked
//! by a connector with `partitions-at-once = 1` (the ceiling of a walk one
//! stream after another, measured in the same run) and with
//! `partitions-at-once = --at-once` (16), each over a state of its own:
//! first the run that archives everything, then a run that finds nothing
//! new. Prints each run's time, the speed-up, and the logins the pod saw.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::Host;
use symphony_sim::SimConfig;

use crate::{maildir_sink, symphony_connector, timed_run};

/// What a run is set up with.
pub struct Partitions {
    pub streams: usize,
    pub latency: Duration,
    pub at_once: u32,
}

pub fn partitions(tmp: tempfile::TempDir, setup: &Partitions) -> Result<()> {
    let sim = symphony_sim::start_blocking(
        SimConfig::builder()
            .seed(20_261_207)
            .messages(50)
            .large_attachment_bytes(0)
            .membership(symphony_sim::Membership::All)
            .extra_streams(setup.streams / 2, setup.streams - setup.streams / 2, 1)
            .latency(setup.latency)
            .build(),
    )?;
    println!(
        "partitions: a pod of {} streams, {} ms per call",
        setup.streams,
        setup.latency.as_millis()
    );
    let mut walks = Vec::new();
    for at_once in [1, setup.at_once] {
        let dir = tmp.path().join(format!("at-once-{at_once}"));
        let config = connector(&dir, &sim.base_url(), at_once)?;
        let host = Host::open(&dir.join("state"))?;
        let logins_before = sim.stats().logins;
        let (first, archive, _) = timed_run(&host, &config)?;
        let (second, quiet, _) = timed_run(&host, &config)?;
        if second.counts.imported != 0 {
            bail!("the second run imported {} emails", second.counts.imported);
        }
        let logins = sim.stats().logins - logins_before;
        println!(
            "{at_once:>3} at once: archiving run {:.1} s ({} messages, {} emails), run with nothing new {:.1} s; {logins} logins",
            archive.as_secs_f64(),
            first.counts.items_from_source,
            first.counts.imported,
            quiet.as_secs_f64(),
        );
        walks.push((archive, quiet));
    }
    let (one, many) = (walks[0], walks[1]);
    println!(
        "speed-up with {} at once: {:.1}× archiving, {:.1}× with nothing new (target ≥ 6×)",
        setup.at_once,
        one.0.as_secs_f64() / many.0.as_secs_f64(),
        one.1.as_secs_f64() / many.1.as_secs_f64(),
    );
    Ok(())
}

/// A Symphony connector reading `at_once` partitions at a time into a
/// Maildir in `dir`.
fn connector(dir: &Path, base: &str, at_once: u32) -> Result<ConnectorConfig> {
    std::fs::create_dir_all(dir)?;
    let config = symphony_connector(dir, base, &maildir_sink(&dir.join("mail")), "")?;
    let text = std::fs::read_to_string(&config.path)?;
    std::fs::write(
        &config.path,
        format!("partitions-at-once = {at_once}\n{text}"),
    )?;
    Ok(ConnectorConfig::load(&config.path)?)
}
