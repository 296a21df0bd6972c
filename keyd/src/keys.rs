//! The key store: every private key of the server, in keyd's own directory (0700, keyd's user),
//! one PKCS#8 PEM file (0600) per key. Keys are generated here and never leave this process:
//! other roles get public keys and signatures, nothing else.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::sign::SigningKey;

/// Key types keyd generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    EcdsaP256,
    Ed25519,
    Rsa2048,
    Rsa4096,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256 => "ecdsa-p256",
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Rsa2048 => "rsa-2048",
            Algorithm::Rsa4096 => "rsa-4096",
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        [
            Algorithm::EcdsaP256,
            Algorithm::Ed25519,
            Algorithm::Rsa2048,
            Algorithm::Rsa4096,
        ]
        .into_iter()
        .find(|a| a.name() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("key {0}: {1}")]
    Invalid(String, String),
    #[error("no key named `{0}`")]
    NoKey(String),
    #[error("key `{0}` exists already")]
    Exists(String),
    #[error("key `{0}` cannot sign with {1:?}")]
    Scheme(String, SignatureScheme),
}

/// One private key, usable for signing, with its public half.
#[derive(Clone)]
pub struct Key {
    pub name: String,
    signer: Arc<dyn SigningKey>,
    /// SubjectPublicKeyInfo, DER.
    pub public: Vec<u8>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("algorithm", &self.signer.algorithm())
            .field("private", &"<redacted>")
            .finish()
    }
}

impl Key {
    /// Signs `message` with `scheme`.
    pub fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let signer = self
            .signer
            .choose_scheme(&[scheme])
            .ok_or_else(|| KeyError::Scheme(self.name.clone(), scheme))?;
        signer
            .sign(message)
            .map_err(|e| KeyError::Invalid(self.name.clone(), e.to_string()))
    }

    /// The schemes this key can sign with, from those offered.
    pub fn schemes(&self, offered: &[SignatureScheme]) -> Vec<SignatureScheme> {
        offered
            .iter()
            .copied()
            .filter(|s| self.signer.choose_scheme(&[*s]).is_some())
            .collect()
    }

    pub fn algorithm(&self) -> rustls::SignatureAlgorithm {
        self.signer.algorithm()
    }
}

/// Every key, by name.
#[derive(Debug)]
pub struct KeyStore {
    dir: PathBuf,
    keys: BTreeMap<String, Key>,
}

impl KeyStore {
    /// Loads every `NAME.key.pem` in `dir`.
    pub fn open(dir: &Path) -> Result<KeyStore, KeyError> {
        let mut keys = BTreeMap::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| KeyError::Io(dir.display().to_string(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| KeyError::Io(dir.display().to_string(), e))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".key.pem") else {
                continue;
            };
            let pem = std::fs::read(entry.path()).map_err(|e| KeyError::Io(file.clone(), e))?;
            keys.insert(name.to_string(), load(name, &pem)?);
        }
        Ok(KeyStore {
            dir: dir.to_path_buf(),
            keys,
        })
    }

    pub fn get(&self, name: &str) -> Result<&Key, KeyError> {
        self.keys
            .get(name)
            .ok_or_else(|| KeyError::NoKey(name.to_string()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Forgets key `name` and deletes its file.
    pub fn remove(&mut self, name: &str) -> Result<(), KeyError> {
        check_name(name)?;
        self.keys.remove(name);
        match std::fs::remove_file(self.dir.join(format!("{name}.key.pem"))) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(KeyError::Io(name.to_string(), e)),
        }
    }

    /// Generates a key, writes it durably (0600, atomically), and keeps it.
    pub fn generate(&mut self, name: &str, alg: Algorithm) -> Result<&Key, KeyError> {
        self.generate_pair(name, alg)?;
        self.get(name)
    }

    /// Like [`KeyStore::generate`], also returning the key pair (to sign a certificate with).
    pub(crate) fn generate_pair(
        &mut self,
        name: &str,
        alg: Algorithm,
    ) -> Result<rcgen::KeyPair, KeyError> {
        check_name(name)?;
        if self.keys.contains_key(name) {
            return Err(KeyError::Exists(name.to_string()));
        }
        let invalid = |e: rcgen::Error| KeyError::Invalid(name.to_string(), e.to_string());
        let pair = match alg {
            Algorithm::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Algorithm::Ed25519 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
            Algorithm::Rsa2048 => {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            Algorithm::Rsa4096 => {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
            }
        }
        .map_err(invalid)?;
        let pem = pair.serialize_pem();
        let key = load(name, pem.as_bytes())?;
        write_atomic(&self.dir, &format!("{name}.key.pem"), pem.as_bytes())
            .map_err(|e| KeyError::Io(name.to_string(), e))?;
        self.keys.insert(name.to_string(), key);
        Ok(pair)
    }
}

fn check_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(KeyError::Invalid(
            name.to_string(),
            "names are letters, digits, '.', '_' and '-'".into(),
        ))
    }
}

/// A key from PEM (PKCS#8, PKCS#1 or SEC1), kept under `name`.
pub fn load(name: &str, pem: &[u8]) -> Result<Key, KeyError> {
    let der = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| KeyError::Invalid(name.to_string(), e.to_string()))?;
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| KeyError::Invalid(name.to_string(), e.to_string()))?;
    let public = signer
        .public_key()
        .ok_or_else(|| KeyError::Invalid(name.to_string(), "no public key".into()))?
        .as_ref()
        .to_vec();
    Ok(Key {
        name: name.to_string(),
        signer,
        public,
    })
}

/// Writes `dir/name` so that it is complete or absent after a crash: temp file (0600), fsync,
/// rename, fsync the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = ipc::files::private()
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    // Closed before the rename: Windows renames no open file.
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    ipc::files::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_signs_and_reloads_every_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = KeyStore::open(dir.path()).unwrap();
        let cases = [
            (Algorithm::EcdsaP256, SignatureScheme::ECDSA_NISTP256_SHA256),
            (Algorithm::Ed25519, SignatureScheme::ED25519),
            (Algorithm::Rsa2048, SignatureScheme::RSA_PSS_SHA256),
        ];
        let mut publics = Vec::new();
        for (alg, scheme) in cases {
            let key = store.generate(alg.name(), alg).unwrap();
            let sig = key.sign(scheme, b"message").unwrap();
            assert!(!sig.is_empty());
            publics.push(key.public.clone());
        }
        assert!(matches!(
            store.generate("ed25519", Algorithm::Ed25519),
            Err(KeyError::Exists(_))
        ));
        assert!(
            store
                .get("ed25519")
                .unwrap()
                .sign(SignatureScheme::RSA_PSS_SHA256, b"x")
                .is_err()
        );
        for bad in ["", "../x", ".hidden", "a/b"] {
            assert!(store.generate(bad, Algorithm::Ed25519).is_err(), "{bad:?}");
        }
        let mode = std::fs::metadata(dir.path().join("ed25519.key.pem")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        let reopened = KeyStore::open(dir.path()).unwrap();
        let names: Vec<&str> = reopened.names().collect();
        assert_eq!(names, ["ecdsa-p256", "ed25519", "rsa-2048"]);
        for ((alg, _), public) in cases.iter().zip(publics) {
            assert_eq!(reopened.get(alg.name()).unwrap().public, public);
        }
        let debug = format!("{:?}", reopened.get("ed25519").unwrap());
        assert!(
            debug.contains("<redacted>") && !debug.contains("PRIVATE"),
            "{debug}"
        );
    }

    #[test]
    fn refuses_garbage_key_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.key.pem"),
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(KeyStore::open(dir.path()).is_err());
    }
}
