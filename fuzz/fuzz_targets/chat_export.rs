//! A chat export in JSON Lines, paged through as the plugin does (from the
//! start and from an offset inside it), plus its checkpoint decoder.
#![no_main]

use chat_export::reader::{PageReader, decode_checkpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_checkpoint(data);
    for start in [0, data.len() as u64 / 2] {
        let Ok(mut reader) = PageReader::new(data, start, 3) else {
            continue;
        };
        // Every page reads at least one line or ends the export.
        for _ in 0..=data.len() + 1 {
            match reader.next_page() {
                Ok(page) if page.complete => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
});
