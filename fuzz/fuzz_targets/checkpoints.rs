//! The checkpoint decoders of the plugins (bytes the host stored earlier,
//! or damaged ones): Symphony's binary format, slack-export's JSON and
//! chat-export's offset. A decoded checkpoint encodes back to bytes that
//! decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = symphony::checkpoint::Checkpoint::decode(data) {
        assert_eq!(symphony::checkpoint::Checkpoint::decode(&c.encode()), Ok(c));
    }
    if let Ok(c) = slack_export::reader::Checkpoint::decode(data) {
        let again = slack_export::reader::Checkpoint::decode(&c.encode()).ok();
        assert_eq!(again, Some(c));
    }
    if let Ok(offset) = chat_export::reader::decode_checkpoint(data) {
        let again = chat_export::reader::decode_checkpoint(&chat_export::reader::encode_checkpoint(offset)).ok();
        assert_eq!(again, Some(offset));
    }
});
