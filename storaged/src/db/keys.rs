//! Key encodings. Integers are big-endian so that keys sort numerically.

use crate::error::{Result, StoreError};

pub fn mailbox(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub fn mailbox_name(account: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(account.len() + 1 + name.len());
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The prefix of every `mailbox_names` key of an account.
pub fn account_prefix(account: &str) -> Vec<u8> {
    mailbox_name(account, "")
}

/// A change record: account NUL modseq.
pub fn feed(account: &str, modseq: u64) -> Vec<u8> {
    let mut k = account_prefix(account);
    k.extend_from_slice(&modseq.to_be_bytes());
    k
}

/// Splits a `feed` key into account and modseq.
pub fn split_feed(key: &[u8]) -> Result<(String, u64)> {
    let nul = key
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| corrupt("feed", "no separator"))?;
    let account =
        String::from_utf8(key[..nul].to_vec()).map_err(|_| corrupt("feed", "account not UTF-8"))?;
    Ok((account, u64_of("feed", &key[nul + 1..])?))
}

pub fn message(mailbox: u64, uid: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&mailbox.to_be_bytes());
    k[8..].copy_from_slice(&uid.to_be_bytes());
    k
}

/// Splits a `messages`/`tombstones` key.
pub fn split_message(tree: &'static str, key: &[u8]) -> Result<(u64, u32)> {
    let (Some(m), Some(u)) = (key.get(..8), key.get(8..12)) else {
        return Err(corrupt(tree, "short key"));
    };
    if key.len() != 12 {
        return Err(corrupt(tree, "long key"));
    }
    Ok((u64_of(tree, m)?, u32_of(tree, u)?))
}

pub fn u64_of(tree: &'static str, b: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(
        b.try_into().map_err(|_| corrupt(tree, "not a u64"))?,
    ))
}

pub fn u32_of(tree: &'static str, b: &[u8]) -> Result<u32> {
    Ok(u32::from_be_bytes(
        b.try_into().map_err(|_| corrupt(tree, "not a u32"))?,
    ))
}

fn corrupt(tree: &'static str, why: &str) -> StoreError {
    StoreError::Corrupt {
        tree,
        why: why.into(),
    }
}
