//! The one place that knows the payload encoding (bincode 2.0.1 with serde, pinned exactly).
//!
//! bincode is unmaintained (RUSTSEC-2025-0141); swapping it (e.g. for postcard) touches this file
//! and the golden bytes in the catalogue tests, nothing else.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::frame::MAX_PAYLOAD;

/// Errors turning a value into bytes or back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encoding: {0}")]
    Encode(String),
    #[error("undecodable payload: {0}")]
    Decode(String),
    #[error("payload has {0} trailing bytes")]
    TrailingBytes(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<MAX_PAYLOAD>()
}

/// Encodes `value`; fails if it would exceed the frame payload limit.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes exactly `bytes` into a `T`: trailing bytes are an error, as is anything malformed.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

/// The largest record a role keeps on disk in this encoding.
pub const MAX_RECORD: usize = 16 * 1024 * 1024;

fn record_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<MAX_RECORD>()
}

/// Like [`encode`], for records on disk: up to [`MAX_RECORD`] bytes instead of one frame.
pub fn encode_unbounded<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, record_config())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Like [`decode`], for records on disk.
pub fn decode_unbounded<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, record_config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Sample {
        A,
        B { n: u32, s: String },
    }

    #[test]
    fn round_trips() {
        let v = Sample::B {
            n: 300,
            s: "x".into(),
        };
        let bytes = encode(&v).unwrap();
        assert_eq!(bytes, [1, 251, 44, 1, 1, b'x']);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), v);
        assert_eq!(decode::<Sample>(&[0]).unwrap(), Sample::A);
    }

    #[test]
    fn rejects_trailing_bytes() {
        assert!(matches!(
            decode::<Sample>(&[0, 0]),
            Err(CodecError::TrailingBytes(1))
        ));
    }

    #[test]
    fn rejects_unknown_variant_and_truncation() {
        assert!(matches!(decode::<Sample>(&[9]), Err(CodecError::Decode(_))));
        assert!(matches!(
            decode::<Sample>(&[1, 5]),
            Err(CodecError::Decode(_))
        ));
    }

    #[test]
    fn refuses_huge_declared_lengths() {
        // A string claiming 2^32 bytes must fail without allocating it.
        let bytes = [1u8, 0, 252, 0, 0, 0, 0, 1];
        assert!(decode::<Sample>(&bytes).is_err());
    }
}
