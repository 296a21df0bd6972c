//! DKIM signing with keys that stay in keyd: mail-auth canonicalizes the message and hashes the
//! body here; the bytes to sign (header fields and the DKIM-Signature template) go to keyd,
//! which checks that the template names its own key and signs them.

use ipc::msg::key::{self, DkimKey};
use mail_auth::common::crypto::{Algorithm, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::DkimSigner;

use crate::KeydSigner;

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
    match keyd
        .call(
            &key::Request::DkimKeys {
                domain: domain.to_string(),
            },
            Vec::new(),
        )
        .await
    {
        Ok((key::Response::DkimKeys(keys), _)) => Ok(keys),
        Ok((other, _)) => Err(format!("keyd: {other:?}")),
        Err(e) => Err(format!("keyd: {e}")),
    }
}

/// Signs `message` once per key; returns the DKIM-Signature fields (with CRLF) to prepend.
/// Blocks on keyd: call it from a blocking thread.
pub fn sign(signer: &KeydSigner, keys: &[DkimKey], message: &[u8]) -> Result<String, String> {
    let mut fields = String::new();
    for k in keys {
        let algorithm = match k.algorithm.as_str() {
            "ed25519" => Algorithm::Ed25519Sha256,
            "rsa" => Algorithm::RsaSha256,
            other => return Err(format!("unknown DKIM key type {other}")),
        };
        let remote = RemoteDkimKey {
            domain: k.domain.clone(),
            selector: k.selector.clone(),
            algorithm,
            signer: signer.clone(),
        };
        let signature = DkimSigner::from_key(remote)
            .domain(k.domain.clone())
            .selector(k.selector.clone())
            .headers(SIGNED_HEADERS.iter().copied())
            .sign(message)
            .map_err(|e| format!("DKIM signature for {} ({}): {e}", k.domain, k.selector))?;
        fields += &signature.to_header();
    }
    Ok(fields)
}

/// A DKIM key in keyd, for mail-auth's signer.
struct RemoteDkimKey {
    domain: String,
    selector: String,
    algorithm: Algorithm,
    signer: KeydSigner,
}

impl SigningKey for RemoteDkimKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        let mut data = Vec::with_capacity(1024);
        input.write(&mut data);
        self.signer
            .sign(&key::Request::SignDkim {
                domain: self.domain.clone(),
                selector: self.selector.clone(),
                data,
            })
            .map_err(|e| {
                mail_auth::Error::Crypto(mail_auth::common::crypto::CryptoError::Library(e))
            })
    }

    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}
