//! The frame: a 16-byte header and a payload, one per `SOCK_SEQPACKET` datagram.
//!
//! ```text
//! offset  size  field
//!      0     2  protocol version (little endian)
//!      2     1  kind (request, response, event, ping, pong, message)
//!      3     1  number of file descriptors attached to this datagram
//!      4     4  payload length (little endian)
//!      8     8  request id (little endian; 0 where unused)
//!     16     n  payload (codec-encoded), at most MAX_PAYLOAD bytes
//! ```
//! A datagram that is shorter or longer than its header says, carries another number of fds than
//! its header says, or names an unknown version or kind, is rejected: the channel is then closed.

/// Bumped on every change to the frame or the message catalogue.
pub const PROTOCOL_VERSION: u16 = 8;
/// Header size in bytes.
pub const HEADER_LEN: usize = 16;
/// Largest payload: bulk data moves as file descriptors, never inside frames.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Largest datagram.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD;

/// What a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Request = 1,
    Response = 2,
    Event = 3,
    Ping = 4,
    Pong = 5,
    /// A plain message of a typed [`crate::Channel`] (the setup handshake).
    Message = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Request,
            2 => Kind::Response,
            3 => Kind::Event,
            4 => Kind::Ping,
            5 => Kind::Pong,
            6 => Kind::Message,
            _ => return None,
        })
    }
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub fds: u8,
    pub len: u32,
    pub id: u64,
}

/// Why a datagram was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("truncated frame: {0} bytes, shorter than the {HEADER_LEN}-byte header")]
    ShortHeader(usize),
    #[error("protocol version {got}, expected {PROTOCOL_VERSION}")]
    Version { got: u16 },
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("frame length mismatch: header says {declared} payload bytes, datagram has {actual}")]
    Length { declared: u32, actual: usize },
    #[error("oversize frame: more than {MAX_FRAME} bytes")]
    Oversize,
    #[error("wrong fd count: header says {declared}, {actual} arrived")]
    FdCount { declared: u8, actual: usize },
    #[error("too many fds for one frame: {0}")]
    TooManyFds(usize),
}

impl Header {
    /// Writes the header followed by `payload` into one datagram.
    pub fn encode(kind: Kind, id: u64, fds: usize, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(FrameError::Oversize);
        }
        let fds = u8::try_from(fds)
            .ok()
            .filter(|n| usize::from(*n) <= sandbox::fdpass::MAX_FDS)
            .ok_or(FrameError::TooManyFds(fds))?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        out.push(kind as u8);
        out.push(fds);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(payload);
        Ok(out)
    }

    /// Checks a whole datagram and the number of fds that came with it; returns the header and
    /// the payload slice.
    pub fn decode(datagram: &[u8], fds_received: usize) -> Result<(Header, &[u8]), FrameError> {
        if datagram.len() > MAX_FRAME {
            return Err(FrameError::Oversize);
        }
        let Some((head, payload)) = datagram.split_first_chunk::<HEADER_LEN>() else {
            return Err(FrameError::ShortHeader(datagram.len()));
        };
        let version = u16::from_le_bytes([head[0], head[1]]);
        if version != PROTOCOL_VERSION {
            return Err(FrameError::Version { got: version });
        }
        let kind = Kind::from_u8(head[2]).ok_or(FrameError::Kind(head[2]))?;
        let fds = head[3];
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let id = u64::from_le_bytes([
            head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
        ]);
        if len as usize != payload.len() {
            return Err(FrameError::Length {
                declared: len,
                actual: payload.len(),
            });
        }
        if usize::from(fds) != fds_received {
            return Err(FrameError::FdCount {
                declared: fds,
                actual: fds_received,
            });
        }
        Ok((Header { kind, fds, len, id }, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_header_bytes() {
        let bytes = Header::encode(Kind::Request, 0x0102, 2, b"ab").unwrap();
        assert_eq!(
            bytes,
            [8, 0, 1, 2, 2, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, b'a', b'b']
        );
        let (h, p) = Header::decode(&bytes, 2).unwrap();
        assert_eq!(
            (h.kind, h.fds, h.len, h.id, p),
            (Kind::Request, 2, 2, 0x0102, &b"ab"[..])
        );
    }

    #[test]
    fn rejects_malformed_datagrams() {
        let good = Header::encode(Kind::Event, 7, 0, b"xyz").unwrap();
        assert_eq!(
            Header::decode(&good[..10], 0),
            Err(FrameError::ShortHeader(10))
        );
        assert!(matches!(
            Header::decode(&good[..good.len() - 1], 0),
            Err(FrameError::Length {
                declared: 3,
                actual: 2
            })
        ));
        assert!(matches!(
            Header::decode(&good, 1),
            Err(FrameError::FdCount {
                declared: 0,
                actual: 1
            })
        ));
        let mut bad_version = good.clone();
        bad_version[0] = 9;
        assert_eq!(
            Header::decode(&bad_version, 0),
            Err(FrameError::Version { got: 9 })
        );
        let mut bad_kind = good.clone();
        bad_kind[2] = 0xee;
        assert_eq!(Header::decode(&bad_kind, 0), Err(FrameError::Kind(0xee)));
        assert_eq!(
            Header::decode(&vec![0; MAX_FRAME + 1], 0),
            Err(FrameError::Oversize)
        );
    }

    #[test]
    fn refuses_to_build_oversize_frames() {
        assert_eq!(
            Header::encode(Kind::Event, 0, 0, &vec![0; MAX_PAYLOAD + 1]),
            Err(FrameError::Oversize)
        );
        assert_eq!(
            Header::encode(Kind::Event, 0, 300, b""),
            Err(FrameError::TooManyFds(300))
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), fds in 0usize..4) {
            let _ = Header::decode(&bytes, fds);
        }
    }
}
