//! Arbitrary bytes into every mpesa endpoint's parser: it must answer Ok or Err, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmo_actors::providers::by_slug;

fuzz_target!(|body: &[u8]| {
    let provider = by_slug("mpesa").expect("registered provider");
    for endpoint in provider.endpoints() {
        let _ = provider.parse(endpoint.callback_type, body);
    }
});
