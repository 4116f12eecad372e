//! See [`x2gobroker_frontend_fuzz::agent_answer`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| x2gobroker_frontend_fuzz::agent_answer(data));
