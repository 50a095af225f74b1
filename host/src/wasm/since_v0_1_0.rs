//! Host bindings of the `connector:source@0.1.0` world.

wasmtime::component::bindgen!({
    path: "../sdk/wit/v0.1.0",
    world: "source-plugin",
    with: {
        "connector:source/http.response": super::host_http::HttpResponse,
    },
});

pub use connector::source::{http, log, secrets, signing, state, types};
