//! Arbitrary bytes into every mpesa endpoint's parser, and what it accepts through the BSON writer
//! (see `common.rs`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    common::every_endpoint("mpesa", body);
});
