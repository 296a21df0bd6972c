//! The clear-text password mechanisms, PLAIN (RFC 4616) and LOGIN, both checked with argon2id.

use std::fmt;

use super::{AuthFailure, SaslError, Step};
use crate::credentials::{CredentialLookup, verify_password};

/// LOGIN's first challenge.
pub(super) const USERNAME_CHALLENGE: &[u8] = b"Username:";
/// LOGIN's second challenge.
pub(super) const PASSWORD_CHALLENGE: &[u8] = b"Password:";

/// Handles PLAIN's one message: `[authzid] NUL authcid NUL passwd`.
pub(super) fn plain(input: &[u8], creds: &dyn CredentialLookup) -> Step {
    let Ok(text) = std::str::from_utf8(input) else {
        return SaslError::NotUtf8.into();
    };
    let mut fields = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return SaslError::Syntax("PLAIN expects authzid NUL authcid NUL password").into();
    };
    if authcid.is_empty() {
        return SaslError::BadUsername.into();
    }
    if password.is_empty() {
        return SaslError::EmptyPassword.into();
    }
    if !authzid.is_empty() && authzid != authcid {
        return SaslError::AuthzidMismatch.into();
    }
    check(authcid, password, creds)
}

/// LOGIN: the username, then the password, each after its challenge.
pub(super) enum Login {
    AwaitingUsername,
    AwaitingPassword { username: String },
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Login::AwaitingUsername => f.write_str("AwaitingUsername"),
            Login::AwaitingPassword { .. } => f.write_str("AwaitingPassword"),
        }
    }
}

impl Login {
    pub(super) fn new() -> Self {
        Login::AwaitingUsername
    }

    pub(super) fn step(self, input: &[u8], creds: &dyn CredentialLookup) -> (Option<Self>, Step) {
        let Ok(text) = std::str::from_utf8(input) else {
            return (None, SaslError::NotUtf8.into());
        };
        match self {
            Login::AwaitingUsername => {
                if text.is_empty() || text.contains('\0') {
                    return (None, SaslError::BadUsername.into());
                }
                let next = Login::AwaitingPassword {
                    username: text.to_owned(),
                };
                (Some(next), Step::Continue(PASSWORD_CHALLENGE.to_vec()))
            }
            Login::AwaitingPassword { username } => {
                if text.is_empty() {
                    return (None, SaslError::EmptyPassword.into());
                }
                (None, check(&username, text, creds))
            }
        }
    }
}

/// Checks a clear-text password; an unknown user costs the same argon2 time and fails the same.
/// A refused attempt fails the same without any check (a guesser learns nothing from it, and
/// costs no argon2 time).
fn check(username: &str, password: &str, creds: &dyn CredentialLookup) -> Step {
    let entry = creds.lookup(username);
    let account = entry.map(|e| e.account);
    if let Some(reason) = creds.refusal(username, account) {
        return AuthFailure::bad(username, account, Some(reason)).into();
    }
    match entry {
        Some(entry) if verify_password(entry.credentials, password) => Step::Success {
            account: entry.account.to_owned(),
            additional: None,
        },
        Some(_) => AuthFailure::bad(username, account, None).into(),
        None => {
            creds.decoy().verify_password(password);
            AuthFailure::bad(username, None, None).into()
        }
    }
}
