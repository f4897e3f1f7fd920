//! Fuzz target `model_load`: see `tests/fuzz_cases/mod.rs` (shared with the regression
//! replay in `tests/fuzz_regressions.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_cases/mod.rs"]
mod fuzz_cases;

fuzz_target!(|data: &[u8]| fuzz_cases::model_load(data));
