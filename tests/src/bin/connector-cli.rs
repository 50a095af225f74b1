//! The `connector` program, built inside the end-to-end test crate so that
//! its tests can run it as a real process
//! (`env!("CARGO_BIN_EXE_connector-cli")`): kill it, signal it, and run it
//! again. (Named apart from the host's `connector` so that the two binaries
//! do not collide in `target/`.)

fn main() -> std::process::ExitCode {
    connector_host::cli::main()
}
