//! Host bindings of the `connector:source@0.2.0` world (`sdk/wit/v0.2.0`),
//! the newest: 0.1.0 and partitions (`source.partitions`, and the partition
//! a session opens). The host's imports are implemented for these bindings.

wasmtime::component::bindgen!({
    path: "../../sdk/wit/v0.2.0",
    world: "source-plugin",
    with: {
        "connector:source/http.response": crate::http::HttpResponse,
        "connector:source/types": super::since_v0_1_0::types,
    },
});

pub use super::since_v0_1_0::types;
pub use connector::source::{http, log, secrets, signing, state};
