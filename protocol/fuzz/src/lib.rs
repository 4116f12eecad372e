//! The decode target's body: the helper's frame decoder with arbitrary
//! bytes must never panic or over-allocate (libFuzzer's -rss_limit_mb
//! catches that), and whatever it accepts must survive an encode/decode
//! round trip unchanged. (Byte-identical re-encoding is not asserted:
//! bincode's varints accept non-minimal forms, which is harmless because
//! the decoded value is what the helper acts on.) The stable corpus replay
//! test (frontend/tests/fuzz_corpora.rs) includes this file as a module.
#![forbid(unsafe_code)]

use x2gobroker_protocol::{decode as decode_frame, encode, Request, Response, WorkerJob};

fn check<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(message) = decode_frame::<T>(data) {
        let frame = encode(&message).expect("a decoded message re-encodes");
        assert!(frame.len() <= data.len(), "re-encoding grew for {message:?}");
        assert_eq!(decode_frame::<T>(&frame).expect("re-decodes"), message);
    }
}

/// One frame as each of the three message types.
pub fn decode(data: &[u8]) {
    check::<Request>(data);
    check::<Response>(data);
    check::<WorkerJob>(data);
}
