//! The cryptographic primitives authd builds on: the SCRAM hash family (HMAC, H, Hi), HMAC-MD5
//! from a precomputed state, constant-time comparison, and the OS random source.
//!
//! Everything here is a thin wrapper over RustCrypto crates (sha1, sha2, hmac, pbkdf2, subtle)
//! except HMAC-MD5, which runs on [`crate::md5`] so that it can resume from stored state.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::CryptoError;
use crate::md5::{BLOCK_LEN, Md5};

/// The hash function of a SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    /// Output length in bytes (the length of keys, proofs and signatures).
    pub(crate) fn len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// H(data).
    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// HMAC(key, parts concatenated).
    pub(crate) fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
        match self {
            ScramHash::Sha1 => hmac_parts::<Hmac<Sha1>>(key, parts),
            ScramHash::Sha256 => hmac_parts::<Hmac<Sha256>>(key, parts),
        }
    }

    /// Hi(password, salt, iterations) of RFC 5802 §2.2, i.e. PBKDF2 with this HMAC.
    pub(crate) fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        match self {
            ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
        }
        out
    }
}

/// HMAC with SHA-256, used as a keyed PRF for decoy credentials.
pub(crate) fn prf(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
    hmac_parts::<Hmac<Sha256>>(key, parts)
}

fn hmac_parts<M: Mac + hmac::digest::KeyInit>(
    key: &[u8],
    parts: &[&[u8]],
) -> Result<Vec<u8>, CryptoError> {
    // HMAC accepts keys of any length, so this never fails; the error is still carried rather than
    // unwrapped, because no code path here may panic.
    let mut mac =
        <M as hmac::digest::KeyInit>::new_from_slice(key).map_err(|_| CryptoError::HmacKey)?;
    for part in parts {
        mac.update(part);
    }
    Ok(mac.finalize().into_bytes().to_vec())
}

/// HMAC-MD5's two chaining states: MD5 after `key XOR ipad` and after `key XOR opad`.
pub(crate) fn hmac_md5_states(key: &[u8]) -> ([u32; 4], [u32; 4]) {
    let mut padded = [0u8; BLOCK_LEN];
    if key.len() > BLOCK_LEN {
        padded[..16].copy_from_slice(&crate::md5::digest(key));
    } else {
        padded[..key.len()].copy_from_slice(key);
    }
    let inner = padded.map(|b| b ^ 0x36);
    let outer = padded.map(|b| b ^ 0x5c);
    (
        Md5::state_after_block(&inner),
        Md5::state_after_block(&outer),
    )
}

/// HMAC-MD5(key, message), computed from the states of [`hmac_md5_states`].
pub(crate) fn hmac_md5_resume(inner: [u32; 4], outer: [u32; 4], message: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::resume(inner, 1);
    md5.update(message);
    let inner_digest = md5.finalize();
    let mut md5 = Md5::resume(outer, 1);
    md5.update(&inner_digest);
    md5.finalize()
}

/// Compares two byte strings in time independent of their contents.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// `N` bytes from the operating system's CSPRNG.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(CryptoError::Random)?;
    Ok(out)
}

/// XOR of two equal-length byte strings (the caller checks the lengths).
pub(crate) fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn hmac_md5(key: &[u8], message: &[u8]) -> String {
        let (inner, outer) = hmac_md5_states(key);
        hex(&hmac_md5_resume(inner, outer, message))
    }

    #[test]
    fn hmac_md5_matches_rfc_2202() {
        assert_eq!(
            hmac_md5(&[0x0b; 16], b"Hi There"),
            "9294727a3638bb1c13f48ef8158bfc9d"
        );
        assert_eq!(
            hmac_md5(b"Jefe", b"what do ya want for nothing?"),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        assert_eq!(
            hmac_md5(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"
        );
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2() {
        let mac = ScramHash::Sha256
            .hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"])
            .unwrap();
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hi_matches_rfc_6070() {
        let out = ScramHash::Sha1.salted_password(b"password", b"salt", 4096);
        assert_eq!(hex(&out), "4b007901b765489abead49d926f721d065a429c1");
    }

    #[test]
    fn compares_in_constant_time_with_correct_results() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
