//! See [`x2gobroker_frontend_fuzz::profiles`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| x2gobroker_frontend_fuzz::profiles(data));
