//! Native source plugins: shared libraries loaded into the host process
//! through a small, versioned C ABI (`connector_native.h`), for trusted
//! sources that cannot be WebAssembly components (a vendor's C library, a
//! driver that needs raw sockets).
//!
//! A native plugin runs with the host's privileges and outside any sandbox:
//! no memory cap, no deadline, no file or network isolation. The host
//! therefore loads one only when its manifest says `kind = "native"` **and**
//! the operator's connector file sets `[grants] trusted-native = true`; the
//! library's SHA-256 is pinned by the manifest like a wasm component's.
//!
//! What the host still does for it: it checks the ABI version before calling
//! anything else, never lets a Rust panic cross the boundary
//! (`catch_unwind` around every call), performs `fetch` attachment downloads
//! under the manifest's declared ∩ granted hosts, and never unloads a
//! library (it stays mapped until the process ends, so no code or static can
//! disappear under a running session).

#![warn(missing_docs)]

pub mod abi;
mod plugin;

pub use abi::SUPPORTED_ABI_VERSIONS;
pub use plugin::{NativePlugin, NativeSession};
