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
    if curve_type != 3 {
        return Err(ShapeError::Unrecognized("not named-curve ECDHE parameters"));
    }
    let expected = match u16::from_be_bytes([hi, lo]) {
        0x001d => 32,        // x25519
        0x0017 => 65,        // secp256r1, uncompressed
        0x0018 => 97,        // secp384r1, uncompressed
        0x11ec => 32 + 1184, // X25519MLKEM768 is TLS 1.3 only; refused by length anyway
        _ => return Err(ShapeError::Unrecognized("unknown named group")),
    };
    if usize::from(len) != expected || point.len() != expected {
        return Err(ShapeError::Unrecognized("key share of the wrong length"));
    }
    Ok(TlsSignable::Tls12ServerKeyExchange)
}

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

    fn tls12(group: u16, point: usize) -> Vec<u8> {
        let mut m = vec![7u8; 64];
        m.push(3);
        m.extend_from_slice(&group.to_be_bytes());
        m.push(point as u8);
        m.extend(std::iter::repeat_n(4, point));
        m
    }

    #[test]
    fn accepts_the_two_server_shapes() {
        assert_eq!(
            classify(&tls13(32)),
            Ok(TlsSignable::Tls13CertificateVerify)
        );
        assert_eq!(
            classify(&tls13(48)),
            Ok(TlsSignable::Tls13CertificateVerify)
        );
        assert_eq!(
            classify(&tls12(0x001d, 32)),
            Ok(TlsSignable::Tls12ServerKeyExchange)
        );
        assert_eq!(
            classify(&tls12(0x0017, 65)),
            Ok(TlsSignable::Tls12ServerKeyExchange)
        );
    }

    #[test]
    fn refuses_arbitrary_and_client_inputs() {
        let mut client = vec![b' '; 64];
        client.extend_from_slice(b"TLS 1.3, client CertificateVerify\0");
        client.extend([0u8; 32]);
        for bad in [
            b"sign me, please".to_vec(),
            Vec::new(),
            vec![b' '; 64],
            client,
            tls13(31),
            tls13(64),
            tls12(0x001d, 31),
            tls12(0x0017, 32),
            tls12(0x9999, 32),
            {
                let mut m = tls12(0x001d, 32);
                m.push(0);
                m
            },
            {
                let mut m = tls12(0x001d, 32);
                m[64] = 1;
                m
            },
        ] {
            assert!(classify(&bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = classify(&bytes);
        }
    }
}
