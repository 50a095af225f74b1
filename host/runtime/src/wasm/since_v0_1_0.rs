//! Host bindings of the frozen `connector:source@0.1.0` world
//! (`sdk/wit/v0.1.0`).
//!
//! One module per released WIT version, each with its own `bindgen!`: a
//! plugin built against 0.1.0 keeps running when a later version is added
//! beside this one. The host's imports are implemented for `latest`; this
//! module serves a 0.1.0 plugin's imports by converting to and from
//! `latest`, as Zed's extension host does. The `types` interface is
//! unchanged since 0.1.0, so later versions reuse these types (their
//! `bindgen!` maps `connector:source/types` here) and pages need no
//! conversion.

use wasmtime::component::Resource;

use super::latest;
use super::sandbox::SandboxState;
use crate::http::HttpResponse;

wasmtime::component::bindgen!({
    path: "../../sdk/wit/v0.1.0",
    world: "source-plugin",
    with: {
        "connector:source/http.response": crate::http::HttpResponse,
    },
});

pub use connector::source::{http, log, secrets, signing, state, types};

impl From<http::Method> for latest::http::Method {
    fn from(m: http::Method) -> Self {
        match m {
            http::Method::Get => Self::Get,
            http::Method::Head => Self::Head,
            http::Method::Post => Self::Post,
            http::Method::Put => Self::Put,
            http::Method::Patch => Self::Patch,
            http::Method::Delete => Self::Delete,
        }
    }
}

impl From<http::Request> for latest::http::Request {
    fn from(r: http::Request) -> Self {
        Self {
            method: r.method.into(),
            url: r.url,
            headers: r.headers,
            secret_headers: r.secret_headers,
            body: r.body,
            timeout_ms: r.timeout_ms,
        }
    }
}

impl From<latest::http::FullResponse> for http::FullResponse {
    fn from(r: latest::http::FullResponse) -> Self {
        Self {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<latest::http::HttpError> for http::HttpError {
    fn from(e: latest::http::HttpError) -> Self {
        use latest::http::HttpError as L;
        match e {
            L::Denied(m) => Self::Denied(m),
            L::InvalidRequest(m) => Self::InvalidRequest(m),
            L::Timeout => Self::Timeout,
            L::Connection(m) => Self::Connection(m),
            L::BodyTooLarge(limit) => Self::BodyTooLarge(limit),
            L::Other(m) => Self::Other(m),
        }
    }
}

impl From<latest::secrets::SecretError> for secrets::SecretError {
    fn from(e: latest::secrets::SecretError) -> Self {
        use latest::secrets::SecretError as L;
        match e {
            L::NotDeclared(name) => Self::NotDeclared(name),
            L::NotSet(name) => Self::NotSet(name),
        }
    }
}

impl From<signing::Algorithm> for latest::signing::Algorithm {
    fn from(a: signing::Algorithm) -> Self {
        match a {
            signing::Algorithm::Rs256 => Self::Rs256,
            signing::Algorithm::Rs512 => Self::Rs512,
        }
    }
}

impl From<latest::signing::SigningError> for signing::SigningError {
    fn from(e: latest::signing::SigningError) -> Self {
        use latest::signing::SigningError as L;
        match e {
            L::NotDeclared(name) => Self::NotDeclared(name),
            L::NotSet(name) => Self::NotSet(name),
            L::InvalidKey(m) => Self::InvalidKey(m),
        }
    }
}

impl From<latest::state::StateError> for state::StateError {
    fn from(e: latest::state::StateError) -> Self {
        use latest::state::StateError as L;
        match e {
            L::QuotaExceeded => Self::QuotaExceeded,
            L::TooLarge(limit) => Self::TooLarge(limit),
            L::Other(m) => Self::Other(m),
        }
    }
}

impl From<log::Level> for latest::log::Level {
    fn from(l: log::Level) -> Self {
        match l {
            log::Level::Trace => Self::Trace,
            log::Level::Debug => Self::Debug,
            log::Level::Info => Self::Info,
            log::Level::Warn => Self::Warn,
            log::Level::Error => Self::Error,
        }
    }
}

impl http::Host for SandboxState {
    fn fetch(&mut self, req: http::Request) -> Result<http::FullResponse, http::HttpError> {
        latest::http::Host::fetch(self, req.into())
            .map(Into::into)
            .map_err(Into::into)
    }

    fn send(&mut self, req: http::Request) -> Result<Resource<HttpResponse>, http::HttpError> {
        latest::http::Host::send(self, req.into()).map_err(Into::into)
    }
}

impl http::HostResponse for SandboxState {
    fn status(&mut self, this: Resource<HttpResponse>) -> u16 {
        latest::http::HostResponse::status(self, this)
    }

    fn headers(&mut self, this: Resource<HttpResponse>) -> Vec<(String, String)> {
        latest::http::HostResponse::headers(self, this)
    }

    fn read(
        &mut self,
        this: Resource<HttpResponse>,
        max_bytes: u32,
    ) -> Result<Option<Vec<u8>>, http::HttpError> {
        latest::http::HostResponse::read(self, this, max_bytes).map_err(Into::into)
    }

    fn drop(&mut self, this: Resource<HttpResponse>) -> wasmtime::Result<()> {
        latest::http::HostResponse::drop(self, this)
    }
}

impl secrets::Host for SandboxState {
    fn get(&mut self, name: String) -> Result<String, secrets::SecretError> {
        latest::secrets::Host::get(self, name).map_err(Into::into)
    }
}

impl signing::Host for SandboxState {
    fn sign(
        &mut self,
        key_name: String,
        alg: signing::Algorithm,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, signing::SigningError> {
        latest::signing::Host::sign(self, key_name, alg.into(), data).map_err(Into::into)
    }
}

impl state::Host for SandboxState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, state::StateError> {
        latest::state::Host::get(self, key).map_err(Into::into)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), state::StateError> {
        latest::state::Host::set(self, key, value).map_err(Into::into)
    }

    fn delete(&mut self, key: String) -> Result<(), state::StateError> {
        latest::state::Host::delete(self, key).map_err(Into::into)
    }
}

impl log::Host for SandboxState {
    fn enabled(&mut self, level: log::Level) -> bool {
        latest::log::Host::enabled(self, level.into())
    }

    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        latest::log::Host::log(self, level.into(), message, fields)
    }
}
