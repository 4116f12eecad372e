//! See [`x2gobroker_protocol_fuzz::decode`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| x2gobroker_protocol_fuzz::decode(data));
