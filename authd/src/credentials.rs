//! Per-account credentials, derived once from the password when it is set.
//!
//! A [`Credentials`] value holds everything the SASL mechanisms need and never the password:
//! - an argon2id PHC string, for PLAIN, LOGIN and HTTP basic authentication;
//! - for SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802 §3): salt, iteration count, StoredKey and
//!   ServerKey — not SaltedPassword, from which a client proof could be forged;
//! - for CRAM-MD5: the HMAC-MD5 inner and outer chaining states (as Dovecot stores them). This is
//!   not the password in clear, but it **is password-equivalent for CRAM-MD5**: whoever reads it
//!   can answer any CRAM-MD5 challenge for the account. It is as sensitive as a password.
//!
//! Passwords are SASLprep'ed (RFC 4013) before argon2 and SCRAM, as SCRAM clients do, so a
//! non-ASCII password matches whatever the client's normalization; a password SASLprep refuses is
//! used as given (consistently on both sides). CRAM-MD5 uses the raw bytes, as its clients do.
//!
//! Unknown users are answered from a [`Decoy`] derived from a server secret, so that a SCRAM
//! server-first message (salt, iterations) and the time a PLAIN check takes are the same for
//! existing and non-existing accounts.

use std::borrow::Cow;
use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::crypto::{self, ScramHash};
use crate::error::CryptoError;

/// argon2id memory cost in KiB (the argon2 crate's default, OWASP's recommendation).
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// argon2id passes.
pub const ARGON2_ITERATIONS: u32 = 2;
/// argon2id lanes.
pub const ARGON2_PARALLELISM: u32 = 1;
/// PBKDF2 iterations for SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 7677 §4 asks for at least 4096).
pub const SCRAM_ITERATIONS: u32 = 4096;
/// Length of every random salt.
pub const SALT_LEN: usize = 16;

/// How much work deriving and checking a password costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HashCost {
    pub(crate) argon2_memory_kib: u32,
    pub(crate) argon2_iterations: u32,
    pub(crate) argon2_parallelism: u32,
    pub(crate) scram_iterations: u32,
}

impl HashCost {
    /// The cost used for every stored password.
    pub(crate) const DEFAULT: HashCost = HashCost {
        argon2_memory_kib: ARGON2_MEMORY_KIB,
        argon2_iterations: ARGON2_ITERATIONS,
        argon2_parallelism: ARGON2_PARALLELISM,
        scram_iterations: SCRAM_ITERATIONS,
    };

    /// A cheap cost so that unit tests in debug builds run in milliseconds.
    #[cfg(test)]
    pub(crate) const FAST: HashCost = HashCost {
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        scram_iterations: 64,
    };
}

/// A secret value: serialized as itself, but `Debug` prints `<redacted>`.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret<T>(pub(crate) T);

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything needed to check one account's password, by every mechanism.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    argon2: Secret<String>,
    scram_sha1: ScramKeys,
    scram_sha256: ScramKeys,
    cram_md5: CramMd5Key,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// The SCRAM verifier of one hash function (RFC 5802 §3).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ScramKeys {
    pub(crate) salt: Vec<u8>,
    pub(crate) iterations: u32,
    pub(crate) stored_key: Secret<Vec<u8>>,
    pub(crate) server_key: Secret<Vec<u8>>,
}

/// HMAC-MD5 chaining states after `key XOR ipad` and `key XOR opad` (password-equivalent).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct CramMd5Key(pub(crate) Secret<([u32; 4], [u32; 4])>);

impl Credentials {
    /// Derives credentials from `password` with fresh random salts and the default cost.
    pub fn derive(password: &str) -> Result<Self, CryptoError> {
        Self::derive_with(password, HashCost::DEFAULT)
    }

    pub(crate) fn derive_with(password: &str, cost: HashCost) -> Result<Self, CryptoError> {
        let argon2_salt: [u8; SALT_LEN] = crypto::random()?;
        let sha1_salt: [u8; SALT_LEN] = crypto::random()?;
        let sha256_salt: [u8; SALT_LEN] = crypto::random()?;
        Self::derive_with_salts(password, cost, &argon2_salt, &sha1_salt, &sha256_salt)
    }

    /// Derivation with given salts (tests reproduce RFC vectors with it).
    pub(crate) fn derive_with_salts(
        password: &str,
        cost: HashCost,
        argon2_salt: &[u8],
        sha1_salt: &[u8],
        sha256_salt: &[u8],
    ) -> Result<Self, CryptoError> {
        let prepared = saslprep(password);
        let iterations = cost.scram_iterations;
        Ok(Credentials {
            argon2: Secret(hash_phc(prepared.as_bytes(), argon2_salt, cost)?),
            scram_sha1: ScramKeys::derive(ScramHash::Sha1, &prepared, sha1_salt, iterations)?,
            scram_sha256: ScramKeys::derive(ScramHash::Sha256, &prepared, sha256_salt, iterations)?,
            cram_md5: CramMd5Key(Secret(crypto::hmac_md5_states(password.as_bytes()))),
        })
    }

    pub(crate) fn scram(&self, hash: ScramHash) -> &ScramKeys {
        match hash {
            ScramHash::Sha1 => &self.scram_sha1,
            ScramHash::Sha256 => &self.scram_sha256,
        }
    }

    pub(crate) fn cram_md5(&self) -> CramMd5Key {
        self.cram_md5
    }
}

/// Checks `password` against the argon2id hash, in constant time.
pub fn verify_password(credentials: &Credentials, password: &str) -> bool {
    verify_phc(&credentials.argon2.0, password)
}

/// Where SASL finds an account's credentials, and the decoy for names that have none.
pub trait CredentialLookup {
    /// The account `username` names and its credentials, if any. `username` is whatever the
    /// client sent (an account name, perhaps an address the implementation resolves).
    fn lookup(&self, username: &str) -> Option<Entry<'_>>;
    /// Credentials-shaped answers for unknown users.
    fn decoy(&self) -> &Decoy;
    /// Why a limit forbids checking this attempt, if one does. Mechanisms ask after
    /// [`lookup`](Self::lookup) (with the account found, if any) and before verifying anything;
    /// a refused attempt runs its course with the same challenges and ends as bad credentials,
    /// so the answer never says whether the password was right.
    fn refusal(&self, _username: &str, _account: Option<&str>) -> Option<String> {
        None
    }
}

/// A successful [`CredentialLookup::lookup`].
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// The account the username belongs to.
    pub account: &'a str,
    /// That account's credentials.
    pub credentials: &'a Credentials,
}

/// Stand-in credentials for unknown users, derived from a server secret so that they are the
/// same for a given username on every attempt and across restarts (when the secret is kept).
pub struct Decoy {
    secret: Secret<[u8; 32]>,
    phc: Secret<String>,
    scram_iterations: u32,
}

impl fmt::Debug for Decoy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Decoy(<redacted>)")
    }
}

impl Decoy {
    /// A decoy from `secret`, with the default cost.
    pub fn new(secret: [u8; 32]) -> Result<Self, CryptoError> {
        Self::with_cost(secret, HashCost::DEFAULT)
    }

    pub(crate) fn with_cost(secret: [u8; 32], cost: HashCost) -> Result<Self, CryptoError> {
        // A hash of a random password nobody knows: checking against it costs what a real check
        // costs, and never succeeds.
        let password: [u8; 32] = crypto::random()?;
        let salt: [u8; SALT_LEN] = crypto::random()?;
        Ok(Decoy {
            secret: Secret(secret),
            phc: Secret(hash_phc(&password, &salt, cost)?),
            scram_iterations: cost.scram_iterations,
        })
    }

    /// Spends the time of a real argon2 check; always false.
    pub(crate) fn verify_password(&self, password: &str) -> bool {
        let _ = verify_phc(&self.phc.0, password);
        false
    }

    /// A SCRAM verifier for `username` that no proof matches, with a stable salt.
    pub(crate) fn scram(&self, hash: ScramHash, username: &str) -> Result<ScramKeys, CryptoError> {
        let label: &[u8] = match hash {
            ScramHash::Sha1 => b"SCRAM-SHA-1",
            ScramHash::Sha256 => b"SCRAM-SHA-256",
        };
        let derive = |purpose: &[u8]| {
            crypto::prf(
                &self.secret.0,
                &[purpose, label, b"\0", username.as_bytes()],
            )
        };
        let mut salt = derive(b"decoy salt\0")?;
        salt.truncate(SALT_LEN);
        let mut stored_key = derive(b"decoy stored key\0")?;
        stored_key.truncate(hash.len());
        let mut server_key = derive(b"decoy server key\0")?;
        server_key.truncate(hash.len());
        Ok(ScramKeys {
            salt,
            iterations: self.scram_iterations,
            stored_key: Secret(stored_key),
            server_key: Secret(server_key),
        })
    }

    /// A CRAM-MD5 key for `username` that no answer is expected to match.
    pub(crate) fn cram_md5(&self, username: &str) -> Result<CramMd5Key, CryptoError> {
        let key = crypto::prf(&self.secret.0, &[b"decoy cram-md5\0", username.as_bytes()])?;
        Ok(CramMd5Key(Secret(crypto::hmac_md5_states(&key))))
    }
}

impl ScramKeys {
    fn derive(
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, CryptoError> {
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, &[b"Client Key"])?;
        let server_key = hash.hmac(&salted, &[b"Server Key"])?;
        Ok(ScramKeys {
            salt: salt.to_vec(),
            iterations,
            stored_key: Secret(hash.hash(&client_key)),
            server_key: Secret(server_key),
        })
    }
}

/// SASLprep (RFC 4013) of a password, or the password itself if SASLprep refuses it.
fn saslprep(password: &str) -> Cow<'_, str> {
    stringprep::saslprep(password).unwrap_or(Cow::Borrowed(password))
}

fn argon2(cost: HashCost) -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(
        cost.argon2_memory_kib,
        cost.argon2_iterations,
        cost.argon2_parallelism,
        None,
    )
    .map_err(|e| CryptoError::Argon2(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_phc(password: &[u8], salt: &[u8], cost: HashCost) -> Result<String, CryptoError> {
    let salt = SaltString::encode_b64(salt).map_err(|e| CryptoError::Argon2(e.to_string()))?;
    let hash = argon2(cost)?
        .hash_password(password, &salt)
        .map_err(|e| CryptoError::Argon2(e.to_string()))?;
    Ok(hash.to_string())
}

/// Verifies against a PHC string; the parameters come from the string itself.
fn verify_phc(phc: &str, password: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(saslprep(password).as_bytes(), &hash)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(password: &str) -> Credentials {
        Credentials::derive_with(password, HashCost::FAST).unwrap()
    }

    #[test]
    fn verifies_the_right_password_and_refuses_a_wrong_one() {
        let c = creds("correct horse");
        assert!(verify_password(&c, "correct horse"));
        assert!(!verify_password(&c, "correct horse "));
        assert!(!verify_password(&c, ""));
    }

    #[test]
    fn applies_saslprep_on_both_sides() {
        // RFC 4013 §3: SOFT HYPHEN maps to nothing, NO-BREAK SPACE to SPACE.
        let c = creds("I\u{AD}X y\u{A0}z");
        assert!(verify_password(&c, "IX y z"));
        assert!(verify_password(&c, "I\u{AD}X y\u{A0}z"));
    }

    #[test]
    fn stores_argon2id_with_the_configured_parameters() {
        let c = Credentials::derive_with_salts("x", HashCost::FAST, &[1; 16], &[2; 16], &[3; 16])
            .unwrap();
        assert!(
            c.argon2.0.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
            "{}",
            c.argon2.0
        );
        assert_eq!(HashCost::DEFAULT.argon2_memory_kib, Params::DEFAULT_M_COST);
        assert_eq!(HashCost::DEFAULT.argon2_iterations, Params::DEFAULT_T_COST);
    }

    #[test]
    fn salts_differ_between_derivations() {
        let (a, b) = (creds("same"), creds("same"));
        assert_ne!(a.scram_sha256.salt, b.scram_sha256.salt);
        assert_ne!(a.scram_sha1.salt, a.scram_sha256.salt);
        assert_ne!(a.argon2.0, b.argon2.0);
        assert_eq!(a.scram_sha1.salt.len(), SALT_LEN);
    }

    #[test]
    fn never_shows_secrets_in_debug_output() {
        let c = creds("hunter2");
        let shown = format!("{c:?} {:?} {:?}", c.scram_sha1, c.cram_md5);
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("argon2"));
        assert!(shown.contains("<redacted>"));
        let decoy = Decoy::with_cost([9; 32], HashCost::FAST).unwrap();
        assert_eq!(format!("{decoy:?}"), "Decoy(<redacted>)");
    }

    #[test]
    fn decoy_salts_are_stable_per_user_and_differ_between_users() {
        let decoy = Decoy::with_cost([9; 32], HashCost::FAST).unwrap();
        let again = Decoy::with_cost([9; 32], HashCost::FAST).unwrap();
        let a = decoy.scram(ScramHash::Sha256, "alice").unwrap();
        assert_eq!(
            a.salt,
            again.scram(ScramHash::Sha256, "alice").unwrap().salt
        );
        assert_ne!(a.salt, decoy.scram(ScramHash::Sha256, "bob").unwrap().salt);
        assert_ne!(a.salt, decoy.scram(ScramHash::Sha1, "alice").unwrap().salt);
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_eq!(a.stored_key.0.len(), 32);
        assert!(!decoy.verify_password("anything"));
    }
}
