//! DKIM signing with keys that stay in keyd: mail-auth canonicalizes the message and hashes the
//! body here; keyd gets the canonical header fields, the `h=` list and the body hash, writes
//! the DKIM-Signature field itself (its own `t=` and `x=`, no `l=`) and signs it, after
//! checking that the asking session owns the From: address.

use ipc::msg::auth::Ticket;
use ipc::msg::key::{self, DkimKey};
use mail_auth::AuthenticatedMessage;
use mail_auth::common::crypto::{HashContext, HashImpl, Sha256};
use mail_auth::common::headers::{HeaderStream, Writable};
use mail_auth::dkim::{Canonicalization, Signature};

/// Header fields signed when present (RFC 6376 §5.4.1's list, as mox and OpenDKIM sign).
/// `From` is also named once more than it occurs ("oversigning"): nobody can add a second
/// From without breaking the signature.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// The DKIM keys keyd holds for `domain`.
pub async fn keys_for(
    keyd: &ipc::Client<key::KeyService>,
    domain: &str,
) -> Result<Vec<DkimKey>, String> {
    let request = key::DkimKeys {
        domain: domain.to_string(),
    };
    match keyd.ask(request).await {
        Ok(Ok(keys)) => Ok(keys),
        Ok(Err(refused)) => Err(format!("keyd refused the DKIM keys of {domain}: {refused}")),
        Err(e) => Err(format!("keyd: {e}")),
    }
}

/// What every signature of one message covers: the fields `SIGNED_HEADERS` selects,
/// relaxed-canonicalized in `h=` order, and the hash of the relaxed-canonicalized body.
#[derive(Debug, Clone)]
pub struct Canonical {
    pub signed: Vec<String>,
    pub headers: Vec<u8>,
    pub body_hash: Vec<u8>,
}

/// Canonicalizes `message` (relaxed/relaxed) and hashes its body; `None` when it has no
/// header fields. CPU-bound: call it from a blocking thread for a large message.
pub fn canonicalize(message: &[u8]) -> Option<Canonical> {
    let parsed = AuthenticatedMessage::parse(message)?;
    let fields = Fields {
        headers: parsed.headers.iter(),
        body: message
            .get(parsed.body_offset as usize..)
            .unwrap_or_default(),
    };
    let template = Signature {
        h: SIGNED_HEADERS.iter().map(|h| h.to_string()).collect(),
        ch: Canonicalization::Relaxed,
        cb: Canonicalization::Relaxed,
        ..Signature::default()
    };
    let (_, headers, signed, body) = template.canonicalize(fields);
    let mut canonical_headers = Vec::new();
    headers.write(&mut canonical_headers);
    let mut hasher = <Sha256 as HashImpl>::hasher();
    body.write(&mut hasher);
    Some(Canonical {
        signed,
        headers: canonical_headers,
        body_hash: hasher.complete().as_ref().to_vec(),
    })
}

/// A parsed message's header fields and body, as mail-auth's canonicalization reads them.
struct Fields<'v, 'x> {
    headers: std::slice::Iter<'v, (&'x [u8], &'x [u8])>,
    body: &'x [u8],
}

impl<'x> HeaderStream<'x> for Fields<'_, 'x> {
    fn next_header(&mut self) -> Option<(&'x [u8], &'x [u8])> {
        self.headers.next().copied()
    }

    fn body(&mut self) -> &'x [u8] {
        self.body
    }
}

/// Has keyd sign `message` once per key, for the submission session of `ticket` (`None`:
/// queued's own mail); returns the DKIM-Signature fields (with CRLF) to prepend. keyd writes
/// each field itself and signs only a From: address the session owns.
pub async fn sign(
    keyd: &ipc::Client<key::KeyService>,
    ticket: Option<Ticket>,
    keys: &[DkimKey],
    message: Vec<u8>,
) -> Result<String, String> {
    if keys.is_empty() {
        return Ok(String::new());
    }
    let canonical = ipc::span::spawn_blocking(move || canonicalize(&message))
        .await
        .map_err(|e| format!("canonicalizing: {e}"))?
        .ok_or("the message has no header fields")?;
    let mut fields = String::new();
    for k in keys {
        let request = key::SignDkim {
            request: key::DkimRequest {
                ticket,
                domain: k.domain.clone(),
                selector: k.selector.clone(),
                signed: canonical.signed.clone(),
                headers: canonical.headers.clone(),
                body_hash: canonical.body_hash.clone(),
            },
        };
        match keyd.ask(request).await {
            Ok(Ok(field)) => fields += &field,
            Ok(Err(why)) => {
                return Err(format!(
                    "keyd refused a DKIM signature for {} ({}): {why}",
                    k.domain, k.selector
                ));
            }
            Err(e) => return Err(format!("keyd: {e}")),
        }
    }
    Ok(fields)
}
