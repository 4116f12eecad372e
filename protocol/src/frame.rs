//! Framing and the codec. `encode` and `decode` are the only functions that
//! know bincode; swapping the codec means changing this file alone.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// Largest payload accepted or produced, in bytes.
pub const MAX_FRAME_LEN: usize = 64 * 1024;
/// Bytes of the big-endian length prefix.
pub const PREFIX_LEN: usize = 4;

#[derive(Debug)]
pub enum FrameError {
    /// Announced or produced payload larger than [`MAX_FRAME_LEN`].
    TooLarge(usize),
    /// Fewer bytes than the prefix announces (or no complete prefix).
    Truncated,
    /// More bytes than the prefix announces, or payload bytes the message
    /// did not consume.
    TrailingBytes,
    /// The payload is not a valid message.
    Malformed(String),
    /// The peer closed the connection before a frame began.
    Closed,
    /// The peer did not complete a frame in time.
    TimedOut,
    Io(std::io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the limit of {MAX_FRAME_LEN}"),
            FrameError::Truncated => f.write_str("truncated frame"),
            FrameError::TrailingBytes => f.write_str("trailing bytes after the message"),
            FrameError::Malformed(e) => write!(f, "malformed message: {e}"),
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::TimedOut => f.write_str("timed out"),
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => FrameError::TimedOut,
            _ => FrameError::Io(e),
        }
    }
}

fn codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(MAX_FRAME_LEN as u64)
        .with_big_endian()
        .with_varint_encoding()
        .reject_trailing_bytes()
}

/// Encodes `msg` into a complete frame (length prefix + payload). The buffer
/// is wiped on drop because a frame may carry a password.
pub fn encode<T: Serialize>(msg: &T) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let payload = Zeroizing::new(codec().serialize(msg).map_err(|e| match *e {
        bincode::ErrorKind::SizeLimit => FrameError::TooLarge(MAX_FRAME_LEN + 1),
        other => FrameError::Malformed(other.to_string()),
    })?);
    if payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(payload.len()));
    }
    let mut frame = Zeroizing::new(Vec::with_capacity(PREFIX_LEN + payload.len()));
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Decodes one complete frame. Rejects oversized, truncated and padded frames.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    let len = payload_len(frame.get(..PREFIX_LEN).ok_or(FrameError::Truncated)?)?;
    let payload = &frame[PREFIX_LEN..];
    match payload.len().cmp(&len) {
        std::cmp::Ordering::Less => return Err(FrameError::Truncated),
        std::cmp::Ordering::Greater => return Err(FrameError::TrailingBytes),
        std::cmp::Ordering::Equal => {}
    }
    codec().deserialize(payload).map_err(|e| match *e {
        bincode::ErrorKind::SizeLimit => FrameError::TooLarge(len),
        bincode::ErrorKind::Custom(ref m) if m.contains("remaining") => FrameError::TrailingBytes,
        other => FrameError::Malformed(other.to_string()),
    })
}

/// Reads the payload length from a prefix, enforcing the size limit before
/// any payload memory is allocated.
pub fn payload_len(prefix: &[u8]) -> Result<usize, FrameError> {
    let bytes: [u8; PREFIX_LEN] = prefix.try_into().map_err(|_| FrameError::Truncated)?;
    let len = u32::from_be_bytes(bytes) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Blocking frame I/O on any `Read`/`Write` (timeouts come from the socket).
pub mod blocking {
    use super::*;
    use std::io::{Read, Write};

    pub fn read_frame<R: Read>(r: &mut R) -> Result<Zeroizing<Vec<u8>>, FrameError> {
        let mut prefix = [0u8; PREFIX_LEN];
        let mut got = 0;
        while got < PREFIX_LEN {
            match r.read(&mut prefix[got..]) {
                Ok(0) if got == 0 => return Err(FrameError::Closed),
                Ok(0) => return Err(FrameError::Truncated),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let len = payload_len(&prefix)?;
        let mut frame = Zeroizing::new(vec![0u8; PREFIX_LEN + len]);
        frame[..PREFIX_LEN].copy_from_slice(&prefix);
        r.read_exact(&mut frame[PREFIX_LEN..])?;
        Ok(frame)
    }

    pub fn read_message<T: DeserializeOwned, R: Read>(r: &mut R) -> Result<T, FrameError> {
        decode(&read_frame(r)?)
    }

    pub fn write_message<T: Serialize, W: Write>(w: &mut W, msg: &T) -> Result<(), FrameError> {
        w.write_all(&encode(msg)?)?;
        w.flush()?;
        Ok(())
    }
}

/// Async frame I/O for tokio streams. Callers wrap these in deadlines.
#[cfg(feature = "tokio")]
pub mod nonblocking {
    use super::*;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Zeroizing<Vec<u8>>, FrameError> {
        let mut prefix = [0u8; PREFIX_LEN];
        let mut got = 0;
        while got < PREFIX_LEN {
            match r.read(&mut prefix[got..]).await? {
                0 if got == 0 => return Err(FrameError::Closed),
                0 => return Err(FrameError::Truncated),
                n => got += n,
            }
        }
        let len = payload_len(&prefix)?;
        let mut frame = Zeroizing::new(vec![0u8; PREFIX_LEN + len]);
        frame[..PREFIX_LEN].copy_from_slice(&prefix);
        r.read_exact(&mut frame[PREFIX_LEN..]).await?;
        Ok(frame)
    }

    pub async fn read_message<T: DeserializeOwned, R: AsyncRead + Unpin>(r: &mut R) -> Result<T, FrameError> {
        decode(&read_frame(r).await?)
    }

    pub async fn write_message<T: Serialize, W: AsyncWrite + Unpin>(
        w: &mut W,
        msg: &T,
    ) -> Result<(), FrameError> {
        w.write_all(&encode(msg)?).await?;
        w.flush().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::*;
    use crate::secret::Password;

    #[test]
    fn oversized_prefix_is_rejected_before_allocation() {
        let frame = (u32::MAX).to_be_bytes();
        assert!(matches!(decode::<Request>(&frame), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn truncated_and_padded_frames_are_rejected() {
        let good = encode(&Request::Status).unwrap();
        assert!(matches!(
            decode::<Request>(&good[..good.len() - 1]),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            decode::<Request>(&good[..2]),
            Err(FrameError::Truncated)
        ));
        let mut padded = good.to_vec();
        padded.push(0);
        assert!(matches!(
            decode::<Request>(&padded),
            Err(FrameError::TrailingBytes)
        ));
    }

    #[test]
    fn payload_with_unconsumed_bytes_is_rejected() {
        // A correct prefix over a payload that holds one message plus garbage.
        let msg = encode(&Request::Status).unwrap();
        let mut payload = msg[PREFIX_LEN..].to_vec();
        payload.push(7);
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        assert!(matches!(
            decode::<Request>(&frame),
            Err(FrameError::TrailingBytes)
        ));
    }

    #[test]
    fn oversized_message_cannot_be_encoded() {
        let req = Request::Authenticate(AuthRequest {
            user: "u".repeat(MAX_FRAME_LEN + 1),
            password: Password::from("x"),
            service: None,
            client_address: None,
        });
        assert!(matches!(encode(&req), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn string_length_lies_do_not_allocate() {
        // Variant 1 (Authenticate) followed by a string claiming 2^60 bytes.
        let payload = [1u8, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10];
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        assert!(decode::<Request>(&frame).is_err());
    }

    #[test]
    fn blocking_stream_round_trip_and_eof() {
        let mut buf = Vec::new();
        blocking::write_message(&mut buf, &Request::Hello { version: 1 }).unwrap();
        blocking::write_message(&mut buf, &Request::Status).unwrap();
        let mut r = std::io::Cursor::new(buf);
        assert_eq!(
            blocking::read_message::<Request, _>(&mut r).unwrap(),
            Request::Hello { version: 1 }
        );
        assert_eq!(
            blocking::read_message::<Request, _>(&mut r).unwrap(),
            Request::Status
        );
        assert!(matches!(
            blocking::read_message::<Request, _>(&mut r),
            Err(FrameError::Closed)
        ));
    }
}
