//! Store-level tests: every operation followed by a full `verify`.

use crate::messages::UidSet;
use std::io::Write;

use crate::db::Db;
use crate::deliver::{Outcome, deliver};
use crate::error::StoreError;
use crate::files::Files;
use crate::verify::verify;

struct Fixture {
    _dir: tempfile::TempDir,
    db: Db,
    files: Files,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("db")).unwrap();
    let files = Files::open(dir.path()).unwrap();
    Fixture {
        _dir: dir,
        db,
        files,
    }
}

impl Fixture {
    fn check(&self) {
        let problems = verify(&self.db, &self.files).unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }

    fn deliver(&self, bytes: &[u8], rcpts: &[&str]) -> Vec<Outcome> {
        let mut f = self.files.temp_file().unwrap();
        f.write_all(bytes).unwrap();
        let rcpts: Vec<String> = rcpts.iter().map(|s| s.to_string()).collect();
        let out = deliver(&self.db, &self.files, &f, bytes.len() as u64, &rcpts).unwrap();
        self.db.flush().unwrap();
        self.check();
        out
    }
}

const MSG: &[u8] = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n";

#[test]
fn creates_accounts_with_special_use_mailboxes() {
    let f = fixture();
    f.db.add_domain("Example.COM", Some('+')).unwrap();
    f.db.add_account("bob", "Bob@example.com").unwrap();
    f.check();
    let names: Vec<String> =
        f.db.mailbox_ids("bob")
            .unwrap()
            .into_iter()
            .map(|id| f.db.mailbox(id).unwrap().unwrap().name)
            .collect();
    for want in ["Inbox", "Sent", "Drafts", "Trash", "Junk", "Archive"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let uidvalidities: std::collections::HashSet<u32> =
        f.db.mailbox_ids("bob")
            .unwrap()
            .into_iter()
            .map(|id| f.db.mailbox(id).unwrap().unwrap().uidvalidity)
            .collect();
    assert_eq!(uidvalidities.len(), 6, "distinct UIDVALIDITY per mailbox");
    assert_eq!(
        f.db.accounts().unwrap(),
        [("bob".to_string(), vec!["bob@example.com".to_string()])]
    );
}

#[test]
fn refuses_duplicates_and_unknown_domains() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    assert!(matches!(
        f.db.add_domain("EXAMPLE.com", None),
        Err(StoreError::DomainExists(_))
    ));
    assert!(matches!(
        f.db.add_account("bob", "bob@nowhere.test"),
        Err(StoreError::NoDomain(_))
    ));
    f.db.add_account("bob", "bob@example.com").unwrap();
    assert!(matches!(
        f.db.add_account("bob", "bob2@example.com"),
        Err(StoreError::AccountExists(_))
    ));
    assert!(matches!(
        f.db.add_account("eve", "BOB@example.com"),
        Err(StoreError::AddressTaken(..))
    ));
    assert!(matches!(
        f.db.add_account("../etc", "x@example.com"),
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        f.db.remove_domain("example.com"),
        Err(StoreError::DomainInUse(_))
    ));
    f.check();
}

#[test]
fn resolves_exact_tagged_and_catchall_addresses() {
    let f = fixture();
    f.db.add_domain("example.com", Some('+')).unwrap();
    f.db.add_domain("example.net", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    f.db.add_account("carol", "carol@example.net").unwrap();
    f.db.add_address("@example.net", "carol").unwrap();
    let r = |a: &str| f.db.resolve(a).unwrap();
    assert_eq!(r("bob@example.com").as_deref(), Some("bob"));
    assert_eq!(r("BOB@Example.Com").as_deref(), Some("bob"));
    assert_eq!(r("bob+news@example.com").as_deref(), Some("bob"));
    assert_eq!(r("alice@example.com"), None);
    assert_eq!(r("anyone@example.net").as_deref(), Some("carol"));
    assert_eq!(
        r("bob+x@example.net").as_deref(),
        Some("carol"),
        "no separator there: catch-all"
    );
    assert_eq!(r("bob@unknown.test"), None);
    assert_eq!(r("not an address"), None);
    use ipc::msg::store::RecipientStatus;
    let status = |a: &str| f.db.recipient_status(a).unwrap();
    assert_eq!(status("bob+x@example.com"), RecipientStatus::Local);
    assert_eq!(status("alice@example.com"), RecipientStatus::Unknown);
    assert_eq!(status("bob@unknown.test"), RecipientStatus::NotLocal);
    assert_eq!(status("not an address"), RecipientStatus::NotLocal);
    f.check();
}

#[test]
fn all_or_nothing_delivers_nothing_when_a_recipient_is_gone() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    f.db.add_account("carol", "carol@example.com").unwrap();
    let mut src = f.files.temp_file().unwrap();
    src.write_all(MSG).unwrap();
    let rcpts = vec![
        "bob@example.com".to_string(),
        "gone@example.com".to_string(),
    ];
    let strict = crate::deliver::Placement {
        all_or_nothing: true,
        ..Default::default()
    };
    let len = MSG.len() as u64;
    let err = crate::deliver::deliver_with(&f.db, &f.files, &src, len, &rcpts, &strict);
    assert!(
        matches!(&err, Err(StoreError::RecipientGone(r)) if r == "gone@example.com"),
        "{err:?}"
    );
    let inbox = |a: &str| {
        f.db.mailbox_by_name(a, "Inbox")
            .unwrap()
            .unwrap()
            .1
            .counts
            .total
    };
    assert_eq!(inbox("bob"), 0, "nothing delivered");
    f.check();
    // Without the flag, the ones that exist get it (an admin's `deliver`).
    let out = crate::deliver::deliver_with(
        &f.db,
        &f.files,
        &src,
        len,
        &rcpts,
        &crate::deliver::Placement::default(),
    )
    .unwrap();
    assert!(matches!(out[0], Outcome::Delivered { .. }));
    assert_eq!(out[1], Outcome::UnknownAddress);
    assert_eq!(inbox("bob"), 1);
    f.check();
}

#[test]
fn prepends_trace_fields_and_files_quarantined_mail_in_junk() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    let mut src = f.files.temp_file().unwrap();
    src.write_all(MSG).unwrap();
    let placement = crate::deliver::Placement {
        prepend: b"Authentication-Results: mx; dmarc=fail\r\n".to_vec(),
        junk: true,
        ..Default::default()
    };
    let rcpts = vec!["bob@example.com".to_string()];
    let out =
        crate::deliver::deliver_with(&f.db, &f.files, &src, MSG.len() as u64, &rcpts, &placement)
            .unwrap();
    f.db.flush().unwrap();
    f.check();
    let Outcome::Delivered { mailbox, uid, .. } = &out[0] else {
        panic!("{out:?}")
    };
    let (junk, info) = f.db.mailbox_by_name("bob", "Junk").unwrap().unwrap();
    assert_eq!((*mailbox, info.counts.total), (junk, 1));
    let msg: crate::db::record::Message = crate::db::record::decode(
        "messages",
        &f.db
            .messages
            .get(crate::db::keys::message(*mailbox, *uid))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let stored = std::fs::read(f.files.path(msg.file)).unwrap();
    assert_eq!(stored, [placement.prepend.as_slice(), MSG].concat());
    assert_eq!(msg.size, stored.len() as u64);
    assert_eq!(
        msg.envelope.subject.as_deref(),
        Some("hi"),
        "parsed after the prepended field"
    );
}

#[test]
fn delivers_to_every_local_recipient_and_reports_unknown_ones() {
    let f = fixture();
    f.db.add_domain("example.com", Some('+')).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    f.db.add_account("carol", "carol@example.com").unwrap();
    let out = f.deliver(
        MSG,
        &[
            "bob@example.com",
            "nobody@example.com",
            "carol@example.com",
            "bob+x@example.com",
        ],
    );
    assert!(matches!(&out[0], Outcome::Delivered { account, uid: 1, .. } if account == "bob"));
    assert_eq!(out[1], Outcome::UnknownAddress);
    assert!(matches!(&out[2], Outcome::Delivered { account, uid: 1, .. } if account == "carol"));
    assert_eq!(
        out[3], out[0],
        "a second address of the same account shares the copy"
    );
    let out = f.deliver(MSG, &["bob@example.com"]);
    assert!(matches!(&out[0], Outcome::Delivered { uid: 2, .. }));
    let (_, inbox) = f.db.mailbox_by_name("bob", "INBOX").unwrap().unwrap();
    assert_eq!(inbox.counts.total, 2);
    assert_eq!(inbox.counts.unseen, 2);
    assert_eq!(inbox.counts.size, 2 * MSG.len() as u64);
    assert_eq!(inbox.uidnext, 3);
    assert_eq!(inbox.highest_modseq, 3);
    let Outcome::Delivered { mailbox, uid, .. } = &out[0] else {
        unreachable!()
    };
    let msg: crate::db::record::Message = crate::db::record::decode(
        "messages",
        &f.db
            .messages
            .get(crate::db::keys::message(*mailbox, *uid))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(msg.envelope.subject.as_deref(), Some("hi"));
    assert_eq!(
        std::fs::read(f.files.path(msg.file)).unwrap(),
        MSG,
        "byte for byte"
    );
}

#[test]
fn lists_the_message_records_of_one_mailbox_in_uid_order() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    f.db.add_account("carol", "carol@example.com").unwrap();
    let (bob, _) = f.db.mailbox_by_name("bob", "Inbox").unwrap().unwrap();
    let (carol, _) = f.db.mailbox_by_name("carol", "Inbox").unwrap().unwrap();
    assert!(f.db.message_records(bob).unwrap().is_empty());
    f.deliver(MSG, &["bob@example.com"]);
    f.deliver(MSG, &["carol@example.com"]);
    f.deliver(b"Subject: second\r\n\r\nx\r\n", &["bob@example.com"]);
    let records = f.db.message_records(bob).unwrap();
    let uids: Vec<u32> = records.iter().map(|(uid, _)| *uid).collect();
    assert_eq!(uids, [1, 2], "carol's message is not in bob's inbox");
    assert_eq!(records[0].1.envelope.subject.as_deref(), Some("hi"));
    assert_eq!(records[1].1.envelope.subject.as_deref(), Some("second"));
    assert_eq!(records[0].1.size, MSG.len() as u64);
    assert_eq!(f.db.message_records(carol).unwrap().len(), 1);
    assert!(f.db.message_records(u64::MAX).unwrap().is_empty());
}

#[test]
fn delivery_to_nobody_stores_nothing() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    let out = f.deliver(MSG, &["x@example.com", "y@elsewhere.test"]);
    assert_eq!(out, [Outcome::UnknownAddress, Outcome::UnknownAddress]);
    assert!(f.files.list().unwrap().is_empty());
}

#[test]
fn removing_an_account_removes_its_mail() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    f.db.add_address("robert@example.com", "bob").unwrap();
    f.deliver(MSG, &["bob@example.com"]);
    let files = f.db.remove_account("bob").unwrap();
    assert_eq!(files.len(), 1);
    for id in files {
        f.files.remove(id).unwrap();
    }
    f.db.flush().unwrap();
    f.check();
    assert_eq!(f.db.resolve("robert@example.com").unwrap(), None);
    assert!(f.db.accounts().unwrap().is_empty());
    f.db.remove_domain("example.com").unwrap();
}

#[test]
fn verify_finds_orphans_missing_files_and_wrong_counts() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    let out = f.deliver(MSG, &["bob@example.com"]);
    let Outcome::Delivered { mailbox, uid, .. } = out[0].clone() else {
        unreachable!()
    };
    // An interrupted delivery: a file the database does not know.
    let src = f.files.temp_file().unwrap();
    f.files.store(&src, 0, &[999_999]).unwrap();
    let problems = verify(&f.db, &f.files).unwrap();
    assert!(
        problems.iter().any(|p| p.contains("not referenced")),
        "{problems:?}"
    );
    f.files.remove(999_999).unwrap();
    // A message whose file went missing.
    let msg: crate::db::record::Message = crate::db::record::decode(
        "messages",
        &f.db
            .messages
            .get(crate::db::keys::message(mailbox, uid))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    std::fs::remove_file(f.files.path(msg.file)).unwrap();
    let problems = verify(&f.db, &f.files).unwrap();
    assert!(
        problems.iter().any(|p| p.contains("missing")),
        "{problems:?}"
    );
}

#[test]
fn reopening_keeps_everything_and_refuses_other_schemas() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(&dir.path().join("db")).unwrap();
        db.add_domain("example.com", None).unwrap();
        db.add_account("bob", "bob@example.com").unwrap();
        db.flush().unwrap();
    }
    {
        let db = Db::open(&dir.path().join("db")).unwrap();
        assert_eq!(
            db.resolve("bob@example.com").unwrap().as_deref(),
            Some("bob")
        );
        db.meta.insert("schema", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        Db::open(&dir.path().join("db")),
        Err(StoreError::Schema {
            found: 99,
            known: 1
        })
    ));
}

#[test]
fn sweep_removes_only_old_orphans() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    f.deliver(MSG, &["bob@example.com"]);
    let src = f.files.temp_file().unwrap();
    let old = f.db.new_id().unwrap();
    f.files.store(&src, 0, &[old]).unwrap();
    let watermark = f.db.new_id().unwrap();
    let young = f.db.new_id().unwrap();
    f.files.store(&src, 0, &[young]).unwrap();
    assert_eq!(
        crate::verify::sweep_orphans(&f.db, &f.files, watermark).unwrap(),
        1
    );
    let left: Vec<u64> = f
        .files
        .list()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(left.contains(&young) && !left.contains(&old));
    f.files.remove(young).unwrap();
    f.check();
}

#[test]
fn ids_stay_unique_after_a_restore_of_a_backup() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    f.deliver(MSG, &["bob@example.com"]);
    let dir = tempfile::tempdir().unwrap();
    f.db.export_to(&dir.path().join("db")).unwrap();
    let restored = Db::open(&dir.path().join("db")).unwrap();
    let used = crate::verify::max_used_id(&f.db, &f.files).unwrap();
    restored.ensure_ids_above(used).unwrap();
    let fresh = restored.new_id().unwrap();
    assert!(
        fresh > used,
        "{fresh} must be above every id in use ({used})"
    );
    assert!(f.db.new_id().unwrap() > used);
}

#[test]
fn deliveries_leave_no_pending_marks() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    f.db.add_account("carol", "carol@example.com").unwrap();
    f.deliver(MSG, &["bob@example.com", "carol@example.com"]);
    assert!(f.db.pending_files().unwrap().is_empty());
}

/// A crash between a delivery's durable records and its durable files (they are synced at the
/// same time): at start, a record whose file is missing or short is taken back, one whose file
/// is whole is kept, and no mark is left.
#[test]
fn start_takes_back_deliveries_whose_files_did_not_survive() {
    use crate::db::record::{Flags, Message};
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    let (inbox, _) = f.db.mailbox_by_name("bob", "Inbox").unwrap().unwrap();
    // Three files as a crash could leave them: whole, short, gone.
    let ids: Vec<u64> = (0..3).map(|_| f.db.new_id().unwrap()).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut src = f.files.temp_file().unwrap();
        src.write_all(MSG).unwrap();
        f.files.store(&src, MSG.len() as u64, &[*id]).unwrap();
        match i {
            1 => std::fs::OpenOptions::new()
                .write(true)
                .open(f.files.path(*id))
                .unwrap()
                .set_len(10)
                .unwrap(),
            2 => std::fs::remove_file(f.files.path(*id)).unwrap(),
            _ => {}
        }
    }
    let entries: Vec<(u64, Message)> = ids
        .iter()
        .map(|id| {
            (
                inbox,
                Message {
                    file: *id,
                    size: MSG.len() as u64,
                    modseq: 0,
                    flags: Flags::default(),
                    keywords: Vec::new(),
                    internal_date: 0,
                    envelope: Default::default(),
                    structure: Default::default(),
                },
            )
        })
        .collect();
    let uids = f.db.append_messages_pending(&entries, true).unwrap();
    f.db.flush().unwrap();
    assert_eq!(f.db.pending_files().unwrap().len(), 3);
    assert_eq!(crate::verify::settle_pending(&f.db, &f.files).unwrap(), 2);
    assert!(f.db.pending_files().unwrap().is_empty());
    let kept: Vec<u32> =
        f.db.message_records(inbox)
            .unwrap()
            .into_iter()
            .map(|(uid, _)| uid)
            .collect();
    assert_eq!(kept, [uids[0]]);
    assert!(!f.files.path(ids[1]).exists(), "the short file is removed");
    f.check();
}

/// A flush that fails: the delivery is taken back, records and files, and says so — from a
/// file and from memory alike.
#[test]
fn a_delivery_that_cannot_be_made_durable_is_taken_back() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    let mut src = f.files.temp_file().unwrap();
    src.write_all(MSG).unwrap();
    let rcpts = vec!["bob@example.com".to_string()];
    let failing = || Err(StoreError::DbIo(std::io::Error::other("disk on fire")));
    for source in [
        crate::deliver::Source::File(&src, MSG.len() as u64),
        crate::deliver::Source::Bytes(MSG),
    ] {
        let err = crate::deliver::deliver_durably(
            &f.db,
            &f.files,
            source,
            &rcpts,
            &Default::default(),
            &failing,
        );
        assert!(
            matches!(&err, Err(StoreError::DbIo(e)) if e.to_string() == "disk on fire"),
            "{err:?}"
        );
        let (inbox, info) = f.db.mailbox_by_name("bob", "Inbox").unwrap().unwrap();
        assert_eq!(info.counts.total, 0);
        assert!(f.db.message_records(inbox).unwrap().is_empty());
        assert!(f.db.pending_files().unwrap().is_empty());
        f.db.flush().unwrap();
        f.check();
    }
}

/// From memory as from a file: the same bytes stored (the prepended fields first), the same
/// envelope and structure recorded, one file per account linked for the second.
#[test]
fn a_delivery_from_memory_is_stored_like_one_from_a_file() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    f.db.add_account("eve", "eve@example.com").unwrap();
    let placement = crate::deliver::Placement {
        prepend: b"Authentication-Results: mx; spf=pass\r\n".to_vec(),
        ..Default::default()
    };
    let rcpts = vec!["bob@example.com".to_string(), "eve@example.com".to_string()];
    let mut src = f.files.temp_file().unwrap();
    src.write_all(MSG).unwrap();
    let from_file = crate::deliver::deliver_durably(
        &f.db,
        &f.files,
        crate::deliver::Source::File(&src, MSG.len() as u64),
        &rcpts,
        &placement,
        &|| f.db.flush(),
    )
    .unwrap();
    let from_memory = crate::deliver::deliver_durably(
        &f.db,
        &f.files,
        crate::deliver::Source::Bytes(MSG),
        &rcpts,
        &placement,
        &|| f.db.flush(),
    )
    .unwrap();
    assert_eq!(from_file.len(), 2);
    assert_eq!(from_memory.len(), 2);
    for account in ["bob", "eve"] {
        let (inbox, _) = f.db.mailbox_by_name(account, "Inbox").unwrap().unwrap();
        let records = f.db.message_records(inbox).unwrap();
        assert_eq!(records.len(), 2, "{account}");
        let (a, b) = (&records[0].1, &records[1].1);
        assert_eq!(a.size, b.size);
        assert_eq!(a.envelope, b.envelope);
        assert_eq!(a.structure, b.structure);
        assert!(!b.structure.is_empty());
        let stored = std::fs::read(f.files.path(b.file)).unwrap();
        assert_eq!(stored, [placement.prepend.as_slice(), MSG].concat());
        assert_eq!(std::fs::read(f.files.path(a.file)).unwrap(), stored);
    }
    assert!(f.db.pending_files().unwrap().is_empty());
    f.check();
}

/// sled writes a large item as a file of its own (`blobs/`) and does not sync it; the flush
/// does, once.
#[test]
fn a_flush_syncs_new_blob_files() {
    let f = fixture();
    f.db.meta.insert("big", vec![7u8; 600 * 1024]).unwrap();
    f.db.flush().unwrap();
    let blobs = f._dir.path().join("db/blobs");
    let on_disk = std::fs::read_dir(&blobs).unwrap().count();
    assert!(on_disk > 0, "sled made no blob file");
    let synced = f.db.synced_blobs.lock().unwrap().1.len();
    assert_eq!(synced, on_disk, "every new blob file synced");
    f.db.flush().unwrap();
}

/// Delivers `MSG` to bob from memory (small: it rides in the database log).
fn deliver_small(f: &Fixture) -> (u64, u32, u64) {
    if f.db.resolve("bob@example.com").unwrap().is_none() {
        f.db.add_domain("example.com", None).unwrap();
        f.db.add_account("bob", "bob@example.com").unwrap();
    }
    let out = crate::deliver::deliver_durably(
        &f.db,
        &f.files,
        crate::deliver::Source::Bytes(MSG),
        &["bob@example.com".to_string()],
        &Default::default(),
        &|| f.db.flush(),
    )
    .unwrap();
    let Outcome::Delivered { mailbox, uid, .. } = out[0] else {
        panic!("{out:?}")
    };
    let file =
        f.db.message_records(mailbox)
            .unwrap()
            .last()
            .unwrap()
            .1
            .file;
    (mailbox, uid, file)
}

/// A small delivery leaves its file written and its bytes in the database; a checkpoint makes
/// the file durable and drops the copy.
#[test]
fn a_small_delivery_rides_in_the_database_until_its_checkpoint() {
    let f = fixture();
    let (mailbox, uid, file) = deliver_small(&f);
    let bodies = f.db.bodies().unwrap();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0].0, file);
    assert_eq!((bodies[0].1.mailbox, bodies[0].1.uid), (mailbox, uid));
    assert_eq!(bodies[0].1.bytes, MSG);
    assert_eq!(std::fs::read(f.files.path(file)).unwrap(), MSG);
    assert!(f.db.pending_files().unwrap().is_empty());
    f.check();
    assert_eq!(crate::inline::checkpoint(&f.db, &f.files, true).unwrap(), 1);
    assert!(f.db.bodies().unwrap().is_empty());
    assert_eq!(std::fs::read(f.files.path(file)).unwrap(), MSG);
    f.check();
}

/// What a power loss can leave of an unsynced file — nothing, a short file, zeros — is
/// written again from the database at start; a body whose delivery was taken back writes
/// nothing.
#[test]
fn files_lost_before_their_checkpoint_are_written_again_at_start() {
    let damages: [&dyn Fn(&std::path::Path); 3] = [
        &|p| std::fs::remove_file(p).unwrap(),
        &|p| std::fs::write(p, &MSG[..10]).unwrap(),
        &|p| std::fs::write(p, vec![0u8; MSG.len()]).unwrap(),
    ];
    for damage in damages {
        let f = fixture();
        let (_, _, file) = deliver_small(&f);
        damage(&f.files.path(file));
        assert_eq!(crate::inline::settle(&f.db, &f.files).unwrap(), 1);
        assert_eq!(std::fs::read(f.files.path(file)).unwrap(), MSG);
        assert!(f.db.bodies().unwrap().is_empty());
        f.check();
    }
    let f = fixture();
    let (mailbox, uid, file) = deliver_small(&f);
    f.db.remove_uid(mailbox, uid).unwrap();
    let _ = f.files.remove(file);
    assert_eq!(crate::inline::settle(&f.db, &f.files).unwrap(), 0);
    assert!(
        !f.files.path(file).exists(),
        "nothing written for a record that is gone"
    );
    assert!(f.db.bodies().unwrap().is_empty());
}

/// A message expunged before its checkpoint (file and record gone): the checkpoint drops the
/// body and writes nothing; and a file left half written by a crash during a rewrite is removed
/// at start.
#[test]
fn a_checkpoint_skips_messages_expunged_meanwhile_and_the_start_removes_leftovers() {
    let f = fixture();
    let (mailbox, uid, file) = deliver_small(&f);
    f.db.remove_uid(mailbox, uid).unwrap();
    f.files.remove(file).unwrap();
    assert_eq!(crate::inline::checkpoint(&f.db, &f.files, true).unwrap(), 0);
    assert!(f.db.bodies().unwrap().is_empty());
    assert!(!f.files.path(file).exists());
    let (_, _, file) = deliver_small(&f);
    let leftover = f.files.path(file).with_file_name(format!(".{file:x}.new"));
    std::fs::write(&leftover, b"half").unwrap();
    f.check();
    assert_eq!(crate::inline::settle(&f.db, &f.files).unwrap(), 1);
    assert!(!leftover.exists());
    assert_eq!(std::fs::read(f.files.path(file)).unwrap(), MSG);
}

/// After a failed sync the kernel may have dropped the pages it could not write: the next
/// checkpoint writes the files again from the database instead of trusting them.
#[test]
fn a_checkpoint_after_a_failed_one_writes_the_files_again() {
    let f = fixture();
    let (_, _, file) = deliver_small(&f);
    std::fs::write(f.files.path(file), vec![0u8; MSG.len()]).unwrap();
    crate::inline::checkpoint(&f.db, &f.files, false).unwrap();
    assert_eq!(std::fs::read(f.files.path(file)).unwrap(), MSG);
    assert!(f.db.bodies().unwrap().is_empty());
}

/// A copy links a second name to the file: the file is made durable first, so no name ever
/// refers to bytes only the database holds.
#[test]
fn copying_a_small_message_makes_its_file_durable_first() {
    let f = fixture();
    let (inbox, _, file) = deliver_small(&f);
    let archive = f.db.create_mailbox("bob", "Kept").unwrap();
    f.db.copy_messages(&f.files, inbox, &UidSet::from([(1, u32::MAX)]), archive)
        .unwrap();
    assert!(f.db.bodies().unwrap().is_empty());
    let copy = f.db.message_records(archive).unwrap()[0].1.file;
    assert_ne!(copy, file);
    assert_eq!(std::fs::read(f.files.path(copy)).unwrap(), MSG);
    f.check();
}

/// The checkpoint thread makes the files durable soon after deliveries pause, and its drop
/// ends it.
#[test]
fn the_checkpoint_thread_empties_the_bodies_and_stops() {
    let f = fixture();
    let checkpointer = crate::inline::Checkpointer::start(f.db.clone(), f.files.clone()).unwrap();
    deliver_small(&f);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f.db.bodies().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(f.db.bodies().unwrap().is_empty());
    drop(checkpointer);
    f.check();
}

/// Ids come from memory in blocks; the counter on disk is always past every id handed out, and
/// after `ensure_ids_above` the next id is above what was named even within a block.
#[test]
fn ids_are_unique_and_the_counter_stays_ahead() {
    let f = fixture();
    let ids: Vec<u64> = (0..200).map(|_| f.db.new_id().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "unique");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing");
    let counter = u64::from_be_bytes(
        f.db.meta
            .get("next_id")
            .unwrap()
            .unwrap()
            .as_ref()
            .try_into()
            .unwrap(),
    );
    assert!(counter > *ids.last().unwrap());
    let next = f.db.new_id().unwrap();
    f.db.ensure_ids_above(next + 5).unwrap();
    assert!(f.db.new_id().unwrap() > next + 5);
}

/// Bodies of the largest inline size never make sled write a node as a blob file (which every
/// flush would then have to sync).
#[test]
fn inline_bodies_never_become_blob_files() {
    let f = fixture();
    f.db.add_domain("example.com", None).unwrap();
    f.db.add_account("bob", "bob@example.com").unwrap();
    let mut message = b"Subject: big\r\n\r\n".to_vec();
    message.resize(crate::inline::INLINE_LIMIT - 2, b'x');
    message.extend_from_slice(b"\r\n");
    for _ in 0..60 {
        crate::deliver::deliver_durably(
            &f.db,
            &f.files,
            crate::deliver::Source::Bytes(&message),
            &["bob@example.com".to_string()],
            &Default::default(),
            &|| f.db.flush(),
        )
        .unwrap();
    }
    assert_eq!(f.db.bodies().unwrap().len(), 60, "all inline");
    let blobs = f._dir.path().join("db/blobs");
    let count = std::fs::read_dir(&blobs).map_or(0, |d| d.count());
    assert_eq!(count, 0, "sled wrote blob files");
}
