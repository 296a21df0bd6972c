//! The socket side of a connection: plain TCP or TLS (implicit, or after STARTTLS), a read
//! buffer that lines are cut from, and an output buffer flushed only before the server would
//! wait for the client (so pipelined commands get their replies in one write).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::reply::Reply;

/// How long closing may take (the last reply, TLS close_notify).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("the client closed the connection")]
    Closed,
    #[error("the client was silent for {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Between taking the TCP stream and the end of the handshake.
    Gone,
}

/// A line, or what was left of one longer than the limit.
pub enum Line {
    Ok(Vec<u8>),
    TooLong,
}

pub struct Conn {
    stream: Stream,
    /// Input not consumed yet.
    pub input: Vec<u8>,
    output: Vec<u8>,
    pub timeout: Duration,
    pub peer: SocketAddr,
}

impl Conn {
    pub fn new(tcp: TcpStream, peer: SocketAddr, timeout: Duration) -> Conn {
        Conn {
            stream: Stream::Plain(tcp),
            input: Vec::with_capacity(4096),
            output: Vec::with_capacity(1024),
            timeout,
            peer,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Handshakes as the server; before that the read buffer must be empty (RFC 3207 §4.2:
    /// nothing sent before the handshake may be acted on).
    pub async fn start_tls(&mut self, config: Arc<ServerConfig>) -> Result<(), ConnError> {
        self.input.clear();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(ConnError::Tls("TLS is already active".into()));
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| ConnError::Tls("handshake timed out".into()))?
            .map_err(|e| ConnError::Tls(e.to_string()))?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// "TLSv1.3 with cipher TLS13_AES_128_GCM_SHA256", for the Received line.
    pub fn tls_summary(&self) -> Option<String> {
        let Stream::Tls(tls) = &self.stream else {
            return None;
        };
        let c = tls.get_ref().1;
        let version = c
            .protocol_version()
            .map(|v| format!("{v:?}").replace("TLSv1_", "TLSv1."));
        let suite = c
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()));
        Some(format!(
            "{} with cipher {}",
            version.unwrap_or_default(),
            suite.unwrap_or_default()
        ))
    }

    /// The RFC 9266 `tls-exporter` channel binding.
    pub fn channel_binding(&self) -> Option<Vec<u8>> {
        let Stream::Tls(tls) = &self.stream else {
            return None;
        };
        tls.get_ref()
            .1
            .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()
    }

    /// Reads more input, waiting at most the timeout.
    pub async fn fill(&mut self) -> Result<(), ConnError> {
        self.fill_up_to(16 * 1024).await
    }

    /// Like [`Conn::fill`], reading up to `room` bytes at once, straight into the input buffer
    /// (a message body arrives in few reads with 64 KiB).
    pub async fn fill_up_to(&mut self, room: usize) -> Result<(), ConnError> {
        self.input.reserve(room);
        let input = &mut self.input;
        let read = async {
            match &mut self.stream {
                Stream::Plain(s) => s.read_buf(input).await,
                Stream::Tls(s) => s.read_buf(input).await,
                Stream::Gone => Ok(0),
            }
        };
        let n = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| ConnError::Timeout(self.timeout))??;
        if n == 0 {
            return Err(ConnError::Closed);
        }
        Ok(())
    }

    /// Whether a whole line is buffered (then replies need not be flushed yet).
    pub fn has_line(&self) -> bool {
        self.input.contains(&b'\n')
    }

    /// The next line without its line end (CRLF; a bare LF is tolerated in commands).
    pub async fn line(&mut self, max: usize) -> Result<Line, ConnError> {
        let mut skipping = false;
        loop {
            if let Some(i) = self.input.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.input.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(if skipping || line.len() > max {
                    Line::TooLong
                } else {
                    Line::Ok(line)
                });
            }
            if self.input.len() > max + 2 {
                skipping = true;
                self.input.clear();
            }
            self.fill().await?;
        }
    }

    pub fn queue(&mut self, reply: &Reply) {
        self.output.extend_from_slice(reply.to_wire().as_bytes());
    }

    pub async fn flush(&mut self) -> Result<(), ConnError> {
        if self.output.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.output);
        let write = async {
            match &mut self.stream {
                Stream::Plain(s) => s.write_all(&out).await,
                Stream::Tls(s) => {
                    s.write_all(&out).await?;
                    s.flush().await
                }
                Stream::Gone => Ok(()),
            }
        };
        tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| ConnError::Timeout(self.timeout))??;
        self.output = out;
        self.output.clear();
        Ok(())
    }

    /// Sends what is queued and closes the connection, waiting at most a few seconds for a
    /// client that does not read.
    pub async fn close(mut self) {
        let close = async {
            let _ = self.flush().await;
            match &mut self.stream {
                Stream::Plain(s) => {
                    let _ = s.shutdown().await;
                }
                Stream::Tls(s) => {
                    let _ = s.shutdown().await;
                }
                Stream::Gone => {}
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }
}
