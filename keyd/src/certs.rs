//! Certificates keyd serves: `NAME.cert.pem` (chain, leaf first) beside `NAME.key.pem`, with the
//! host names in `NAME.names`. When none exists, keyd makes self-signed ones (ECDSA P-256, and
//! RSA-2048 for clients without ECDSA) for the server's host name, as localserve needs; their
//! fingerprints are logged.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::keys::{Algorithm, KeyError, KeyStore};

/// A certificate chain and the key that goes with it.
#[derive(Debug, Clone)]
pub struct CertEntry {
    pub key: String,
    pub names: Vec<String>,
    pub chain: Vec<CertificateDer<'static>>,
}

/// Loads every certificate in `dir` whose key the store holds.
pub fn load(dir: &Path, keys: &KeyStore) -> Result<Vec<CertEntry>, KeyError> {
    let mut out = Vec::new();
    for name in keys.names() {
        let pem = dir.join(format!("{name}.cert.pem"));
        if !pem.exists() {
            continue;
        }
        let chain = CertificateDer::pem_file_iter(&pem)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| KeyError::Invalid(name.to_string(), format!("certificate: {e}")))?;
        if chain.is_empty() {
            return Err(KeyError::Invalid(
                name.to_string(),
                "empty certificate file".into(),
            ));
        }
        let names = std::fs::read_to_string(dir.join(format!("{name}.names")))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        out.push(CertEntry {
            key: name.to_string(),
            names,
            chain,
        });
    }
    Ok(out)
}

/// Makes self-signed ECDSA and RSA certificates for `names` (keys included).
pub fn self_signed(dir: &Path, keys: &mut KeyStore, names: &[String]) -> Result<(), KeyError> {
    for (key, alg) in [
        ("selfsigned-ecdsa", Algorithm::EcdsaP256),
        ("selfsigned-rsa", Algorithm::Rsa2048),
    ] {
        let pair = keys.generate_pair(key, alg)?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())
            .map_err(|e| KeyError::Invalid(key.to_string(), e.to_string()))?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let cert = params
            .self_signed(&pair)
            .map_err(|e| KeyError::Invalid(key.to_string(), e.to_string()))?;
        crate::keys::write_atomic(dir, &format!("{key}.cert.pem"), cert.pem().as_bytes())
            .map_err(|e| KeyError::Io(key.to_string(), e))?;
        crate::keys::write_atomic(
            dir,
            &format!("{key}.names"),
            (names.join("\n") + "\n").as_bytes(),
        )
        .map_err(|e| KeyError::Io(key.to_string(), e))?;
        tracing::warn!(
            "serving a self-signed {} certificate for {}: SHA-256 fingerprint {}",
            alg.name(),
            names.join(", "),
            fingerprint(cert.der())
        );
    }
    Ok(())
}

/// The SHA-256 fingerprint of a certificate, as `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    let hash = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .map(|suite| suite.common.hash_provider.hash(der));
    match hash {
        Some(h) => h
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
        None => "unknown".into(),
    }
}
