//! Fuzzes the helper's frame decoder with arbitrary bytes: it must never
//! panic or over-allocate (libFuzzer's -rss_limit_mb catches that), and
//! whatever it accepts must survive an encode/decode round trip unchanged.
//! (Byte-identical re-encoding is not asserted: bincode's varints accept
//! non-minimal forms, which is harmless because the decoded value is what
//! the helper acts on.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use x2gobroker_protocol::{decode, encode, Request, Response, WorkerJob};

fn check<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(message) = decode::<T>(data) {
        let frame = encode(&message).expect("a decoded message re-encodes");
        assert!(frame.len() <= data.len(), "re-encoding grew for {message:?}");
        assert_eq!(decode::<T>(&frame).expect("re-decodes"), message);
    }
}

fuzz_target!(|data: &[u8]| {
    check::<Request>(data);
    check::<Response>(data);
    check::<WorkerJob>(data);
});
