//! Mailbox operations of an account: create (with missing parents), rename (with children),
//! delete, subscribe. Names are `/`-separated strings, never paths. `Inbox` is matched
//! case-insensitively, cannot be deleted, and cannot be renamed here yet.

use sled::Transactional;
use sled::transaction::ConflictableTransactionError as TxError;

use crate::db::record::{self, Counts, Mailbox};
use crate::db::{Db, keys, tx};
use crate::error::{Result, StoreError};

/// Checks a mailbox name: non-empty components separated by `/`, no control characters.
pub fn check_name(name: &str) -> Result<String> {
    let invalid = |why: &str| StoreError::Invalid {
        what: "mailbox name",
        why: format!("`{}`: {why}", name.escape_debug()),
    };
    if name.is_empty() || name.len() > 512 {
        return Err(invalid("must be 1-512 bytes"));
    }
    if name.split('/').any(str::is_empty) {
        return Err(invalid("empty hierarchy level"));
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return Err(invalid("control characters and wildcards are not allowed"));
    }
    // "inbox" in any case is the Inbox, also as a parent.
    Ok(match name.split_once('/') {
        Some((first, rest)) if first.eq_ignore_ascii_case("inbox") => format!("Inbox/{rest}"),
        None if name.eq_ignore_ascii_case("inbox") => "Inbox".to_string(),
        _ => name.to_string(),
    })
}

impl Db {
    /// Creates `name` and any missing parents; returns the new mailbox's id.
    pub fn create_mailbox(&self, account: &str, name: &str) -> Result<u64> {
        let name = check_name(name)?;
        if self.accounts.get(account)?.is_none() {
            return Err(StoreError::NoAccount(account.into()));
        }
        let mut wanted = Vec::new();
        let mut prefix = String::new();
        for part in name.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            wanted.push(prefix.clone());
        }
        let ids = wanted
            .iter()
            .map(|_| self.new_id())
            .collect::<Result<Vec<u64>>>()?;
        let created = (
            &self.mailboxes,
            &self.mailbox_names,
            &self.meta,
            &self.accounts,
        )
            .transaction(|(mailboxes, names, meta, accounts)| {
                // The account must still exist; bumping its modseq makes a concurrent removal
                // of the account notice this mailbox.
                tx::touch_account(accounts, account)?;
                if names.get(keys::mailbox_name(account, &name))?.is_some() {
                    return Err(TxError::Abort(StoreError::Invalid {
                        what: "mailbox",
                        why: format!("`{name}` exists already"),
                    }));
                }
                let mut uidvalidity = match meta.get("uidvalidity")? {
                    Some(v) => keys::u32_of("meta", &v).map_err(TxError::Abort)?,
                    None => 1,
                };
                let mut last = 0;
                for (path, id) in wanted.iter().zip(&ids) {
                    if let Some(existing) = names.get(keys::mailbox_name(account, path))? {
                        last = keys::u64_of("mailbox_names", &existing).map_err(TxError::Abort)?;
                        continue;
                    }
                    let mailbox = Mailbox {
                        account: account.into(),
                        name: path.clone(),
                        uidvalidity,
                        uidnext: 1,
                        highest_modseq: 1,
                        special_use: None,
                        subscribed: true,
                        counts: Counts::default(),
                    };
                    uidvalidity = uidvalidity.wrapping_add(1).max(1);
                    mailboxes.insert(
                        &keys::mailbox(*id),
                        record::encode(&mailbox).map_err(TxError::Abort)?,
                    )?;
                    names.insert(keys::mailbox_name(account, path), &keys::mailbox(*id))?;
                    last = *id;
                }
                meta.insert("uidvalidity", &uidvalidity.to_be_bytes())?;
                Ok(last)
            })?;
        Ok(created)
    }

    /// Renames `from` and its children to `to`. New UIDVALIDITY is not needed: ids stay.
    pub fn rename_mailbox(&self, account: &str, from: &str, to: &str) -> Result<()> {
        let (from, to) = (check_name(from)?, check_name(to)?);
        if from == "Inbox" || to == "Inbox" || to.starts_with(&format!("{from}/")) {
            return Err(StoreError::Invalid {
                what: "rename",
                why: format!("cannot rename `{from}` to `{to}`"),
            });
        }
        let moves: Vec<(String, u64)> = self
            .mailbox_names
            .scan_prefix(keys::account_prefix(account))
            .map(|e| -> Result<(String, u64)> {
                let (k, v) = e?;
                let name = String::from_utf8_lossy(&k[account.len() + 1..]).into_owned();
                Ok((name, keys::u64_of("mailbox_names", &v)?))
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|(n, _)| *n == from || n.starts_with(&format!("{from}/")))
            .collect();
        if moves.is_empty() {
            return Err(StoreError::NoMailbox(from));
        }
        (&self.mailboxes, &self.mailbox_names).transaction(|(mailboxes, names)| {
            for (old, id) in &moves {
                let new = format!("{to}{}", &old[from.len()..]);
                if names.get(keys::mailbox_name(account, &new))?.is_some() {
                    return Err(TxError::Abort(StoreError::Invalid {
                        what: "rename",
                        why: format!("`{new}` exists already"),
                    }));
                }
                let mut m: Mailbox = match mailboxes.get(keys::mailbox(*id))? {
                    Some(v) => record::decode("mailboxes", &v).map_err(TxError::Abort)?,
                    None => return Err(TxError::Abort(StoreError::NoMailbox(old.clone()))),
                };
                m.name = new.clone();
                names.remove(keys::mailbox_name(account, old))?;
                names.insert(keys::mailbox_name(account, &new), &keys::mailbox(*id))?;
                mailboxes.insert(
                    &keys::mailbox(*id),
                    record::encode(&m).map_err(TxError::Abort)?,
                )?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Deletes a mailbox without children, with its messages; returns the files to unlink
    /// once the change is durable.
    pub fn delete_mailbox(&self, account: &str, name: &str) -> Result<Vec<u64>> {
        // The messages are listed outside the transaction; if the mailbox changes meanwhile
        // (an append, a flag change), the transaction notices and the whole thing is redone.
        for _ in 0..10 {
            match self.try_delete_mailbox(account, name) {
                Err(StoreError::Conflict) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict)
    }

    fn try_delete_mailbox(&self, account: &str, name: &str) -> Result<Vec<u64>> {
        let name = check_name(name)?;
        if name == "Inbox" {
            return Err(StoreError::Invalid {
                what: "delete",
                why: "the Inbox cannot be deleted".into(),
            });
        }
        let (id, seen) = self
            .mailbox_by_name(account, &name)?
            .ok_or_else(|| StoreError::NoMailbox(name.clone()))?;
        let child_prefix = keys::mailbox_name(account, &format!("{name}/"));
        if self
            .mailbox_names
            .scan_prefix(child_prefix)
            .next()
            .is_some()
        {
            return Err(StoreError::Invalid {
                what: "delete",
                why: format!("`{name}` has children; delete them first"),
            });
        }
        let mut files = Vec::new();
        let mut messages = sled::Batch::default();
        for e in self.messages.scan_prefix(keys::mailbox(id)) {
            let (k, v) = e?;
            files.push(record::decode::<record::Message>("messages", &v)?.file);
            messages.remove(k);
        }
        let mut tombstones = sled::Batch::default();
        for e in self.tombstones.scan_prefix(keys::mailbox(id)) {
            tombstones.remove(e?.0);
        }
        (
            &self.mailboxes,
            &self.mailbox_names,
            &self.messages,
            &self.tombstones,
        )
            .transaction(|(mb, names, msgs, tombs)| {
                let now: Option<Mailbox> = match mb.get(keys::mailbox(id))? {
                    Some(v) => Some(record::decode("mailboxes", &v).map_err(TxError::Abort)?),
                    None => None,
                };
                match now {
                    Some(m)
                        if m.uidnext == seen.uidnext && m.highest_modseq == seen.highest_modseq => {
                    }
                    Some(_) => return Err(TxError::Abort(StoreError::Conflict)),
                    None => return Err(TxError::Abort(StoreError::NoMailbox(name.clone()))),
                }
                mb.remove(&keys::mailbox(id))?;
                names.remove(keys::mailbox_name(account, &name))?;
                msgs.apply_batch(&messages)?;
                tombs.apply_batch(&tombstones)?;
                Ok(())
            })?;
        Ok(files)
    }

    /// Marks a mailbox subscribed or not. The record is re-read inside the transaction: a
    /// copy read earlier could roll back a concurrent delivery's UIDNEXT and counts.
    pub fn subscribe(&self, account: &str, name: &str, subscribed: bool) -> Result<()> {
        let name = check_name(name)?;
        let name_key = keys::mailbox_name(account, &name);
        (&self.mailboxes, &self.mailbox_names).transaction(|(mailboxes, names)| {
            let Some(id) = names.get(&name_key)? else {
                return Err(TxError::Abort(StoreError::NoMailbox(name.clone())));
            };
            let Some(v) = mailboxes.get(&id)? else {
                return Err(TxError::Abort(StoreError::NoMailbox(name.clone())));
            };
            let mut m: Mailbox = record::decode("mailboxes", &v).map_err(TxError::Abort)?;
            m.subscribed = subscribed;
            mailboxes.insert(&id, record::encode(&m).map_err(TxError::Abort)?)?;
            Ok(())
        })?;
        Ok(())
    }
}
