//! Clients for the helper socket: a blocking one (SSH-mode CLI, admin CLI)
//! and a tokio one (HTTP daemon). Both perform the version handshake on
//! connect and apply a deadline to every exchange.

use crate::frame::FrameError;
use crate::message::{ErrorKind, ErrorReply, Request, Response};
use crate::PROTOCOL_VERSION;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Default deadline for one request/response exchange. PAM failures take
/// about two seconds; this leaves room for a slow PAM stack.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub enum ClientError {
    /// The socket could not be reached (helper not running, permissions).
    Connect(std::io::Error),
    Frame(FrameError),
    /// The helper answered with an error.
    Refused(ErrorReply),
    /// The helper answered something that does not fit the request.
    Unexpected(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "cannot connect to the auth helper: {e}"),
            ClientError::Frame(e) => write!(f, "auth helper connection: {e}"),
            ClientError::Refused(r) => write!(f, "{r}"),
            ClientError::Unexpected(s) => write!(f, "unexpected answer from the auth helper: {s}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        ClientError::Frame(e)
    }
}

fn check_hello(resp: Response) -> Result<(), ClientError> {
    match resp {
        Response::Hello { version, .. } if version == PROTOCOL_VERSION => Ok(()),
        Response::Hello { version, .. } => Err(ClientError::Refused(ErrorReply::new(
            ErrorKind::VersionMismatch { supported: version },
            format!("this client speaks version {PROTOCOL_VERSION}"),
        ))),
        Response::Error(e) => Err(ClientError::Refused(e)),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// Turns an `Error` response into `Err`, leaving every other answer.
pub fn into_result(resp: Response) -> Result<Response, ClientError> {
    match resp {
        Response::Error(e) => Err(ClientError::Refused(e)),
        other => Ok(other),
    }
}

pub mod blocking {
    use super::*;
    use crate::frame::blocking::{read_message, write_message};
    use std::os::unix::net::UnixStream;

    pub struct Client {
        stream: UnixStream,
    }

    impl Client {
        pub fn connect(path: &Path, timeout: Duration) -> Result<Self, ClientError> {
            let stream = UnixStream::connect(path).map_err(ClientError::Connect)?;
            stream
                .set_read_timeout(Some(timeout))
                .map_err(ClientError::Connect)?;
            stream
                .set_write_timeout(Some(timeout))
                .map_err(ClientError::Connect)?;
            let mut client = Client { stream };
            client.send(&Request::Hello {
                version: PROTOCOL_VERSION,
            })?;
            check_hello(client.receive()?)?;
            Ok(client)
        }

        pub fn send(&mut self, req: &Request) -> Result<(), ClientError> {
            Ok(write_message(&mut self.stream, req)?)
        }

        pub fn receive(&mut self) -> Result<Response, ClientError> {
            Ok(read_message(&mut self.stream)?)
        }

        /// One request, one answer; helper errors become `Err`.
        pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
            self.send(req)?;
            into_result(self.receive()?)
        }

        pub fn set_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
            self.stream.set_read_timeout(timeout)
        }
    }
}

#[cfg(feature = "tokio")]
pub mod nonblocking {
    use super::*;
    use crate::frame::nonblocking::{read_message, write_message};
    use tokio::net::UnixStream;
    use tokio::time::timeout as deadline;

    pub struct Client {
        stream: UnixStream,
        timeout: Duration,
    }

    impl Client {
        pub async fn connect(path: &Path, timeout: Duration) -> Result<Self, ClientError> {
            let stream = deadline(timeout, UnixStream::connect(path))
                .await
                .map_err(|_| ClientError::Frame(FrameError::TimedOut))?
                .map_err(ClientError::Connect)?;
            let mut client = Client { stream, timeout };
            let hello = client
                .exchange(&Request::Hello {
                    version: PROTOCOL_VERSION,
                })
                .await?;
            check_hello(hello)?;
            Ok(client)
        }

        async fn exchange(&mut self, req: &Request) -> Result<Response, ClientError> {
            let stream = &mut self.stream;
            deadline(self.timeout, async move {
                write_message(stream, req).await?;
                read_message(stream).await
            })
            .await
            .map_err(|_| ClientError::Frame(FrameError::TimedOut))?
            .map_err(ClientError::Frame)
        }

        /// One request, one answer; helper errors become `Err`.
        pub async fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
            into_result(self.exchange(req).await?)
        }
    }
}
