//! Domains, accounts and addresses, and resolving a recipient address to its account.
//!
//! Addresses are normalized to lower case (local part and domain). A domain may have a
//! local-part separator (`+`): `user+tag@domain` then reaches `user@domain`. A catch-all is the
//! address `@domain`. Resolution tries the exact address, then the address without its tag,
//! then the catch-all.

use sled::Transactional;
use sled::transaction::ConflictableTransactionError as TxError;

use crate::db::record::{self, Account, Counts, Domain, Mailbox, SpecialUse};
use crate::db::{Db, keys, now, tx};
use crate::error::{Result, StoreError};

/// An address split and normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Empty for a catch-all.
    pub local: String,
    pub domain: String,
}

impl Address {
    /// Parses `local@domain` (or `@domain` when `allow_catchall`).
    pub fn parse(s: &str, allow_catchall: bool) -> Result<Address> {
        let invalid = |why: &str| StoreError::Invalid {
            what: "address",
            why: format!("`{s}`: {why}"),
        };
        let (local, domain) = s.rsplit_once('@').ok_or_else(|| invalid("no @"))?;
        if local.is_empty() && !allow_catchall {
            return Err(invalid("empty local part"));
        }
        if local.len() > 64
            || local
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '@')
        {
            return Err(invalid("bad local part"));
        }
        Ok(Address {
            local: local.to_lowercase(),
            domain: normalize_domain(domain)?,
        })
    }

    pub fn key(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

/// Lower-cases and checks a domain name. Internationalized domains are taken in their ASCII
/// (A-label, `xn--…`) form.
pub fn normalize_domain(d: &str) -> Result<String> {
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !ok {
        return Err(StoreError::Invalid {
            what: "domain",
            why: format!("`{d}` (use the A-label form for internationalized names)"),
        });
    }
    Ok(d)
}

/// Account names: 1–64 of letters, digits, `.`, `_`, `-`; used as keys, never as paths.
pub fn check_account_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: "account name",
            why: format!("`{name}`: use 1-64 letters, digits, '.', '_' or '-'"),
        })
    }
}

impl Db {
    pub fn add_domain(&self, domain: &str, separator: Option<char>) -> Result<String> {
        let domain = normalize_domain(domain)?;
        let record = record::encode(&Domain {
            localpart_separator: separator,
            created: now(),
        })?;
        if self
            .domains
            .compare_and_swap(&domain, None::<&[u8]>, Some(record))?
            .is_err()
        {
            return Err(StoreError::DomainExists(domain));
        }
        Ok(domain)
    }

    pub fn remove_domain(&self, domain: &str) -> Result<()> {
        let domain = normalize_domain(domain)?;
        let suffix = format!("@{domain}");
        for entry in self.addresses.iter() {
            let (k, _) = entry?;
            if k.ends_with(suffix.as_bytes()) {
                return Err(StoreError::DomainInUse(domain));
            }
        }
        self.domains
            .remove(&domain)?
            .ok_or(StoreError::NoDomain(domain))?;
        Ok(())
    }

    pub fn domains(&self) -> Result<Vec<(String, Domain)>> {
        self.domains
            .iter()
            .map(|e| {
                let (k, v) = e?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    record::decode("domains", &v)?,
                ))
            })
            .collect()
    }

    /// Creates an account with its first address and the special-use mailboxes.
    pub fn add_account(&self, name: &str, address: &str) -> Result<()> {
        check_account_name(name)?;
        let addr = Address::parse(address, false)?;
        if self.domains.get(&addr.domain)?.is_none() {
            return Err(StoreError::NoDomain(addr.domain));
        }
        let mut ids = Vec::new();
        for _ in SpecialUse::ALL {
            ids.push(self.new_id()?);
        }
        let account = record::encode(&Account {
            created: now(),
            modseq: 1,
        })?;
        (
            &self.accounts,
            &self.addresses,
            &self.mailboxes,
            &self.mailbox_names,
            &self.meta,
        )
            .transaction(|(accounts, addresses, mailboxes, names, meta)| {
                if accounts.get(name)?.is_some() {
                    return Err(TxError::Abort(StoreError::AccountExists(name.into())));
                }
                if let Some(owner) = addresses.get(addr.key())? {
                    return Err(TxError::Abort(StoreError::AddressTaken(
                        addr.key(),
                        String::from_utf8_lossy(&owner).into_owned(),
                    )));
                }
                accounts.insert(name, account.clone())?;
                addresses.insert(addr.key().as_bytes(), name)?;
                let mut uidvalidity = match meta.get("uidvalidity")? {
                    Some(v) => keys::u32_of("meta", &v).map_err(TxError::Abort)?,
                    None => 1,
                };
                for (special, id) in SpecialUse::ALL.into_iter().zip(&ids) {
                    let mailbox = Mailbox {
                        account: name.into(),
                        name: special.default_name().into(),
                        uidvalidity,
                        uidnext: 1,
                        highest_modseq: 1,
                        special_use: Some(special),
                        subscribed: true,
                        counts: Counts::default(),
                    };
                    uidvalidity = uidvalidity.wrapping_add(1).max(1);
                    let encoded = record::encode(&mailbox).map_err(TxError::Abort)?;
                    mailboxes.insert(&keys::mailbox(*id), encoded)?;
                    names.insert(keys::mailbox_name(name, &mailbox.name), &keys::mailbox(*id))?;
                }
                meta.insert("uidvalidity", &uidvalidity.to_be_bytes())?;
                Ok(())
            })?;
        Ok(())
    }

    /// Removes an account, its addresses, mailboxes and messages. Returns the message files
    /// to unlink (after the change is durable).
    pub fn remove_account(&self, name: &str) -> Result<Vec<u64>> {
        // Mailboxes, messages and addresses are listed outside the transaction; every change to
        // them bumps the account's modseq, which the transaction checks: on a change, redo.
        for _ in 0..10 {
            match self.try_remove_account(name) {
                Err(StoreError::Conflict) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict)
    }

    fn try_remove_account(&self, name: &str) -> Result<Vec<u64>> {
        let Some(seen) = self.accounts.get(name)? else {
            return Err(StoreError::NoAccount(name.into()));
        };
        let seen: Account = record::decode("accounts", &seen)?;
        let mailbox_ids = self.mailbox_ids(name)?;
        let mut files = Vec::new();
        let mut batch_messages = sled::Batch::default();
        let mut batch_tombstones = sled::Batch::default();
        for id in &mailbox_ids {
            for entry in self.messages.scan_prefix(keys::mailbox(*id)) {
                let (k, v) = entry?;
                let m: record::Message = record::decode("messages", &v)?;
                files.push(m.file);
                batch_messages.remove(k);
            }
            for entry in self.tombstones.scan_prefix(keys::mailbox(*id)) {
                batch_tombstones.remove(entry?.0);
            }
        }
        let addresses: Vec<sled::IVec> = self
            .addresses
            .iter()
            .filter_map(|e| e.ok())
            .filter(|(_, v)| v.as_ref() == name.as_bytes())
            .map(|(k, _)| k)
            .collect();
        (
            &self.accounts,
            &self.addresses,
            &self.mailboxes,
            &self.mailbox_names,
            &self.messages,
            &self.tombstones,
        )
            .transaction(
                |(accounts, addrs, mailboxes, names, messages, tombstones)| {
                    match accounts.remove(name)? {
                        Some(v) => {
                            let now: Account =
                                record::decode("accounts", &v).map_err(TxError::Abort)?;
                            if now.modseq != seen.modseq {
                                return Err(TxError::Abort(StoreError::Conflict));
                            }
                        }
                        None => return Err(TxError::Abort(StoreError::NoAccount(name.into()))),
                    }
                    for a in &addresses {
                        addrs.remove(a)?;
                    }
                    for id in &mailbox_ids {
                        if let Some(v) = mailboxes.remove(&keys::mailbox(*id))? {
                            let m: Mailbox =
                                record::decode("mailboxes", &v).map_err(TxError::Abort)?;
                            names.remove(keys::mailbox_name(name, &m.name))?;
                        }
                    }
                    messages.apply_batch(&batch_messages)?;
                    tombstones.apply_batch(&batch_tombstones)?;
                    Ok(())
                },
            )?;
        Ok(files)
    }

    pub fn add_address(&self, address: &str, account: &str) -> Result<String> {
        let addr = Address::parse(address, true)?;
        if self.domains.get(&addr.domain)?.is_none() {
            return Err(StoreError::NoDomain(addr.domain));
        }
        (&self.accounts, &self.addresses).transaction(|(accounts, addresses)| {
            // Bumping the modseq makes a concurrent removal of the account notice the address.
            tx::touch_account(accounts, account)?;
            if let Some(owner) = addresses.get(addr.key())? {
                return Err(TxError::Abort(StoreError::AddressTaken(
                    addr.key(),
                    String::from_utf8_lossy(&owner).into_owned(),
                )));
            }
            addresses.insert(addr.key().as_bytes(), account)?;
            Ok(())
        })?;
        Ok(addr.key())
    }

    pub fn remove_address(&self, address: &str) -> Result<()> {
        let addr = Address::parse(address, true)?;
        let account = self
            .addresses
            .get(addr.key())?
            .ok_or_else(|| StoreError::NoAddress(addr.key()))?;
        let others = self
            .addresses
            .iter()
            .filter_map(|e| e.ok())
            .filter(|(_, v)| *v == account)
            .count();
        if others <= 1 {
            return Err(StoreError::Invalid {
                what: "address removal",
                why: format!(
                    "`{}` is the last address of its account; remove the account instead",
                    addr.key()
                ),
            });
        }
        self.addresses.remove(addr.key())?;
        Ok(())
    }

    /// Every account with its addresses.
    pub fn accounts(&self) -> Result<Vec<(String, Vec<String>)>> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for e in self.accounts.iter() {
            let (k, _) = e?;
            out.push((String::from_utf8_lossy(&k).into_owned(), Vec::new()));
        }
        for e in self.addresses.iter() {
            let (k, v) = e?;
            if let Some((_, list)) = out.iter_mut().find(|(n, _)| n.as_bytes() == v.as_ref()) {
                list.push(String::from_utf8_lossy(&k).into_owned());
            }
        }
        Ok(out)
    }

    /// The account a recipient address delivers to, if any.
    pub fn resolve(&self, address: &str) -> Result<Option<String>> {
        let Ok(addr) = Address::parse(address, false) else {
            return Ok(None);
        };
        let lookup = |key: &str| -> Result<Option<String>> {
            Ok(self
                .addresses
                .get(key)?
                .map(|v| String::from_utf8_lossy(&v).into_owned()))
        };
        if let Some(a) = lookup(&addr.key())? {
            return Ok(Some(a));
        }
        let Some(domain) = self.domains.get(&addr.domain)? else {
            return Ok(None);
        };
        let domain: Domain = record::decode("domains", &domain)?;
        if let Some(sep) = domain.localpart_separator
            && let Some((base, _tag)) = addr.local.split_once(sep)
            && !base.is_empty()
            && let Some(a) = lookup(&format!("{base}@{}", addr.domain))?
        {
            return Ok(Some(a));
        }
        lookup(&format!("@{}", addr.domain))
    }

    /// Whether mail for `address` is delivered here, or its domain is not ours.
    pub fn recipient_status(&self, address: &str) -> Result<ipc::msg::store::RecipientStatus> {
        use ipc::msg::store::RecipientStatus;
        if self.resolve(address)?.is_some() {
            return Ok(RecipientStatus::Local);
        }
        let ours = match Address::parse(address, false) {
            Ok(addr) => self.domains.get(&addr.domain)?.is_some(),
            Err(_) => false,
        };
        Ok(if ours {
            RecipientStatus::Unknown
        } else {
            RecipientStatus::NotLocal
        })
    }

    /// The account a login name belongs to: an account name, or exactly one of its addresses
    /// (no tags, no catch-all: those are for delivery, not for logging in).
    pub fn login_account(&self, username: &str) -> Result<Option<String>> {
        if !username.contains('@') {
            return Ok(self.accounts.get(username)?.map(|_| username.to_string()));
        }
        let Ok(addr) = Address::parse(username, false) else {
            return Ok(None);
        };
        Ok(self
            .addresses
            .get(addr.key())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The ids of an account's mailboxes.
    pub fn mailbox_ids(&self, account: &str) -> Result<Vec<u64>> {
        self.mailbox_names
            .scan_prefix(keys::account_prefix(account))
            .map(|e| keys::u64_of("mailbox_names", &e?.1))
            .collect()
    }

    /// A mailbox of an account by name (`Inbox` matches case-insensitively).
    pub fn mailbox_by_name(&self, account: &str, name: &str) -> Result<Option<(u64, Mailbox)>> {
        let name = if name.eq_ignore_ascii_case("inbox") {
            "Inbox"
        } else {
            name
        };
        let Some(id) = self.mailbox_names.get(keys::mailbox_name(account, name))? else {
            return Ok(None);
        };
        let id = keys::u64_of("mailbox_names", &id)?;
        Ok(self.mailbox(id)?.map(|m| (id, m)))
    }

    /// The mailboxes of an account, by name, for administrators.
    pub fn mailbox_list(&self, account: &str) -> Result<Vec<ipc::msg::store::MailboxInfo>> {
        if self.accounts.get(account)?.is_none() {
            return Err(StoreError::NoAccount(account.into()));
        }
        let mut out = Vec::new();
        for id in self.mailbox_ids(account)? {
            let Some(m) = self.mailbox(id)? else { continue };
            out.push(mailbox_info(m));
        }
        Ok(out)
    }

    pub fn mailbox(&self, id: u64) -> Result<Option<Mailbox>> {
        self.mailboxes
            .get(keys::mailbox(id))?
            .map(|v| record::decode("mailboxes", &v))
            .transpose()
    }
}

/// A mailbox as listed to a client or an administrator.
pub(crate) fn mailbox_info(m: Mailbox) -> ipc::msg::store::MailboxInfo {
    ipc::msg::store::MailboxInfo {
        subscribed: m.subscribed,
        special_use: m.special_use.map(|s| s.default_name().to_string()),
        uidvalidity: m.uidvalidity,
        uidnext: ipc::msg::types::Uid(m.uidnext),
        highest_modseq: ipc::msg::types::ModSeq(m.highest_modseq),
        total: m.counts.total,
        unseen: m.counts.unseen,
        deleted: m.counts.deleted,
        size: m.counts.size,
        name: m.name,
    }
}
