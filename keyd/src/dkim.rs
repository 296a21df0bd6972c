//! DKIM keys: generated and kept in keyd like every other private key, named
//! `dkim.DOMAIN.SELECTOR`; moxctl gets their public parts as the TXT records to publish
//! (RFC 6376 §3.6.1; Ed25519 per RFC 8463: the raw 32-byte key).

use base64::Engine;
use ipc::msg::key::DkimKey;

use crate::keys::{Algorithm, KeyError, KeyStore};

/// Generates the key for `selector._domainkey.domain`.
pub fn generate(
    keys: &mut KeyStore,
    domain: &str,
    selector: &str,
    algorithm: &str,
) -> Result<DkimKey, KeyError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
    };
    if !domain.split('.').all(label_ok) || !domain.contains('.') {
        return Err(KeyError::Invalid(
            domain,
            "not a domain name (use the A-label form)".into(),
        ));
    }
    if !label_ok(selector) {
        return Err(KeyError::Invalid(
            selector.to_string(),
            "a selector is one DNS label".into(),
        ));
    }
    let alg = match algorithm {
        "ed25519" => Algorithm::Ed25519,
        "rsa" => Algorithm::Rsa2048,
        other => {
            return Err(KeyError::Invalid(
                other.to_string(),
                "use ed25519 or rsa".into(),
            ));
        }
    };
    let name = format!("dkim.{domain}.{selector}");
    keys.generate(&name, alg)?;
    describe(keys, &name).ok_or(KeyError::NoKey(name))
}

/// Every DKIM key with its record.
pub fn list(keys: &KeyStore) -> Vec<DkimKey> {
    keys.names().filter_map(|n| describe(keys, n)).collect()
}

fn describe(keys: &KeyStore, name: &str) -> Option<DkimKey> {
    let rest = name.strip_prefix("dkim.")?;
    let (domain, selector) = rest.rsplit_once('.')?;
    let key = keys.get(name).ok()?;
    let (k, public) = match key.algorithm() {
        // An Ed25519 SubjectPublicKeyInfo is a fixed 12-byte prefix and the 32-byte key.
        rustls::SignatureAlgorithm::ED25519 => (
            "ed25519",
            key.public
                .get(key.public.len().checked_sub(32)?..)?
                .to_vec(),
        ),
        rustls::SignatureAlgorithm::RSA => ("rsa", key.public.clone()),
        _ => return None,
    };
    let p = base64::engine::general_purpose::STANDARD.encode(public);
    Some(DkimKey {
        domain: domain.to_string(),
        selector: selector.to_string(),
        algorithm: k.to_string(),
        name: format!("{selector}._domainkey.{domain}"),
        record: format!("v=DKIM1; k={k}; p={p}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_records_for_both_algorithms_and_refuses_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = KeyStore::open(dir.path()).unwrap();
        let ed = generate(&mut keys, "Example.ORG.", "s1", "ed25519").unwrap();
        assert_eq!(
            (ed.domain.as_str(), ed.name.as_str()),
            ("example.org", "s1._domainkey.example.org")
        );
        let p = ed.record.strip_prefix("v=DKIM1; k=ed25519; p=").unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(p)
                .unwrap()
                .len(),
            32
        );
        let rsa = generate(&mut keys, "example.org", "s2", "rsa").unwrap();
        assert!(
            rsa.record.starts_with("v=DKIM1; k=rsa; p=MII"),
            "{}",
            rsa.record
        );
        assert!(
            generate(&mut keys, "example.org", "s1", "rsa").is_err(),
            "selector taken"
        );
        for (d, s, a) in [
            ("example", "s", "rsa"),
            ("exa mple.org", "s", "rsa"),
            ("example.org", "a.b", "rsa"),
            ("example.org", "s3", "dsa"),
        ] {
            assert!(generate(&mut keys, d, s, a).is_err(), "{d} {s} {a}");
        }
        let listed = list(&KeyStore::open(dir.path()).unwrap());
        assert_eq!(
            listed,
            [ed, rsa],
            "listed after a reload, with the same records"
        );
    }
}
