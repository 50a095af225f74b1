//! What an IMAP server answers (greeting, capabilities, LIST, EXAMINE,
//! FETCH, APPENDUID, literals of any announced size), as the IMAP sink's
//! client reads it through a whole session.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    connector_sink_imap::fuzzing::session(data);
});
