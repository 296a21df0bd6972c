//! DKIM signatures (RFC 6376 §3.5, §3.7; RFC 8463) written by keyd itself. The caller
//! canonicalized the header fields and hashed the body (relaxed/relaxed); keyd checks that the
//! fields are in that form, finds the one From: address among them, and composes the
//! DKIM-Signature field with tags it chooses: `t=` now, `x=` after the configured validity, and
//! never `l=` (a body length limit would let anyone append to the message). A caller cannot put
//! a tag of its own into the field: it only supplies `h=`, the canonical fields and `bh=`.
//!
//! Whether the asking session may send as that address is decided elsewhere
//! ([`crate::dkim_policy`]); this module only checks the shape and the domain.

use base64::Engine;
use ipc::msg::key::DkimRequest;
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::from_address::{FromError, Sender};
use crate::keys::{Key, KeyStore};

/// The most header-field bytes keyd signs (a generous header block).
pub const MAX_INPUT: usize = 60 * 1024;
/// The most names in `h=`.
pub const MAX_SIGNED: usize = 64;

/// Why keyd refuses to sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DkimError {
    #[error("`{selector}` of `{domain}` is not a DKIM key name")]
    KeyName { domain: String, selector: String },
    #[error("no DKIM key for selector {selector} of {domain}")]
    NoKey { domain: String, selector: String },
    #[error("{0} is not a DKIM key")]
    NotDkim(String),
    #[error("the body hash must be 32 bytes of SHA-256")]
    BodyHash,
    #[error("h= must list 1 to {MAX_SIGNED} field names of letters, digits and `-`")]
    SignedNames,
    #[error("more than {MAX_INPUT} bytes of header fields")]
    TooLarge,
    #[error("the header fields are not relaxed-canonicalized: {0}")]
    NotCanonical(&'static str),
    #[error("the header fields are not the ones h= lists, in its order")]
    NotListed,
    #[error("a message needs exactly one From: field, not {0}")]
    FromCount(usize),
    #[error("h= must list From more often than it occurs (oversigning)")]
    NotOversigned,
    #[error("{0}")]
    From(#[from] FromError),
    #[error("the From: address {from} is not in {domain} or below it")]
    OutsideDomain { from: String, domain: String },
    #[error("a signature for submission needs the session's ticket")]
    NoTicket,
    #[error("the From: address {0} does not belong to the session's account")]
    NotOwned(String),
    #[error("queued signs only for postmaster@ or mailer-daemon@ of the key's domain, not {0}")]
    NotASystemSender(String),
    #[error("cannot check the sender now: {0}")]
    Unavailable(String),
    #[error("signing: {0}")]
    Signing(String),
}

/// A request that passed the checks of shape and domain, ready to be signed once the sender is
/// authorized.
#[derive(Debug)]
pub struct Prepared {
    /// The one From: address.
    pub from: Sender,
    /// `d=`.
    pub domain: String,
    key: Key,
    /// The field's value up to and including the empty `b=`.
    value: String,
    /// The canonical fields, then the canonical DKIM-Signature field without its CRLF.
    data: Vec<u8>,
}

/// Checks `request` against the key it names and composes the field: `t=` is `now`, `x=` is
/// `now + validity_secs`.
pub fn prepare(
    keys: &KeyStore,
    request: &DkimRequest,
    now: u64,
    validity_secs: u64,
) -> Result<Prepared, DkimError> {
    let domain = request.domain.trim_end_matches('.').to_ascii_lowercase();
    let selector = request.selector.as_str();
    let label = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !label(selector) || !domain.split('.').all(label) {
        return Err(DkimError::KeyName {
            domain,
            selector: selector.to_string(),
        });
    }
    let name = format!("dkim.{domain}.{selector}");
    let key = keys.get(&name).map_err(|_| DkimError::NoKey {
        domain: domain.clone(),
        selector: selector.to_string(),
    })?;
    let algorithm = match key.algorithm() {
        SignatureAlgorithm::RSA => "rsa-sha256",
        SignatureAlgorithm::ED25519 => "ed25519-sha256",
        _ => return Err(DkimError::NotDkim(name)),
    };
    if request.body_hash.len() != 32 {
        return Err(DkimError::BodyHash);
    }
    let signed_ok = |n: &String| {
        !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if request.signed.is_empty()
        || request.signed.len() > MAX_SIGNED
        || !request.signed.iter().all(signed_ok)
    {
        return Err(DkimError::SignedNames);
    }
    if request.headers.len() > MAX_INPUT {
        return Err(DkimError::TooLarge);
    }
    let fields = canonical_fields(&request.headers)?;
    // Each field is selected by the next name of h= that names it (names of absent fields
    // select nothing), as a verifier selects them.
    let mut names = request.signed.iter();
    for (field, _) in &fields {
        if !names.any(|n| n.eq_ignore_ascii_case(field)) {
            return Err(DkimError::NotListed);
        }
    }
    let froms: Vec<&str> = fields
        .iter()
        .filter(|(n, _)| *n == "from")
        .map(|(_, v)| *v)
        .collect();
    let [from] = froms[..] else {
        return Err(DkimError::FromCount(froms.len()));
    };
    let listed = request
        .signed
        .iter()
        .filter(|n| n.eq_ignore_ascii_case("from"))
        .count();
    if listed < 2 {
        return Err(DkimError::NotOversigned);
    }
    let from = crate::from_address::parse(from)?;
    if !from.is_within(&domain) {
        return Err(DkimError::OutsideDomain {
            from: from.address(),
            domain,
        });
    }
    let h = request
        .signed
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(":");
    let bh = base64::engine::general_purpose::STANDARD.encode(&request.body_hash);
    let expires = now.saturating_add(validity_secs);
    // Single spaces only: this is also the field's relaxed canonical form.
    let value = format!(
        "v=1; a={algorithm}; c=relaxed/relaxed; d={domain}; s={selector}; t={now}; x={expires}; h={h}; bh={bh}; b="
    );
    let mut data = request.headers.clone();
    data.extend_from_slice(b"dkim-signature:");
    data.extend_from_slice(value.as_bytes());
    Ok(Prepared {
        from,
        domain,
        key: key.clone(),
        value,
        data,
    })
}

impl Prepared {
    /// Signs and returns the complete field, folded between tags, with its CRLF.
    pub fn sign(self) -> Result<String, DkimError> {
        let signature = match self.key.algorithm() {
            // RSASSA-PKCS1-v1_5 with SHA-256 over the data itself.
            SignatureAlgorithm::RSA => self.key.sign(SignatureScheme::RSA_PKCS1_SHA256, &self.data),
            // RFC 8463 §3: Ed25519 (pure) over the SHA-256 hash of the data.
            _ => self
                .key
                .sign(SignatureScheme::ED25519, &crate::certs::sha256(&self.data)),
        }
        .map_err(|e| DkimError::Signing(e.to_string()))?;
        let b = base64::engine::general_purpose::STANDARD.encode(signature);
        // Relaxed canonicalization turns each ";CRLF TAB" back into the "; " signed.
        Ok(format!(
            "DKIM-Signature: {}{b}\r\n",
            self.value.replace("; ", ";\r\n\t")
        ))
    }
}

/// Splits relaxed-canonicalized header fields (RFC 6376 §3.4.2): each `name:value` CRLF, the
/// name lowercase, the value unfolded with single spaces and nothing around it.
fn canonical_fields(headers: &[u8]) -> Result<Vec<(&str, &str)>, DkimError> {
    let text = std::str::from_utf8(headers).map_err(|_| DkimError::NotCanonical("not UTF-8"))?;
    let Some(body) = text.strip_suffix("\r\n") else {
        return Err(DkimError::NotCanonical("the last field has no CRLF"));
    };
    let mut fields = Vec::new();
    for line in body.split("\r\n") {
        let (name, value) = line
            .split_once(':')
            .ok_or(DkimError::NotCanonical("a field without a colon"))?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())
        {
            return Err(DkimError::NotCanonical("a field name not in lowercase"));
        }
        if value.contains(['\r', '\n', '\t'])
            || value.contains("  ")
            || value.starts_with(' ')
            || value.ends_with(' ')
        {
            return Err(DkimError::NotCanonical("a value with unfolded whitespace"));
        }
        fields.push((name, value));
    }
    Ok(fields)
}

#[cfg(test)]
#[path = "dkim_sign_tests.rs"]
mod tests;
