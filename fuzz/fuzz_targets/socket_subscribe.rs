//! The socket protocol's client line parser (`{"subscribe":{...}}`).
#![no_main]

use hark::events::protocol::Subscription;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The socket passes only valid UTF-8 lines (others disconnect the client).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let classes = vec!["speech".to_string(), "door".to_string()];
    for line in text.split('\n') {
        if let Ok(sub) = Subscription::parse(line, &classes) {
            if let Some(labels) = &sub.labels {
                assert!(labels.iter().all(|l| classes.contains(l)));
            }
        }
    }
});
