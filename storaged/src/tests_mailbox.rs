//! Mailbox and message operations, each followed by a full `verify`.

use crate::messages::UidSet;
use std::io::Write;

use crate::db::Db;
use crate::db::record::Flags;
use crate::deliver::deliver;
use crate::error::StoreError;
use crate::files::Files;
use crate::messages::{Change, Changes};
use crate::verify::verify;

struct F {
    _dir: tempfile::TempDir,
    db: Db,
    files: Files,
}

fn setup(messages: usize) -> (F, u64) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("db")).unwrap();
    let files = Files::open(dir.path()).unwrap();
    db.add_domain("example.com", None).unwrap();
    db.add_account("bob", "bob@example.com").unwrap();
    let f = F {
        _dir: dir,
        db,
        files,
    };
    for i in 0..messages {
        let body = format!("Subject: m{i}\r\n\r\nbody {i}\r\n");
        let mut tmp = f.files.temp_file().unwrap();
        tmp.write_all(body.as_bytes()).unwrap();
        deliver(
            &f.db,
            &f.files,
            &tmp,
            body.len() as u64,
            &["bob@example.com".into()],
        )
        .unwrap();
    }
    let (inbox, _) = f.db.mailbox_by_name("bob", "inbox").unwrap().unwrap();
    f.check();
    (f, inbox)
}

impl F {
    fn check(&self) {
        let problems = verify(&self.db, &self.files).unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .db
            .mailbox_list("bob")
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        v.sort();
        v
    }
    fn unlink(&self, files: Vec<u64>) {
        self.db.flush().unwrap();
        for id in files {
            self.files.remove(id).unwrap();
        }
        self.check();
    }
}

#[test]
fn creates_parents_and_refuses_duplicates_and_bad_names() {
    let (f, _) = setup(0);
    f.db.create_mailbox("bob", "Lists/rust/announce").unwrap();
    f.check();
    assert!(
        f.names().contains(&"Lists".to_string()) && f.names().contains(&"Lists/rust".to_string())
    );
    assert!(matches!(
        f.db.create_mailbox("bob", "Lists/rust"),
        Err(StoreError::Invalid { .. })
    ));
    for bad in ["", "/a", "a/", "a//b", "a\u{7}b", "a*"] {
        assert!(
            matches!(
                f.db.create_mailbox("bob", bad),
                Err(StoreError::Invalid { .. })
            ),
            "{bad:?}"
        );
    }
    f.db.create_mailbox("bob", "INBOX/sub").unwrap();
    assert!(
        f.names().contains(&"Inbox/sub".to_string()),
        "{:?}",
        f.names()
    );
    assert!(matches!(
        f.db.create_mailbox("nobody", "x"),
        Err(StoreError::NoAccount(_))
    ));
    f.check();
}

#[test]
fn renames_with_children_keeping_messages() {
    let (f, inbox) = setup(2);
    let work = f.db.create_mailbox("bob", "Work/2026").unwrap();
    f.db.copy_messages(&f.files, inbox, &UidSet::from([(1, u32::MAX)]), work)
        .unwrap();
    f.db.rename_mailbox("bob", "Work", "Old/Work").unwrap();
    f.check();
    let names = f.names();
    assert!(
        names.contains(&"Old/Work/2026".to_string())
            && !names.iter().any(|n| n.starts_with("Work")),
        "{names:?}"
    );
    let (id, m) =
        f.db.mailbox_by_name("bob", "Old/Work/2026")
            .unwrap()
            .unwrap();
    assert_eq!((id, m.counts.total), (work, 2));
    assert!(f.db.rename_mailbox("bob", "Inbox", "x").is_err());
    assert!(f.db.rename_mailbox("bob", "Old", "Old/inside").is_err());
    assert!(
        f.db.rename_mailbox("bob", "Sent", "Drafts").is_err(),
        "target exists"
    );
    assert!(matches!(
        f.db.rename_mailbox("bob", "Nope", "x"),
        Err(StoreError::NoMailbox(_))
    ));
    f.check();
}

#[test]
fn deletes_only_leaf_mailboxes_never_the_inbox() {
    let (f, inbox) = setup(3);
    let a = f.db.create_mailbox("bob", "A/B").unwrap();
    f.db.copy_messages(&f.files, inbox, &UidSet::from([(1, 2)]), a)
        .unwrap();
    assert!(f.db.delete_mailbox("bob", "inbox").is_err());
    assert!(f.db.delete_mailbox("bob", "A").is_err(), "has children");
    let files = f.db.delete_mailbox("bob", "A/B").unwrap();
    assert_eq!(files.len(), 2);
    f.unlink(files);
    f.db.delete_mailbox("bob", "A").unwrap();
    f.check();
    assert_eq!(
        f.db.mailbox(inbox).unwrap().unwrap().counts.total,
        3,
        "originals untouched"
    );
}

#[test]
fn store_updates_flags_counts_and_modseqs() {
    let (f, inbox) = setup(3);
    let before = f.db.mailbox(inbox).unwrap().unwrap().highest_modseq;
    let r =
        f.db.store_flags(
            inbox,
            &UidSet::from([(1, 2)]),
            Change::Add,
            Flags::SEEN,
            &["$Important".into()],
            None,
        )
        .unwrap();
    assert_eq!(r.updated.len(), 2);
    assert!(
        r.updated
            .iter()
            .all(|u| u.modseq > before && u.flags.contains(Flags::SEEN))
    );
    let mb = f.db.mailbox(inbox).unwrap().unwrap();
    assert_eq!(
        (mb.counts.unseen, mb.highest_modseq),
        (1, r.updated[1].modseq)
    );
    f.check();
    // Adding what is there changes nothing and bumps nothing.
    let again =
        f.db.store_flags(
            inbox,
            &UidSet::from([(1, 2)]),
            Change::Add,
            Flags::SEEN,
            &["$important".into()],
            None,
        )
        .unwrap();
    assert!(again.updated.is_empty());
    // CONDSTORE: uid 1 was modified after `before`, uid 3 was not.
    let cond =
        f.db.store_flags(
            inbox,
            &UidSet::from([(1, 3)]),
            Change::Add,
            Flags::DELETED,
            &[],
            Some(before),
        )
        .unwrap();
    assert_eq!(cond.modified, [1, 2]);
    assert_eq!(cond.updated.iter().map(|u| u.uid).collect::<Vec<_>>(), [3]);
    let rm =
        f.db.store_flags(
            inbox,
            &UidSet::from([(1, 1)]),
            Change::Remove,
            Flags::SEEN,
            &["$IMPORTANT".into()],
            None,
        )
        .unwrap();
    assert_eq!(
        (rm.updated[0].flags, rm.updated[0].keywords.len()),
        (Flags::default(), 0)
    );
    assert!(
        f.db.store_flags(
            inbox,
            &UidSet::from([(1, 1)]),
            Change::Add,
            Flags::default(),
            &["bad kw".into()],
            None
        )
        .is_err()
    );
    assert_eq!(f.db.mailbox(inbox).unwrap().unwrap().counts.deleted, 1);
    f.check();
}

#[test]
fn expunge_leaves_tombstones_reported_as_vanished() {
    let (f, inbox) = setup(4);
    let mark = f.db.mailbox(inbox).unwrap().unwrap().highest_modseq;
    f.db.store_flags(
        inbox,
        &UidSet::from([(2, 3)]),
        Change::Add,
        Flags::DELETED,
        &[],
        None,
    )
    .unwrap();
    let (gone, files) =
        f.db.expunge(inbox, Some(&UidSet::from([(3, u32::MAX)])))
            .unwrap();
    assert_eq!(gone, [3], "only \\Deleted messages within the set");
    f.unlink(files);
    let (gone, files) = f.db.expunge(inbox, None).unwrap();
    assert_eq!(gone, [2]);
    f.unlink(files);
    let Changes {
        changed,
        vanished,
        highest_modseq,
    } = f.db.changes_since(inbox, mark).unwrap();
    assert_eq!(vanished, [2, 3]);
    assert!(changed.is_empty(), "the changed ones are gone: {changed:?}");
    assert_eq!(
        highest_modseq,
        f.db.mailbox(inbox).unwrap().unwrap().highest_modseq
    );
    let mb = f.db.mailbox(inbox).unwrap().unwrap();
    assert_eq!(
        (mb.counts.total, mb.uidnext),
        (2, 5),
        "UIDs are never reused"
    );
}

#[test]
fn copy_and_move_assign_new_uids_and_keep_flags() {
    let (f, inbox) = setup(3);
    let archive = f.db.mailbox_by_name("bob", "Archive").unwrap().unwrap().0;
    f.db.store_flags(
        inbox,
        &UidSet::from([(2, 2)]),
        Change::Add,
        Flags::FLAGGED,
        &[],
        None,
    )
    .unwrap();
    let (pairs, uidvalidity) =
        f.db.copy_messages(&f.files, inbox, &UidSet::from([(2, 3)]), archive)
            .unwrap();
    assert_eq!(pairs, [(2, 1), (3, 2)]);
    assert_eq!(
        uidvalidity,
        f.db.mailbox(archive).unwrap().unwrap().uidvalidity
    );
    f.check();
    let copied = f.db.message_records(archive).unwrap();
    assert!(copied[0].1.flags.contains(Flags::FLAGGED));
    assert_ne!(
        copied[0].1.file,
        f.db.message_records(inbox).unwrap()[1].1.file,
        "one file per entry"
    );
    let moved =
        f.db.move_messages(&f.files, inbox, &UidSet::from([(1, 1)]), archive)
            .unwrap();
    assert_eq!(moved.pairs, [(1, 3)]);
    f.unlink(moved.unlink);
    assert_eq!(f.db.mailbox(inbox).unwrap().unwrap().counts.total, 2);
    assert_eq!(f.db.mailbox(archive).unwrap().unwrap().counts.total, 3);
    // Other accounts' mailboxes are out of reach.
    f.db.add_account("eve", "eve@example.com").unwrap();
    let eve = f.db.mailbox_by_name("eve", "Inbox").unwrap().unwrap().0;
    assert!(
        f.db.copy_messages(&f.files, inbox, &UidSet::from([(1, u32::MAX)]), eve)
            .is_err()
    );
    f.check();
}

#[test]
fn search_combines_metadata_headers_and_decoded_bodies() {
    use ipc::msg::store::{Criteria, SearchTerm::*};
    let (f, inbox) = setup(0);
    let messages = [
        "From: ann@example.net\r\nSubject: Lunch\r\n\r\nShall we eat at noon?\r\n",
        "From: bob@example.org\r\nSubject: Report\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nUXVhcnRlcmx5IGZpZ3VyZXMgYXR0YWNoZWQ=\r\n",
        "From: ann@example.net\r\nSubject: Re: Lunch\r\nX-Priority: 1\r\n\r\nYes, noon works.\r\n",
    ];
    for m in messages {
        let mut tmp = f.files.temp_file().unwrap();
        tmp.write_all(m.as_bytes()).unwrap();
        deliver(
            &f.db,
            &f.files,
            &tmp,
            m.len() as u64,
            &["bob@example.com".into()],
        )
        .unwrap();
    }
    f.db.store_flags(
        inbox,
        &UidSet::from([(3, 3)]),
        Change::Add,
        crate::db::record::Flags::SEEN,
        &[],
        None,
    )
    .unwrap();
    let s = |terms: Vec<ipc::msg::store::SearchTerm>| {
        crate::search::search(&f.db, &f.files, inbox, &Criteria(terms)).unwrap()
    };
    assert_eq!(s(vec![]), [1, 2, 3]);
    assert_eq!(
        s(vec![Header {
            field: "subject".into(),
            contains: "lunch".into()
        }]),
        [1, 3]
    );
    assert_eq!(
        s(vec![Body("QUARTERLY".into())]),
        [2],
        "base64 bodies are searched decoded"
    );
    assert_eq!(s(vec![Text("noon".into())]), [1, 3]);
    assert_eq!(
        s(vec![Header {
            field: "X-Priority".into(),
            contains: String::new()
        }]),
        [3]
    );
    assert_eq!(
        s(vec![
            Text("noon".into()),
            Flags {
                flags: crate::db::record::Flags::SEEN,
                set: false
            },
            And(2)
        ]),
        [1]
    );
    assert_eq!(
        s(vec![
            Uids(UidSet::from([(1, 1)])),
            Body("quarterly".into()),
            Or
        ]),
        [1, 2]
    );
    assert_eq!(
        s(vec![
            Header {
                field: "from".into(),
                contains: "ann".into()
            },
            Not
        ]),
        [2]
    );
    assert!(crate::search::search(&f.db, &f.files, inbox, &Criteria(vec![Or])).is_err());
}

#[test]
fn deleting_a_mailbox_while_messages_arrive_in_it_stays_consistent() {
    let (f, inbox) = setup(3);
    for round in 0..40 {
        let name = format!("Busy{round}");
        let target = f.db.create_mailbox("bob", &name).unwrap();
        let (db, files) = (f.db.clone(), f.files.clone());
        let copier = std::thread::spawn(move || {
            // Copies until the mailbox is gone; a failed copy must leave nothing behind.
            while db
                .copy_messages(&files, inbox, &UidSet::from([(1, 1)]), target)
                .is_ok()
            {}
        });
        std::thread::sleep(std::time::Duration::from_millis(2));
        let unlink = loop {
            match f.db.delete_mailbox("bob", &name) {
                Ok(files) => break files,
                Err(StoreError::Conflict) => continue,
                Err(e) => panic!("{e}"),
            }
        };
        copier.join().unwrap();
        f.unlink(unlink);
    }
}
