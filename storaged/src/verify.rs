//! `verifydata`: the database against the message files — counts, UID order, file presence and
//! size, indexes, orphans. Tests run it after every operation.

use std::collections::{BTreeMap, HashSet};

use crate::db::record::{self, Counts, Mailbox, Message};
use crate::db::{Db, keys};
use crate::error::Result;
use crate::files::Files;

/// Checks a data directory that no server is using (or a backup): opens its database (refused
/// while a storaged holds it) and checks it against its files.
pub fn verify_dir(dir: &std::path::Path) -> Result<Vec<String>> {
    if !dir.join("db").is_dir() {
        return Err(crate::error::StoreError::Invalid {
            what: "directory",
            why: format!(
                "{} has no db/: not a storaged directory or backup",
                dir.display()
            ),
        });
    }
    let db = Db::open(&dir.join("db"))?;
    let files = Files::open(dir)?;
    verify(&db, &files)
}

/// Checks everything; returns one line per problem (empty: consistent).
pub fn verify(db: &Db, files: &Files) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let on_disk: BTreeMap<u64, u64> = files.list()?.into_iter().collect();
    let mut referenced = HashSet::new();
    let mut mailboxes: BTreeMap<u64, Mailbox> = BTreeMap::new();
    for e in db.mailboxes.iter() {
        let (k, v) = e?;
        mailboxes.insert(
            keys::u64_of("mailboxes", &k)?,
            record::decode("mailboxes", &v)?,
        );
    }
    let accounts: HashSet<String> = db
        .accounts
        .iter()
        .filter_map(|e| e.ok())
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect();

    for (id, mailbox) in &mailboxes {
        if !accounts.contains(&mailbox.account) {
            problems.push(format!(
                "mailbox {id} ({}) belongs to missing account {}",
                mailbox.name, mailbox.account
            ));
        }
        match db
            .mailbox_names
            .get(keys::mailbox_name(&mailbox.account, &mailbox.name))?
        {
            Some(v) if keys::u64_of("mailbox_names", &v)? == *id => {}
            _ => problems.push(format!(
                "mailbox {id} ({}/{}) missing from the name index",
                mailbox.account, mailbox.name
            )),
        }
        let mut counts = Counts::default();
        let mut last_uid = 0;
        for e in db.messages.scan_prefix(keys::mailbox(*id)) {
            let (k, v) = e?;
            let (_, uid) = keys::split_message("messages", &k)?;
            let message: Message = record::decode("messages", &v)?;
            counts.add(&message);
            if uid <= last_uid || uid >= mailbox.uidnext {
                problems.push(format!(
                    "{}/{} uid {uid} out of order (uidnext {})",
                    mailbox.account, mailbox.name, mailbox.uidnext
                ));
            }
            last_uid = uid;
            if message.modseq > mailbox.highest_modseq {
                problems.push(format!(
                    "{}/{} uid {uid}: modseq {} above the mailbox's {}",
                    mailbox.account, mailbox.name, message.modseq, mailbox.highest_modseq
                ));
            }
            if !referenced.insert(message.file) {
                problems.push(format!("file {:x} referenced twice", message.file));
            }
            match on_disk.get(&message.file) {
                None => problems.push(format!(
                    "{}/{} uid {uid}: file {:x} missing",
                    mailbox.account, mailbox.name, message.file
                )),
                Some(size) if *size != message.size => problems.push(format!(
                    "{}/{} uid {uid}: file {:x} has {size} bytes, database says {}",
                    mailbox.account, mailbox.name, message.file, message.size
                )),
                Some(_) => {}
            }
        }
        if counts != mailbox.counts {
            problems.push(format!(
                "{}/{}: counts {:?}, messages add up to {counts:?}",
                mailbox.account, mailbox.name, mailbox.counts
            ));
        }
    }
    for e in db.mailbox_names.iter() {
        let (k, v) = e?;
        let id = keys::u64_of("mailbox_names", &v)?;
        if !mailboxes.contains_key(&id) {
            problems.push(format!(
                "name index entry {} points to missing mailbox {id}",
                String::from_utf8_lossy(&k).replace('\0', "/")
            ));
        }
    }
    for e in db.messages.iter() {
        let (k, _) = e?;
        let (mailbox, uid) = keys::split_message("messages", &k)?;
        if !mailboxes.contains_key(&mailbox) {
            problems.push(format!("message uid {uid} in missing mailbox {mailbox}"));
        }
    }
    for e in db.addresses.iter() {
        let (k, v) = e?;
        let account = String::from_utf8_lossy(&v).into_owned();
        if !accounts.contains(&account) {
            problems.push(format!(
                "address {} points to missing account {account}",
                String::from_utf8_lossy(&k)
            ));
        }
    }
    for id in on_disk.keys().filter(|id| !referenced.contains(id)) {
        problems.push(format!(
            "file {id:x} is not referenced (left by an interrupted delivery)"
        ));
    }
    Ok(problems)
}

/// Removes message files no message refers to, left by deliveries interrupted by a crash. Only
/// files with ids below `watermark` (a fresh id taken before the sweep) are considered, so a
/// delivery running meanwhile is never touched. Returns how many were removed.
pub fn sweep_orphans(db: &Db, files: &Files, watermark: u64) -> Result<usize> {
    let mut referenced = HashSet::new();
    for e in db.messages.iter() {
        let (_, v) = e?;
        let message: Message = record::decode("messages", &v)?;
        referenced.insert(message.file);
    }
    let mut removed = 0;
    for (id, _) in files.list()? {
        if id < watermark && !referenced.contains(&id) {
            files.remove(id)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Checks the files of deliveries a crash interrupted between writing their records and
/// knowing their files durable (`deliver::deliver_durably`): a file that is there with its
/// full size is kept; otherwise its record is taken back (no client was told the message was
/// delivered; it will send it again). Returns how many were taken back.
pub fn settle_pending(db: &Db, files: &Files) -> Result<usize> {
    let mut taken_back = 0;
    let pending = db.pending_files()?;
    for (id, mark) in &pending {
        let intact = std::fs::metadata(files.path(*id)).is_ok_and(|m| m.len() == mark.size);
        if !intact {
            tracing::warn!(
                "message {} of mailbox {}: its file did not survive a crash before the \
                 delivery was acknowledged; taking the message back",
                mark.uid,
                mark.mailbox
            );
            db.remove_uid(mark.mailbox, mark.uid)?;
            let _ = files.remove(*id);
            taken_back += 1;
        }
    }
    db.settle(&pending.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    if !pending.is_empty() {
        db.flush()?;
    }
    Ok(taken_back)
}

/// The largest id in use: mailbox ids, the files messages refer to, and files on disk.
pub fn max_used_id(db: &Db, files: &Files) -> Result<u64> {
    let mut max = files.list()?.last().map_or(0, |(id, _)| *id);
    if let Some((k, _)) = db.mailboxes.last()? {
        max = max.max(keys::u64_of("mailboxes", &k)?);
    }
    for e in db.messages.iter() {
        let (_, v) = e?;
        let message: Message = record::decode("messages", &v)?;
        max = max.max(message.file);
    }
    Ok(max)
}
