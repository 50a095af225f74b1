//! The one place that dispatches on a plugin's API version: linking and
//! calling a component through the bindings module of the version it was
//! built against, and converting that version's types to `latest`.
//!
//! Adding a version `X.Y.Z` beside the frozen ones:
//!
//! 1. copy the WIT world to `sdk/wit/vX.Y.Z/` (older folders never change);
//! 2. add `since_vX_Y_Z.rs` with its own `bindgen!`, make it `latest` in
//!    `wasm/mod.rs`, and implement the host imports for it;
//! 3. give the previous `latest` module `Host` impls that convert to the new
//!    one (as Zed's extension host does for its `since_v*` modules);
//! 4. add an [`ApiVersion`] variant and an arm to each `match` below, with
//!    conversions of its page/error types into `latest` (none while the
//!    `types` interface is unchanged: later bindings map it to 0.1.0's).

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker, ResourceAny};

use super::latest::types as wit;
use super::sandbox::SandboxState;
use super::{since_v0_1_0, since_v0_2_0};
use crate::api_version::ApiVersion;

/// A component linked to the host imports of its API version, ready to be
/// instantiated once per session.
pub(super) enum InstancePre {
    /// Built against `connector:source@0.1.0`.
    V0_1_0(since_v0_1_0::SourcePluginPre<SandboxState>),
    /// Built against `connector:source@0.2.0`.
    V0_2_0(since_v0_2_0::SourcePluginPre<SandboxState>),
}

/// One instance of a plugin component, whatever its API version.
pub(super) enum Instance {
    /// Built against `connector:source@0.1.0`.
    V0_1_0(since_v0_1_0::SourcePlugin),
    /// Built against `connector:source@0.2.0`.
    V0_2_0(since_v0_2_0::SourcePlugin),
}

impl InstancePre {
    /// Links `component` (of API `version`) into `linker`, which already
    /// holds WASI.
    pub(super) fn new(
        version: ApiVersion,
        linker: &mut Linker<SandboxState>,
        component: &Component,
    ) -> wasmtime::Result<InstancePre> {
        match version {
            ApiVersion::V0_1_0 => {
                since_v0_1_0::SourcePlugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
                let pre = linker.instantiate_pre(component)?;
                Ok(InstancePre::V0_1_0(since_v0_1_0::SourcePluginPre::new(
                    pre,
                )?))
            }
            ApiVersion::V0_2_0 => {
                since_v0_2_0::SourcePlugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
                let pre = linker.instantiate_pre(component)?;
                Ok(InstancePre::V0_2_0(since_v0_2_0::SourcePluginPre::new(
                    pre,
                )?))
            }
        }
    }

    /// The API version the component was built against.
    pub(super) fn version(&self) -> ApiVersion {
        match self {
            InstancePre::V0_1_0(_) => ApiVersion::V0_1_0,
            InstancePre::V0_2_0(_) => ApiVersion::V0_2_0,
        }
    }

    /// A fresh instance in `store`.
    pub(super) fn instantiate(
        &self,
        store: &mut Store<SandboxState>,
    ) -> wasmtime::Result<Instance> {
        match self {
            InstancePre::V0_1_0(pre) => Ok(Instance::V0_1_0(pre.instantiate(store)?)),
            InstancePre::V0_2_0(pre) => Ok(Instance::V0_2_0(pre.instantiate(store)?)),
        }
    }
}

/// The result of a call into the plugin: the outer error is a trap, the
/// inner one the plugin's own `source-error`.
type Call<T> = wasmtime::Result<Result<T, wit::SourceError>>;

impl Instance {
    /// `source.validate-config`.
    pub(super) fn call_validate_config(
        &self,
        store: &mut Store<SandboxState>,
        config_json: &str,
    ) -> Call<()> {
        match self {
            Instance::V0_1_0(b) => b
                .connector_source_source()
                .call_validate_config(store, config_json),
            Instance::V0_2_0(b) => b
                .connector_source_source()
                .call_validate_config(store, config_json),
        }
    }

    /// `source.partitions`; a version without partitions lists none.
    pub(super) fn call_partitions(
        &self,
        store: &mut Store<SandboxState>,
        config_json: &str,
    ) -> Call<Vec<String>> {
        match self {
            Instance::V0_1_0(_) => Ok(Ok(Vec::new())),
            Instance::V0_2_0(b) => b
                .connector_source_source()
                .call_partitions(store, config_json),
        }
    }

    /// `session.open`; a version without partitions opens the whole
    /// source only (it lists no partitions to ask for).
    pub(super) fn call_open(
        &self,
        store: &mut Store<SandboxState>,
        config_json: &str,
        partition: Option<&str>,
        checkpoint: Option<&Vec<u8>>,
    ) -> Call<ResourceAny> {
        match self {
            Instance::V0_1_0(b) => {
                b.connector_source_source()
                    .session()
                    .call_open(store, config_json, checkpoint)
            }
            Instance::V0_2_0(b) => b.connector_source_source().session().call_open(
                store,
                config_json,
                partition.map(str::to_string).as_ref(),
                checkpoint,
            ),
        }
    }

    /// `session.next-page`.
    pub(super) fn call_next_page(
        &self,
        store: &mut Store<SandboxState>,
        session: ResourceAny,
    ) -> Call<wit::Page> {
        match self {
            Instance::V0_1_0(b) => b
                .connector_source_source()
                .session()
                .call_next_page(store, session),
            Instance::V0_2_0(b) => b
                .connector_source_source()
                .session()
                .call_next_page(store, session),
        }
    }

    /// `session.open-attachment`.
    pub(super) fn call_open_attachment(
        &self,
        store: &mut Store<SandboxState>,
        session: ResourceAny,
        message_id: &str,
        attachment_id: &str,
    ) -> Call<ResourceAny> {
        match self {
            Instance::V0_1_0(b) => b.connector_source_source().session().call_open_attachment(
                store,
                session,
                message_id,
                attachment_id,
            ),
            Instance::V0_2_0(b) => b.connector_source_source().session().call_open_attachment(
                store,
                session,
                message_id,
                attachment_id,
            ),
        }
    }

    /// `attachment-reader.read`.
    pub(super) fn call_read(
        &self,
        store: &mut Store<SandboxState>,
        reader: ResourceAny,
        max_bytes: u32,
    ) -> Call<Option<Vec<u8>>> {
        match self {
            Instance::V0_1_0(b) => b
                .connector_source_source()
                .attachment_reader()
                .call_read(store, reader, max_bytes),
            Instance::V0_2_0(b) => b
                .connector_source_source()
                .attachment_reader()
                .call_read(store, reader, max_bytes),
        }
    }
}
