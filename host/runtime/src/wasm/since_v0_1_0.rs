//! Host bindings of the frozen `connector:source@0.1.0` world
//! (`sdk/wit/v0.1.0`).
//!
//! One module per released WIT version, each with its own `bindgen!`: a
//! plugin built against 0.1.0 keeps running when a later version is added
//! beside this one. The newest version is re-exported as `latest` by the
//! parent module and is the one the host's imports are implemented for;
//! an older version's module converts its types to and from `latest` (0.1.0
//! is the newest today, so it needs no conversions).

wasmtime::component::bindgen!({
    path: "../../sdk/wit/v0.1.0",
    world: "source-plugin",
    with: {
        "connector:source/http.response": crate::http::HttpResponse,
    },
});

pub use connector::source::{http, log, secrets, signing, state, types};
