//! The TSV readers of `hark eval`: event lists, durations and score tables.
#![no_main]

use std::path::Path;

use hark::metrics::tsv::{parse_events, parse_score_table, read_durations};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|text: &str| {
    let path = Path::new("fuzz.tsv");
    if let Ok(list) = parse_events(path, text) {
        for e in &list.events {
            assert!(e.onset <= e.offset, "{e:?}");
        }
        let _ = list.files();
    }
    let _ = parse_score_table(path, text);
    let p = common::scratch("durations.tsv", text.as_bytes());
    let _ = read_durations(&p);
});
