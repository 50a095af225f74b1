//! The entry point of the `imap_responses` fuzz target (cargo feature
//! `fuzzing`): a whole session against a server that answers with the
//! fuzzer's bytes.

use std::io;

use connector_sink::Email;

use crate::append_uids;
use crate::client::{Client, ClientError, Conn};
use crate::codec::{self, Args};

/// Reads `server` as everything a server says, in order, while the client
/// greets, logs in, finds the delimiter, checks and examines a folder,
/// lists Message-IDs and appends two emails pipelined and one with a
/// synchronizing literal. Stops at the first error, as the sink drops the
/// connection then.
pub fn session(server: &[u8]) {
    let _ = run(server);
}

fn run(server: &[u8]) -> Result<(), ClientError> {
    let mut client = Client::over(Conn::Replay(io::Cursor::new(server.to_vec())))?;
    client.refresh_capabilities()?;
    client.authenticate("XOAUTH2", &codec::sasl_xoauth2("u", "t"))?;
    client.login("user", "pass\"word")?;
    let delimiter = client.delimiter()?;
    let _ = codec::server_folder_name("Archive/Sym&phony", delimiter);
    client.exists("INBOX")?;
    let _ = client.examine("INBOX")?;
    let _ = client.message_ids(1)?;
    let email = Email::from_bytes("m@x".into(), b"Subject: x\r\n\r\nbody\r\n".to_vec(), 0);
    let singles = vec![
        Client::append_args("INBOX", &[&email], true),
        Client::append_args("INBOX", &[&email], true),
    ];
    for status in client.pipeline(singles)? {
        let _ = append_uids(&status);
    }
    let done = client.command(Client::append_args("INBOX", &[&email, &email], false))?;
    let _ = append_uids(&done.status);
    client.command(Args::new("LOGOUT"))?;
    Ok(())
}
