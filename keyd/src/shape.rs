//! What keyd agrees to sign for TLS: only messages shaped like a server's TLS 1.3
//! CertificateVerify input or a TLS 1.2 ServerKeyExchange signature input. A network role that
//! asks keyd to sign anything else (a forged message, a challenge from an attacker) is refused:
//! holding a key in keyd is only worth it if keyd is not a signing oracle.

/// The kinds of input keyd signs for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsSignable {
    /// RFC 8446 §4.4.3: 64 spaces, the context string, a zero byte, the transcript hash.
    Tls13CertificateVerify,
    /// RFC 5246 §7.4.3 / RFC 8422 §5.4: client random, server random, ECDHE parameters.
    Tls12ServerKeyExchange,
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("not a TLS 1.3 server CertificateVerify nor a TLS 1.2 ServerKeyExchange ({0})")]
    Unrecognized(&'static str),
}

const TLS13_CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify";

/// Classifies `message`, refusing anything that is not one of the two shapes.
pub fn classify(message: &[u8]) -> Result<TlsSignable, ShapeError> {
    if message.len() > 64 && message[..64].iter().all(|b| *b == b' ') {
        let rest = &message[64..];
        let Some(hash) = rest
            .strip_prefix(TLS13_CONTEXT)
            .and_then(|r| r.strip_prefix(&[0u8]))
        else {
            return Err(ShapeError::Unrecognized(
                "64 spaces without the server context string",
            ));
        };
        // SHA-256 or SHA-384 transcript hashes (the TLS 1.3 cipher suites' hashes).
        return match hash.len() {
            32 | 48 => Ok(TlsSignable::Tls13CertificateVerify),
            _ => Err(ShapeError::Unrecognized(
                "transcript hash of an unexpected length",
            )),
        };
    }
    // client_random(32) server_random(32) curve_type(1)=named_curve(3) named_curve(2)
    // public key length(1) public key.
    let params = message
        .get(64..)
        .ok_or(ShapeError::Unrecognized("too short"))?;
    let Some((&[curve_type, hi, lo, len], point)) = params.split_first_chunk::<4>() else {
        return Err(ShapeError::Unrecognized("too short"));
    };
    if curve_type != NAMED_CURVE {
        return Err(ShapeError::Unrecognized("not named-curve ECDHE parameters"));
    }
    let group = u16::from_be_bytes([hi, lo]);
    let (_, share) =
        TLS12_GROUPS
            .iter()
            .find(|(g, _)| *g == group)
            .ok_or(ShapeError::Unrecognized(
                "a named group not offered in TLS 1.2",
            ))?;
    if usize::from(len) != share.len() || point.len() != share.len() {
        return Err(ShapeError::Unrecognized("key share of the wrong length"));
    }
    if let Share::Uncompressed { .. } = share
        && point.first() != Some(&UNCOMPRESSED)
    {
        return Err(ShapeError::Unrecognized(
            "NIST curve point not in uncompressed form",
        ));
    }
    Ok(TlsSignable::Tls12ServerKeyExchange)
}

/// RFC 8422 §5.4 `ECCurveType.named_curve`, the only type TLS 1.2 servers send today.
const NAMED_CURVE: u8 = 3;

/// SEC 1 §2.3.3: the first byte of an uncompressed point. RFC 8422 §5.1.2 makes it the only
/// format allowed for the NIST curves (compressed forms are deprecated, hybrid ones never valid).
const UNCOMPRESSED: u8 = 0x04;

/// How a group's ECDHE public key is written in a ServerKeyExchange.
#[derive(Debug, Clone, Copy)]
enum Share {
    /// A NIST curve: the format byte 0x04, then x and y of `coordinate` bytes each.
    Uncompressed { coordinate: usize },
    /// RFC 8422 §5.11 (x25519, x448): the raw u-coordinate, no format byte.
    Raw(usize),
}

impl Share {
    const fn len(self) -> usize {
        match self {
            Share::Uncompressed { coordinate } => 1 + 2 * coordinate,
            Share::Raw(len) => len,
        }
    }
}

/// The groups a TLS 1.2 handshake of ours can use: those rustls offers for TLS 1.2 (x448 and
/// secp521r1 are not among them; X25519MLKEM768 exists only in TLS 1.3). Anything else in a
/// ServerKeyExchange is not one of our handshakes, so keyd has no reason to sign it.
const TLS12_GROUPS: &[(u16, Share)] = &[
    (0x001d, Share::Raw(32)),                         // x25519
    (0x0017, Share::Uncompressed { coordinate: 32 }), // secp256r1
    (0x0018, Share::Uncompressed { coordinate: 48 }), // secp384r1
];

#[cfg(test)]
mod tests {
    use super::*;

    fn tls13(hash_len: usize) -> Vec<u8> {
        let mut m = vec![b' '; 64];
        m.extend_from_slice(TLS13_CONTEXT);
        m.push(0);
        m.extend(std::iter::repeat_n(0xab, hash_len));
        m
    }

    /// A ServerKeyExchange input for `group` whose point is `first` then `len - 1` more bytes.
    fn tls12(group: u16, first: u8, len: usize) -> Vec<u8> {
        let mut m = vec![7u8; 64];
        m.push(NAMED_CURVE);
        m.extend_from_slice(&group.to_be_bytes());
        m.push(len as u8);
        if len > 0 {
            m.push(first);
            m.extend(std::iter::repeat_n(0x5a, len - 1));
        }
        m
    }

    #[test]
    fn accepts_the_two_server_shapes() {
        for (input, what) in [
            (tls13(32), "TLS 1.3, SHA-256 transcript"),
            (tls13(48), "TLS 1.3, SHA-384 transcript"),
            (tls12(0x001d, 0x00, 32), "x25519, raw (any first byte)"),
            (
                tls12(0x001d, 0x04, 32),
                "x25519 whose first byte happens to be 4",
            ),
            (tls12(0x0017, 0x04, 65), "secp256r1, uncompressed"),
            (tls12(0x0018, 0x04, 97), "secp384r1, uncompressed"),
        ] {
            let expected = if input[0] == b' ' {
                TlsSignable::Tls13CertificateVerify
            } else {
                TlsSignable::Tls12ServerKeyExchange
            };
            assert_eq!(classify(&input), Ok(expected), "{what}");
        }
    }

    #[test]
    fn refuses_tls12_points_of_a_wrong_form_length_or_group() {
        for (input, what) in [
            (
                tls12(0x0017, 0x02, 65),
                "secp256r1, compressed format byte at full length",
            ),
            (
                tls12(0x0017, 0x03, 65),
                "secp256r1, compressed format byte (odd y)",
            ),
            (tls12(0x0017, 0x06, 65), "secp256r1, hybrid format byte"),
            (tls12(0x0017, 0x00, 65), "secp256r1, point at infinity byte"),
            (tls12(0x0018, 0x02, 97), "secp384r1, compressed format byte"),
            (tls12(0x0018, 0x07, 97), "secp384r1, hybrid format byte"),
            (
                tls12(0x0017, 0x02, 33),
                "secp256r1, a genuinely compressed point",
            ),
            (tls12(0x0017, 0x04, 97), "secp256r1 with a secp384r1 length"),
            (tls12(0x0018, 0x04, 65), "secp384r1 with a secp256r1 length"),
            (tls12(0x0017, 0x04, 32), "secp256r1 with an x25519 length"),
            (tls12(0x001d, 0x04, 65), "x25519 with a NIST length"),
            (tls12(0x001d, 0x00, 31), "x25519, one byte short"),
            (tls12(0x001e, 0x00, 56), "x448: not offered by rustls"),
            (tls12(0x0019, 0x04, 133), "secp521r1: not offered by rustls"),
            (tls12(0x11ec, 0x00, 255), "X25519MLKEM768: TLS 1.3 only"),
            (tls12(0x9999, 0x04, 65), "an unknown group"),
            (tls12(0x0017, 0x04, 0), "an empty point"),
        ] {
            assert!(classify(&input).is_err(), "{what}");
        }
    }

    #[test]
    fn refuses_arbitrary_and_client_inputs() {
        let mut client = vec![b' '; 64];
        client.extend_from_slice(b"TLS 1.3, client CertificateVerify\0");
        client.extend([0u8; 32]);
        let mut trailing = tls12(0x001d, 0, 32);
        trailing.push(0);
        let mut explicit_curve = tls12(0x001d, 0, 32);
        explicit_curve[64] = 1;
        let mut short_point = tls12(0x0017, 0x04, 65);
        short_point.pop();
        for (input, what) in [
            (b"sign me, please".to_vec(), "arbitrary bytes"),
            (Vec::new(), "nothing"),
            (vec![b' '; 64], "64 spaces alone"),
            (client, "a client CertificateVerify"),
            (tls13(31), "a TLS 1.3 hash of 31 bytes"),
            (tls13(64), "a TLS 1.3 hash of 64 bytes"),
            (trailing, "a byte after the point"),
            (explicit_curve, "explicit_prime curve parameters"),
            (short_point, "a point shorter than its length byte"),
            (vec![7u8; 67], "randoms and a truncated curve"),
        ] {
            assert!(classify(&input).is_err(), "{what}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = classify(&bytes);
        }

        #[test]
        fn a_nist_point_is_accepted_only_in_uncompressed_form(first in proptest::prelude::any::<u8>()) {
            proptest::prop_assert_eq!(classify(&tls12(0x0017, first, 65)).is_ok(), first == UNCOMPRESSED);
        }
    }
}
