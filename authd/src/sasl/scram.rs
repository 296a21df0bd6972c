//! SCRAM-SHA-1, SCRAM-SHA-256 and their -PLUS variants (RFC 5802, RFC 7677, RFC 9266), server
//! side.
//!
//! Exchange: client-first → server-first (`r=`, `s=`, `i=`) → client-final → server-final
//! (`v=`, returned as additional data with success). Channel binding (RFC 5802 §6):
//! - `n`: the client does not bind; refused for a -PLUS mechanism.
//! - `y`: the client could bind but believes the server cannot; refused when this connection has
//!   channel binding data, because then the server offered -PLUS and someone removed it
//!   (downgrade protection). Refused for a -PLUS mechanism.
//! - `p=tls-exporter`: only with a -PLUS mechanism and channel binding data; `c=` must then be
//!   the gs2 header followed by the exporter bytes.
//!
//! An unknown user gets a server-first message built from decoy keys (a salt derived from the
//! username with a server secret), so the message does not reveal whether the account exists;
//! the exchange then fails at the proof like a wrong password.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::scram_msg::{self, CbFlag};
use super::{AuthFailure, Mechanism, SaslContext, SaslError, Step};
use crate::credentials::{CredentialLookup, ScramKeys};
use crate::crypto::{self, ScramHash};

/// The only channel binding type supported.
const CHANNEL_BINDING_TYPE: &str = "tls-exporter";
/// Random bytes in the server's part of the nonce (base64: 32 characters).
const SERVER_NONCE_BYTES: usize = 24;

/// A SCRAM exchange.
pub(super) struct Scram {
    hash: ScramHash,
    plus: bool,
    channel_binding: Option<Vec<u8>>,
    /// Fixed server nonce suffix, for reproducing RFC examples in tests.
    nonce_suffix: Option<String>,
    pending: Option<Box<Pending>>,
}

/// What the server remembers between its first message and the client's final one.
struct Pending {
    username: String,
    account: Option<String>,
    /// Why a limit refused the attempt: it runs its course and fails without a proof check.
    refused: Option<String>,
    keys: ScramKeys,
    gs2_header: String,
    nonce: String,
    /// `client-first-message-bare "," server-first-message`.
    auth_prefix: String,
}

impl fmt::Debug for Scram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scram")
            .field("hash", &self.hash)
            .field("plus", &self.plus)
            .field("awaiting_final", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

impl Scram {
    pub(super) fn new(mechanism: Mechanism, ctx: &SaslContext) -> Self {
        Scram {
            hash: mechanism.scram_hash().unwrap_or(ScramHash::Sha256),
            plus: mechanism.needs_channel_binding(),
            channel_binding: ctx.channel_binding.clone(),
            nonce_suffix: None,
            pending: None,
        }
    }

    #[cfg(test)]
    pub(super) fn with_nonce_suffix(mut self, suffix: &str) -> Self {
        self.nonce_suffix = Some(suffix.to_owned());
        self
    }

    pub(super) fn step(
        mut self,
        input: &[u8],
        creds: &dyn CredentialLookup,
    ) -> (Option<Self>, Step) {
        let Ok(text) = std::str::from_utf8(input) else {
            return (None, SaslError::NotUtf8.into());
        };
        if text.contains('\0') {
            return (None, SaslError::Syntax("NUL in message").into());
        }
        match self.pending.take() {
            None => match self.first(text, creds) {
                Ok((pending, server_first)) => {
                    self.pending = Some(pending);
                    (Some(self), Step::Continue(server_first.into_bytes()))
                }
                Err(failure) => (None, failure.into()),
            },
            Some(pending) => (None, self.last(pending, text)),
        }
    }

    /// Handles client-first; returns the state and server-first.
    fn first(
        &self,
        text: &str,
        creds: &dyn CredentialLookup,
    ) -> Result<(Box<Pending>, String), AuthFailure> {
        let msg = scram_msg::parse_client_first(text)?;
        self.check_flag(msg.flag)?;
        if msg.authzid.as_ref().is_some_and(|a| *a != msg.username) {
            return Err(SaslError::AuthzidMismatch.into());
        }
        let entry = creds.lookup(&msg.username);
        let refused = creds.refusal(&msg.username, entry.map(|e| e.account));
        // A refused attempt still gets the account's real salt and iterations: server-first is
        // the same whether or not a limit has been reached.
        let (account, keys) = match entry {
            Some(entry) => (
                Some(entry.account.to_owned()),
                entry.credentials.scram(self.hash).clone(),
            ),
            None => (None, creds.decoy().scram(self.hash, &msg.username)?),
        };
        let suffix = match &self.nonce_suffix {
            Some(fixed) => fixed.clone(),
            None => BASE64.encode(crypto::random::<SERVER_NONCE_BYTES>()?),
        };
        let nonce = format!("{}{suffix}", msg.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&keys.salt),
            keys.iterations
        );
        let pending = Box::new(Pending {
            username: msg.username,
            account,
            refused,
            keys,
            gs2_header: msg.gs2_header.to_owned(),
            nonce,
            auth_prefix: format!("{},{server_first}", msg.bare),
        });
        Ok((pending, server_first))
    }

    /// Checks the gs2 channel binding flag against the mechanism and the connection.
    fn check_flag(&self, flag: CbFlag<'_>) -> Result<(), SaslError> {
        match (flag, self.plus) {
            (CbFlag::No, false) => Ok(()),
            (CbFlag::ClientOnly, false) if self.channel_binding.is_some() => {
                Err(SaslError::ChannelBindingDowngrade)
            }
            (CbFlag::ClientOnly, false) => Ok(()),
            (CbFlag::Required(_), false) | (CbFlag::No | CbFlag::ClientOnly, true) => {
                Err(SaslError::ChannelBindingMismatchedFlag)
            }
            (CbFlag::Required(name), true) if name != CHANNEL_BINDING_TYPE => {
                Err(SaslError::UnsupportedChannelBindingType)
            }
            (CbFlag::Required(_), true) if self.channel_binding.is_none() => {
                Err(SaslError::ChannelBindingUnavailable)
            }
            (CbFlag::Required(_), true) => Ok(()),
        }
    }

    /// Handles client-final: checks binding, nonce and proof; returns success with `v=`.
    fn last(&self, pending: Box<Pending>, text: &str) -> Step {
        match self.verify(&pending, text) {
            Ok(Some(server_final)) => match pending.account {
                Some(account) => Step::Success {
                    account,
                    additional: Some(server_final.into_bytes()),
                },
                None => AuthFailure::bad(&pending.username, None, None).into(),
            },
            Ok(None) => AuthFailure::bad(
                &pending.username,
                pending.account.as_deref(),
                pending.refused.clone(),
            )
            .into(),
            Err(failure) => failure.into(),
        }
    }

    /// `Ok(Some(server-final))` if the proof is right, `Ok(None)` if it is wrong or the attempt
    /// was refused (then the proof is not checked; malformed messages fail as they would anyway).
    fn verify(&self, pending: &Pending, text: &str) -> Result<Option<String>, AuthFailure> {
        let msg = scram_msg::parse_client_final(text)?;
        let mut expected_binding = pending.gs2_header.as_bytes().to_vec();
        if self.plus {
            expected_binding.extend_from_slice(self.channel_binding.as_deref().unwrap_or_default());
        }
        if !crypto::ct_eq(&msg.channel_binding, &expected_binding) {
            return Err(SaslError::ChannelBindingsDontMatch.into());
        }
        if msg.nonce != pending.nonce {
            return Err(SaslError::NonceMismatch.into());
        }
        if msg.proof.len() != self.hash.len() {
            return Err(SaslError::ProofLength.into());
        }
        if pending.refused.is_some() {
            return Ok(None);
        }
        let auth_message = format!("{},{}", pending.auth_prefix, msg.without_proof);
        let keys = &pending.keys;
        let client_signature = self
            .hash
            .hmac(&keys.stored_key.0, &[auth_message.as_bytes()])?;
        let client_key = crypto::xor(&msg.proof, &client_signature);
        let proof_ok = crypto::ct_eq(&self.hash.hash(&client_key), &keys.stored_key.0);
        let server_signature = self
            .hash
            .hmac(&keys.server_key.0, &[auth_message.as_bytes()])?;
        Ok(proof_ok.then(|| format!("v={}", BASE64.encode(server_signature))))
    }
}
