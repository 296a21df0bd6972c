//! Certificates keyd serves, from three sources:
//! - files named in the configuration (`[[tls.certificate]]`): the supervisor opens them and
//!   passes fds; keyd reads each once, checks chain and key belong together, keeps the key in
//!   memory only, and never writes it anywhere;
//! - its own directory: `NAME.cert.pem` (chain, leaf first) beside the store's `NAME.key.pem`,
//!   host names in `NAME.names` (ACME certificates will live here);
//! - self-signed ECDSA P-256 and RSA-2048 certificates for the host name, made when there is
//!   nothing else (localserve); their fingerprints are logged.

use std::io::Read;
use std::path::Path;

use ipc::config::CertificateFiles;
use ipc::msg::key::CertificateStatus;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::keys::{Algorithm, Key, KeyError, KeyStore};

/// Names of the self-signed certificates' keys.
const SELF_SIGNED: [(&str, Algorithm); 2] = [
    ("selfsigned-ecdsa", Algorithm::EcdsaP256),
    ("selfsigned-rsa", Algorithm::Rsa2048),
];

/// At most this much of a certificate or key file is read.
const MAX_FILE: u64 = 1 << 20;

/// Where a certificate came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file of the configuration (its path); the key lives in this entry only.
    File(String),
    SelfSigned,
    /// keyd's directory (ACME, or placed there by hand).
    Stored,
}

/// A certificate chain and the key that goes with it.
#[derive(Debug, Clone)]
pub struct CertEntry {
    /// The key's name: in the store, or `file.<fingerprint>` for a file's key.
    pub key: String,
    pub names: Vec<String>,
    pub chain: Vec<CertificateDer<'static>>,
    pub source: Source,
    /// The key of a file certificate (never in the store, never on keyd's disk).
    pub file_key: Option<Key>,
}

impl CertEntry {
    /// The private key, from this entry or the store.
    pub fn signing_key(&self, keys: &KeyStore) -> Option<Key> {
        match &self.file_key {
            Some(k) => Some(k.clone()),
            None => keys.get(&self.key).ok().cloned(),
        }
    }

    /// What `moxctl tls status` shows.
    pub fn status(&self, keys: &KeyStore) -> CertificateStatus {
        let algorithm = self
            .signing_key(keys)
            .map(|k| format!("{:?}", k.algorithm()).to_ascii_lowercase())
            .unwrap_or_default();
        let leaf = self.chain.first().map(|c| c.as_ref()).unwrap_or_default();
        let (subject, issuer, not_before, not_after) =
            match x509_parser::parse_x509_certificate(leaf) {
                Ok((_, cert)) => (
                    cert.subject().to_string(),
                    cert.issuer().to_string(),
                    cert.validity().not_before.timestamp(),
                    cert.validity().not_after.timestamp(),
                ),
                Err(e) => (format!("unreadable: {e}"), String::new(), 0, 0),
            };
        CertificateStatus {
            names: self.names.clone(),
            algorithm,
            source: match &self.source {
                Source::File(path) => path.clone(),
                Source::SelfSigned => "self-signed".into(),
                Source::Stored => "keyd directory".into(),
            },
            subject,
            issuer,
            not_before,
            not_after,
            fingerprint: fingerprint(leaf),
        }
    }
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
        let source = if SELF_SIGNED.iter().any(|(n, _)| *n == name) {
            Source::SelfSigned
        } else {
            Source::Stored
        };
        out.push(CertEntry {
            key: name.to_string(),
            names,
            chain,
            source,
            file_key: None,
        });
    }
    Ok(out)
}

/// Reads the certificate files passed as fds (chain, key per entry) and checks each: a chain
/// that parses, a key that parses and is the leaf's key, names given or in the certificate.
/// One bad entry fails the whole set.
pub fn from_files(
    files: &[CertificateFiles],
    fds: Vec<ipc::Handle>,
) -> Result<Vec<CertEntry>, String> {
    if fds.len() != 2 * files.len() {
        return Err(format!(
            "{} files need {} descriptors; {} came",
            files.len(),
            2 * files.len(),
            fds.len()
        ));
    }
    let mut fds = fds.into_iter();
    let mut out = Vec::new();
    for entry in files {
        let (Some(cert_fd), Some(key_fd)) = (fds.next(), fds.next()) else {
            return Err("descriptors missing".into());
        };
        let cert_path = entry.cert.display().to_string();
        let key_path = entry.key.display().to_string();
        let chain = CertificateDer::pem_slice_iter(&read_all(cert_fd, &cert_path)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{cert_path}: {e}"))?;
        let Some(leaf) = chain.first() else {
            return Err(format!("{cert_path}: no certificate in it"));
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| format!("{cert_path}: {e}"))?;
        let spki = parsed.public_key().raw.to_vec();
        let name = format!("file.{}", &fingerprint(&spki).replace(':', "")[..16]);
        let key = crate::keys::load(&name, &read_all(key_fd, &key_path)?)
            .map_err(|e| format!("{key_path}: {e}"))?;
        if key.public != spki {
            return Err(format!(
                "{key_path} is not the key of the certificate in {cert_path}"
            ));
        }
        let names = if entry.names.is_empty() {
            dns_names(&parsed)
        } else {
            entry.names.clone()
        };
        if names.is_empty() {
            return Err(format!(
                "{cert_path}: no DNS names in the certificate; name them with `names`"
            ));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if parsed.validity().not_after.timestamp() < now {
            tracing::warn!("{cert_path} expired at {}", parsed.validity().not_after);
        }
        out.push(CertEntry {
            key: name,
            names,
            chain,
            source: Source::File(cert_path),
            file_key: Some(key),
        });
    }
    Ok(out)
}

/// Like [`from_files`], keeping the good entries and logging the bad ones.
pub fn from_files_skipping_bad(
    files: &[CertificateFiles],
    fds: Vec<ipc::Handle>,
) -> Vec<CertEntry> {
    if fds.len() != 2 * files.len() {
        tracing::error!(
            "{} certificate files came with {} descriptors; none used",
            files.len(),
            fds.len()
        );
        return Vec::new();
    }
    let mut fds = fds.into_iter();
    let mut out = Vec::new();
    for entry in files {
        let (Some(c), Some(k)) = (fds.next(), fds.next()) else {
            break;
        };
        match from_files(std::slice::from_ref(entry), vec![c, k]) {
            Ok(mut certs) => out.append(&mut certs),
            Err(e) => tracing::error!("certificate {} not served: {e}", entry.cert.display()),
        }
    }
    out
}

fn read_all(fd: ipc::Handle, path: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("{path}: larger than {MAX_FILE} bytes"));
    }
    Ok(bytes)
}

fn dns_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names
}

/// What keyd serves: the file certificates and those in its directory; self-signed ones only
/// when there is nothing else (made for `hostname` when missing).
pub fn serving(
    dir: &Path,
    keys: &mut KeyStore,
    from_files: Vec<CertEntry>,
    hostname: &str,
) -> Result<Vec<CertEntry>, KeyError> {
    let mut certs = from_files;
    certs.extend(
        load(dir, keys)?
            .into_iter()
            .filter(|c| c.source != Source::SelfSigned),
    );
    if certs.is_empty() {
        let mut own = load(dir, keys)?;
        if own.is_empty() {
            self_signed(dir, keys, &[hostname.to_string()])?;
            own = load(dir, keys)?;
        }
        certs = own;
    }
    Ok(certs)
}

/// Makes self-signed ECDSA and RSA certificates for `names` (keys included).
pub fn self_signed(dir: &Path, keys: &mut KeyStore, names: &[String]) -> Result<(), KeyError> {
    for (key, alg) in SELF_SIGNED {
        // A key left without its certificate by a crash is replaced.
        if keys.get(key).is_ok() {
            keys.remove(key)?;
        }
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

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .map(|suite| suite.common.hash_provider.hash(data).as_ref().to_vec())
        .unwrap_or_default()
}

/// The SHA-256 fingerprint of a certificate, as `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    sha256(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate for `names` and its key, as PEM files in `dir`; returns their paths.
    fn make(dir: &Path, stem: &str, names: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, pair.serialize_pem()).unwrap();
        (c, k)
    }

    fn entry(cert: &Path, key: &Path, names: &[&str]) -> CertificateFiles {
        CertificateFiles {
            names: names.iter().map(|n| n.to_string()).collect(),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }
    }

    fn fds(paths: &[&Path]) -> Vec<ipc::Handle> {
        paths
            .iter()
            .map(|p| ipc::Handle::from(std::fs::File::open(p).unwrap()))
            .collect()
    }

    #[test]
    fn reads_file_certificates_with_names_from_the_certificate_or_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = make(dir.path(), "a", &["mail.example.org", "MX.example.org"]);
        let (c2, k2) = make(dir.path(), "b", &["other.example"]);
        let certs = from_files(
            &[entry(&c1, &k1, &[]), entry(&c2, &k2, &["imap.example.net"])],
            fds(&[&c1, &k1, &c2, &k2]),
        )
        .unwrap();
        assert_eq!(certs[0].names, ["mail.example.org", "mx.example.org"]);
        assert_eq!(certs[1].names, ["imap.example.net"]);
        assert!(certs[0].key.starts_with("file.") && certs[0].key != certs[1].key);
        assert_eq!(certs[0].source, Source::File(c1.display().to_string()));
        let keys = KeyStore::open(dir.path()).unwrap();
        let status = certs[0].status(&keys);
        assert_eq!(
            (status.algorithm.as_str(), status.names.len()),
            ("ecdsa", 2)
        );
        assert!(status.not_after > status.not_before, "{status:?}");
        assert_eq!(status.fingerprint.len(), 32 * 3 - 1);
        // The key signs, and is the certificate's.
        let key = certs[0].signing_key(&keys).unwrap();
        assert!(
            key.sign(rustls::SignatureScheme::ECDSA_NISTP256_SHA256, b"m")
                .is_ok()
        );
    }

    #[test]
    fn refuses_a_key_of_another_certificate_garbage_and_missing_fds() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = make(dir.path(), "a", &["a.example"]);
        let (_, k2) = make(dir.path(), "b", &["b.example"]);
        let e = from_files(&[entry(&c1, &k2, &[])], fds(&[&c1, &k2])).unwrap_err();
        assert!(e.contains("is not the key of the certificate"), "{e}");
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = from_files(&[entry(&junk, &k1, &[])], fds(&[&junk, &k1])).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let e = from_files(&[entry(&c1, &junk, &[])], fds(&[&c1, &junk])).unwrap_err();
        assert!(e.contains("junk"), "{e}");
        let e = from_files(&[entry(&c1, &k1, &[])], fds(&[&c1])).unwrap_err();
        assert!(e.contains("need 2 descriptors"), "{e}");
    }

    #[test]
    fn at_start_a_bad_file_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = make(dir.path(), "a", &["a.example"]);
        let (c2, _) = make(dir.path(), "b", &["b.example"]);
        let certs = from_files_skipping_bad(
            &[entry(&c2, &k1, &[]), entry(&c1, &k1, &[])],
            fds(&[&c2, &k1, &c1, &k1]),
        );
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].names, ["a.example"]);
    }

    #[test]
    fn serves_self_signed_certificates_only_when_there_is_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = KeyStore::open(dir.path()).unwrap();
        let own = serving(dir.path(), &mut keys, Vec::new(), "mx.example").unwrap();
        assert_eq!(own.len(), 2);
        assert!(own.iter().all(|c| c.source == Source::SelfSigned));
        let files = tempfile::tempdir().unwrap();
        let (c, k) = make(files.path(), "a", &["mx.example"]);
        let from = from_files(&[entry(&c, &k, &[])], fds(&[&c, &k])).unwrap();
        let served = serving(dir.path(), &mut keys, from, "mx.example").unwrap();
        assert_eq!(served.len(), 1);
        assert!(matches!(served[0].source, Source::File(_)));
        // The file's key never reaches keyd's directory.
        let stored: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(stored.iter().all(|n| !n.starts_with("file.")), "{stored:?}");
    }
}
