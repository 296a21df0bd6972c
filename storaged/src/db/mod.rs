//! The database: one sled instance, opened only by storaged, only through this module.
//!
//! Trees and keys:
//! - `meta`: `schema` → u32 version; `uidvalidity` → next UIDVALIDITY (u32).
//! - `domains`: domain → [`record::Domain`].
//! - `accounts`: account name → [`record::Account`].
//! - `addresses`: normalized address (`local@domain`, or `@domain` for a catch-all) → account.
//! - `mailboxes`: mailbox id (u64 BE) → [`record::Mailbox`].
//! - `mailbox_names`: account NUL name → mailbox id.
//! - `messages`: mailbox id (u64 BE) ‖ uid (u32 BE) → [`record::Message`].
//! - `tombstones`: mailbox id ‖ uid → modseq (u64 BE) of the expunge, for QRESYNC.
//!
//! Every change that spans trees runs in one sled transaction; [`Db::flush`] makes everything
//! committed so far durable (fsync) and is called before any change is acknowledged.

pub mod keys;
pub mod record;

use std::path::Path;

use crate::error::{Result, StoreError};

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The open database and its trees.
#[derive(Debug, Clone)]
pub struct Db {
    db: sled::Db,
    pub(crate) meta: sled::Tree,
    pub(crate) domains: sled::Tree,
    pub(crate) accounts: sled::Tree,
    pub(crate) addresses: sled::Tree,
    pub(crate) mailboxes: sled::Tree,
    pub(crate) mailbox_names: sled::Tree,
    pub(crate) messages: sled::Tree,
    pub(crate) tombstones: sled::Tree,
}

impl Db {
    /// Opens (creating if needed) the database in `dir`, checking its schema version.
    pub fn open(dir: &Path) -> Result<Db> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let tree = |name: &str| db.open_tree(name);
        let this = Db {
            meta: tree("meta")?,
            domains: tree("domains")?,
            accounts: tree("accounts")?,
            addresses: tree("addresses")?,
            mailboxes: tree("mailboxes")?,
            mailbox_names: tree("mailbox_names")?,
            messages: tree("messages")?,
            tombstones: tree("tombstones")?,
            db,
        };
        match this.meta.get("schema")? {
            None => {
                this.meta.insert("schema", &SCHEMA_VERSION.to_be_bytes())?;
                this.meta.insert("uidvalidity", &1u32.to_be_bytes())?;
                this.flush()?;
            }
            Some(v) => {
                let found = keys::u32_of("meta", &v)?;
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        found,
                        known: SCHEMA_VERSION,
                    });
                }
            }
        }
        Ok(this)
    }

    /// Makes every committed change durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// A new unique id (message files); never reused, also across crashes.
    pub fn new_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }

    /// Writes a consistent copy of the whole database to `dir` (which must not exist).
    pub fn export_to(&self, dir: &Path) -> Result<()> {
        let copy = sled::Config::new().path(dir).create_new(true).open()?;
        copy.import(self.db.export());
        copy.flush()?;
        Ok(())
    }
}

/// Current time in seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
