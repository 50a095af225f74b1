//! What the console's Add-connector wizard asks of a plugin before the
//! connector exists: whether it takes a configuration, and which people
//! its source names (so an admin sees who maps to which mailbox before the
//! first run). Nothing is delivered or recorded: the plugin gets a state
//! store of its own that is dropped afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;

use connector_model::Person;
use connector_runtime::{
    Capabilities, Grants, MemoryKv, PluginContext, PluginError, PluginManifest, SecretStore, loader,
};

use super::{Checked, Host, RunError, located};
use crate::config::ConnectorConfig;

/// How many people a preview lists at most.
pub const PREVIEW_PEOPLE: usize = 500;

impl Host {
    /// Loads the plugin of `manifest` with what `grants` allow and asks it
    /// to check `config_json` (its `validate-config`), without secrets.
    pub fn check_plugin_config(
        &self,
        manifest: &PluginManifest,
        grants: &Grants,
        config_json: &str,
    ) -> Result<(), PluginError> {
        let caps = Capabilities::for_validation(manifest, grants);
        loader::load(
            &self.engine,
            manifest,
            PluginContext::new(caps, SecretStore::default()),
        )?
        .validate_config(config_json)
    }

    /// The people the source's first `pages` pages name (senders and
    /// conversation participants, each once, at most
    /// [`PREVIEW_PEOPLE`]), read from the start (of the first partition,
    /// for a partitioned source) with the connector's grants and secrets.
    /// Everything a run checks first is checked, the user map too (leave
    /// `overrides` out for a map not written yet).
    pub fn preview_people(
        &self,
        config: &ConnectorConfig,
        pages: usize,
    ) -> Result<Vec<Person>, RunError> {
        let Checked {
            manifest,
            caps,
            secrets,
            ..
        } = Checked::load(config)?;
        let context = PluginContext::new(caps, secrets).with_kv(Arc::new(MemoryKv::default()));
        let mut plugin = loader::load(&self.engine, &manifest, context)?;
        let json = config.plugin_config_json();
        let partitions = plugin.partitions(&json).map_err(|e| located(config, e))?;
        let mut session = plugin
            .open(&json, partitions.first().map(String::as_str), None)
            .map_err(|e| located(config, e))?;
        let mut people = BTreeMap::<String, Person>::new();
        for _ in 0..pages {
            let page = session.next_page()?;
            let named = page
                .conversations
                .iter()
                .flat_map(|c| c.participants.iter())
                .chain(page.messages.iter().map(|m| &m.sender));
            for person in named {
                if people.len() < PREVIEW_PEOPLE {
                    people
                        .entry(person.id.clone())
                        .or_insert_with(|| person.clone());
                }
            }
            if page.complete {
                break;
            }
        }
        Ok(people.into_values().collect())
    }
}
