//! CRAM-MD5 (RFC 2195): the server sends `<random.timestamp@hostname>`, the client answers
//! `username SP hex(HMAC-MD5(password, challenge))`.
//!
//! The check runs from the stored HMAC-MD5 chaining states, never from the password.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{AuthFailure, SaslError, Step};
use crate::credentials::CredentialLookup;
use crate::crypto;
use crate::error::CryptoError;

/// Waiting for the response to `challenge`.
#[derive(Debug)]
pub(super) struct CramMd5 {
    challenge: Vec<u8>,
}

impl CramMd5 {
    /// Creates the challenge.
    pub(super) fn start(hostname: &str) -> Result<(Self, Vec<u8>), CryptoError> {
        let random = u64::from_be_bytes(crypto::random()?);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Self::with_challenge(format!("<{random}.{now}@{hostname}>")))
    }

    pub(super) fn with_challenge(challenge: String) -> (Self, Vec<u8>) {
        let challenge = challenge.into_bytes();
        (
            CramMd5 {
                challenge: challenge.clone(),
            },
            challenge,
        )
    }

    /// Checks the client's response.
    pub(super) fn step(self, input: &[u8], creds: &dyn CredentialLookup) -> Step {
        match self.check(input, creds) {
            Ok(step) | Err(step) => step,
        }
    }

    fn check(&self, input: &[u8], creds: &dyn CredentialLookup) -> Result<Step, Step> {
        let text = std::str::from_utf8(input).map_err(|_| Step::from(SaslError::NotUtf8))?;
        let (username, hex) = text
            .rsplit_once(' ')
            .ok_or(SaslError::Syntax("CRAM-MD5 expects username SP digest"))?;
        if username.is_empty() || username.contains('\0') {
            return Err(SaslError::BadUsername.into());
        }
        let digest = parse_hex(hex).ok_or(SaslError::BadDigest)?;
        let entry = creds.lookup(username);
        let account = entry.map(|e| e.account);
        if let Some(reason) = creds.refusal(username, account) {
            return Ok(AuthFailure::bad(username, account, Some(reason)).into());
        }
        let key = match entry {
            Some(entry) => entry.credentials.cram_md5(),
            None => creds
                .decoy()
                .cram_md5(username)
                .map_err(|e| Step::from(AuthFailure::from(e)))?,
        };
        let (inner, outer) = key.0.0;
        let expected = crypto::hmac_md5_resume(inner, outer, &self.challenge);
        match entry {
            Some(entry) if crypto::ct_eq(&expected, &digest) => Ok(Step::Success {
                account: entry.account.to_owned(),
                additional: None,
            }),
            _ => Ok(AuthFailure::bad(username, account, None).into()),
        }
    }
}

/// 32 hex digits (either case) to 16 bytes.
fn parse_hex(hex: &str) -> Option<[u8; 16]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::tests::Users;

    const RFC_CHALLENGE: &str = "<1896.697170952@postoffice.reston.mci.net>";

    #[test]
    fn accepts_the_rfc_2195_example() {
        let users = Users::with("tim", "tanstaaftanstaaf");
        let (cram, challenge) = CramMd5::with_challenge(RFC_CHALLENGE.into());
        assert_eq!(challenge, RFC_CHALLENGE.as_bytes());
        let step = cram.step(b"tim b913a602c7eda7a495b4e6e7334d3890", &users);
        assert_eq!(
            step,
            Step::Success {
                account: "tim".into(),
                additional: None
            }
        );
    }

    #[test]
    fn accepts_upper_case_hex() {
        let users = Users::with("tim", "tanstaaftanstaaf");
        let (cram, _) = CramMd5::with_challenge(RFC_CHALLENGE.into());
        let step = cram.step(b"tim B913A602C7EDA7A495B4E6E7334D3890", &users);
        assert!(matches!(step, Step::Success { .. }));
    }

    #[test]
    fn refuses_a_wrong_digest_and_an_unknown_user_alike() {
        let users = Users::with("tim", "tanstaaftanstaaf");
        for response in [
            "tim b913a602c7eda7a495b4e6e7334d3891",
            "tom b913a602c7eda7a495b4e6e7334d3890",
        ] {
            let (cram, _) = CramMd5::with_challenge(RFC_CHALLENGE.into());
            let step = cram.step(response.as_bytes(), &users);
            assert!(
                matches!(step, Step::Failure(AuthFailure::BadCredentials { .. })),
                "{response}: {step:?}"
            );
        }
    }

    #[test]
    fn refuses_malformed_responses() {
        let users = Users::with("tim", "tanstaaftanstaaf");
        for response in [
            &b""[..],
            b"tim",
            b" b913a602c7eda7a495b4e6e7334d3890",
            b"tim b913a602c7eda7a495b4e6e7334d389",
            b"tim b913a602c7eda7a495b4e6e7334d38900",
            b"tim g913a602c7eda7a495b4e6e7334d3890",
            b"tim +913a602c7eda7a495b4e6e7334d3890",
            b"tim b913a602c7eda7a495b4e6e7334d3890 ",
            b"t\xffm b913a602c7eda7a495b4e6e7334d3890",
        ] {
            let (cram, _) = CramMd5::with_challenge(RFC_CHALLENGE.into());
            let step = cram.step(response, &users);
            assert!(
                matches!(step, Step::Failure(AuthFailure::Malformed(_))),
                "{response:?}: {step:?}"
            );
        }
    }

    #[test]
    fn challenges_look_like_rfc_2195_ones_and_differ() {
        let (_, a) = CramMd5::start("mail.example").unwrap();
        let (_, b) = CramMd5::start("mail.example").unwrap();
        let a = String::from_utf8(a).unwrap();
        assert!(a.starts_with('<') && a.ends_with("@mail.example>"), "{a}");
        assert!(a[1..].split('@').next().unwrap().contains('.'));
        assert_ne!(a.as_bytes(), &b[..]);
    }
}
