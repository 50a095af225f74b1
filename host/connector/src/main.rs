//! `connector`: runs source plugins into mailboxes. The program lives in
//! [`connector_host::cli`].

fn main() -> std::process::ExitCode {
    connector_host::cli::main()
}
