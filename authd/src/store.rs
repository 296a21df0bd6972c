//! The credential store: every account's [`Credentials`] in one file in authd's directory.
//!
//! The whole map is loaded at start and rewritten on every change through
//! [`crate::persist::write_atomic`] (temp file, fsync, rename, fsync of the directory), so a
//! change that returned `Ok` survives a crash and a crash never leaves a torn file. The file also
//! keeps the secret behind the [`Decoy`] answers, so an unknown user's fake SCRAM salt does not
//! change when authd restarts.
//!
//! Format: magic `moxdcred`, version 1, then (bincode) the decoy secret and a sorted map from
//! account name to credentials.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::credentials::{CredentialLookup, Credentials, Decoy, Entry, HashCost};
use crate::error::StoreError;
use crate::{crypto, persist};

/// The store's file name inside its directory.
pub const FILE_NAME: &str = "credentials";
const MAGIC: &[u8; 8] = b"moxdcred";
const VERSION: u32 = 1;

/// Accounts and their credentials, persisted in one directory.
pub struct CredentialStore {
    dir: PathBuf,
    cost: HashCost,
    decoy_secret: [u8; 32],
    decoy: Decoy,
    accounts: HashMap<String, Credentials>,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore")
            .field("dir", &self.dir)
            .field("accounts", &self.accounts.len())
            .finish_non_exhaustive()
    }
}

/// The file's contents.
#[derive(Serialize, Deserialize)]
struct StoreFile {
    decoy_secret: [u8; 32],
    accounts: BTreeMap<String, Credentials>,
}

impl CredentialStore {
    /// Loads the store from `dir`, or creates an empty one there (the directory must exist).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cost(dir, HashCost::DEFAULT)
    }

    pub(crate) fn open_with_cost(dir: &Path, cost: HashCost) -> Result<Self, StoreError> {
        let (decoy_secret, accounts, created) = match persist::read(dir, FILE_NAME)? {
            Some(bytes) => {
                let path = dir.join(FILE_NAME);
                let file: StoreFile =
                    persist::decode(MAGIC, VERSION, "credential store", &path, &bytes)?;
                (
                    file.decoy_secret,
                    file.accounts.into_iter().collect(),
                    false,
                )
            }
            None => (crypto::random()?, HashMap::new(), true),
        };
        let store = CredentialStore {
            dir: dir.to_path_buf(),
            cost,
            decoy: Decoy::with_cost(decoy_secret, cost)?,
            decoy_secret,
            accounts,
        };
        if created {
            store.save()?;
        }
        Ok(store)
    }

    /// Sets (or replaces) `account`'s password, durably, before returning.
    pub fn set_password(&mut self, account: &str, password: &str) -> Result<(), StoreError> {
        if account.is_empty() {
            return Err(StoreError::Refused("the account name is empty"));
        }
        if password.is_empty() {
            return Err(StoreError::Refused("the password is empty"));
        }
        let credentials = Credentials::derive_with(password, self.cost)?;
        let previous = self.accounts.insert(account.to_owned(), credentials);
        self.save().inspect_err(|_| {
            // Keep memory equal to the file: undo the change that could not be written.
            match previous {
                Some(old) => self.accounts.insert(account.to_owned(), old),
                None => self.accounts.remove(account),
            };
        })
    }

    /// Removes `account`, durably; `false` if it had no credentials.
    pub fn remove(&mut self, account: &str) -> Result<bool, StoreError> {
        let Some(previous) = self.accounts.remove(account) else {
            return Ok(false);
        };
        self.save().inspect_err(|_| {
            self.accounts.insert(account.to_owned(), previous);
        })?;
        Ok(true)
    }

    /// `account`'s credentials.
    pub fn get(&self, account: &str) -> Option<&Credentials> {
        self.accounts.get(account)
    }

    /// The names of all accounts with credentials, sorted.
    pub fn accounts(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.accounts.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    fn save(&self) -> Result<(), StoreError> {
        let file = StoreFileRef {
            decoy_secret: &self.decoy_secret,
            accounts: self.accounts.iter().collect(),
        };
        let bytes = persist::encode(MAGIC, VERSION, "credential store", &file)?;
        persist::write_atomic(&self.dir, FILE_NAME, &bytes)
    }
}

/// [`StoreFile`] by reference, for writing without cloning every credential.
#[derive(Serialize)]
struct StoreFileRef<'a> {
    decoy_secret: &'a [u8; 32],
    accounts: BTreeMap<&'a String, &'a Credentials>,
}

impl CredentialLookup for CredentialStore {
    fn lookup(&self, username: &str) -> Option<Entry<'_>> {
        self.accounts
            .get_key_value(username)
            .map(|(account, credentials)| Entry {
                account,
                credentials,
            })
    }

    fn decoy(&self) -> &Decoy {
        &self.decoy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::verify_password;
    use crate::crypto::ScramHash;

    fn open(dir: &Path) -> CredentialStore {
        CredentialStore::open_with_cost(dir, HashCost::FAST).unwrap()
    }

    #[test]
    fn creates_the_file_on_first_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        assert!(dir.path().join(FILE_NAME).exists());
        assert!(store.accounts().is_empty());
    }

    #[test]
    fn reloads_the_same_credentials_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_password("alice", "wonderland").unwrap();
        store.set_password("bob", "builder").unwrap();
        let salt = store
            .get("alice")
            .unwrap()
            .scram(ScramHash::Sha256)
            .salt
            .clone();
        let decoy_salt = store.decoy().scram(ScramHash::Sha1, "nobody").unwrap().salt;
        drop(store);

        let store = open(dir.path());
        assert_eq!(store.accounts(), ["alice", "bob"]);
        let alice = store.get("alice").unwrap();
        assert!(verify_password(alice, "wonderland"));
        assert!(!verify_password(alice, "builder"));
        assert_eq!(alice.scram(ScramHash::Sha256).salt, salt);
        let again = store.decoy().scram(ScramHash::Sha1, "nobody").unwrap().salt;
        assert_eq!(again, decoy_salt, "the decoy secret survives a restart");
    }

    #[test]
    fn replaces_and_removes_durably() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_password("alice", "old").unwrap();
        store.set_password("alice", "new").unwrap();
        assert!(store.remove("bob").is_ok_and(|removed| !removed));
        store.set_password("bob", "x").unwrap();
        assert!(store.remove("bob").unwrap());
        drop(store);

        let store = open(dir.path());
        assert_eq!(store.accounts(), ["alice"]);
        assert!(verify_password(store.get("alice").unwrap(), "new"));
        assert!(!verify_password(store.get("alice").unwrap(), "old"));
    }

    #[test]
    fn ignores_and_removes_a_stale_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_password("alice", "wonderland").unwrap();
        drop(store);
        // A crash between creating the temporary file and the rename leaves this behind.
        let temp = dir.path().join(format!(".{FILE_NAME}.tmp"));
        std::fs::write(&temp, b"moxdcred\0\0\0\x01garbage").unwrap();

        let store = open(dir.path());
        assert!(verify_password(store.get("alice").unwrap(), "wonderland"));
        assert!(!temp.exists());
    }

    #[test]
    fn keeps_memory_and_file_equal_when_a_write_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_password("alice", "one").unwrap();
        store.dir = dir.path().join("missing");
        assert!(store.set_password("alice", "two").is_err());
        assert!(store.remove("alice").is_err());
        assert!(verify_password(store.get("alice").unwrap(), "one"));
    }

    #[test]
    fn refuses_a_corrupt_file_instead_of_starting_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"not a store").unwrap();
        let err = CredentialStore::open_with_cost(dir.path(), HashCost::FAST).unwrap_err();
        assert!(matches!(err, StoreError::Format { .. }), "{err}");
    }

    #[test]
    fn refuses_empty_names_and_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        assert!(store.set_password("", "x").is_err());
        assert!(store.set_password("alice", "").is_err());
    }

    #[test]
    fn looks_up_by_the_name_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_password("alice", "x").unwrap();
        assert_eq!(store.lookup("alice").unwrap().account, "alice");
        assert!(store.lookup("Alice").is_none());
    }
}
