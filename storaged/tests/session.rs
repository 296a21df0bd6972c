#![allow(clippy::unwrap_used)]

//! storaged's mailbox API over IPC, as imapd sees it: nothing without a ticket authd
//! registered for imapd, nothing of another account with one, and every operation consistent.

use std::io::{Read, Seek, Write};

use ipc::config::StoragedConfig;
use ipc::msg::auth::Ticket;
use ipc::msg::control::{AdminReply, RoleAdmin};
use ipc::msg::store::{
    self, Appended, ChangesSince, Copied, FlagChange, Flags, Messages, ModSeq, Refused, Selected,
    StoreService, Stored, Uid, UidSet,
};
use ipc::rpc::{Call, Client};
use ipc::{AdminCall, Context, Link, Role, grant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct H {
    _dir: tempfile::TempDir,
    authd: Client<StoreService>,
    imapd: Client<StoreService>,
    imapd_events: tokio::sync::Mutex<mpsc::UnboundedReceiver<store::Event>>,
    httpd: Client<StoreService>,
    admin: mpsc::UnboundedSender<AdminCall>,
    _incoming: mpsc::UnboundedSender<(Role, Link)>,
    shutdown: CancellationToken,
}

async fn start() -> H {
    let dir = tempfile::tempdir().unwrap();
    let (incoming_tx, incoming) = mpsc::unbounded_channel();
    let (admin, admin_rx) = mpsc::unbounded_channel();
    let client = |role: Role| {
        let (ours, theirs) =
            Link::memory_pair(&format!("{role}→storaged"), &format!("storaged←{role}"));
        incoming_tx.send((role, theirs)).unwrap();
        Client::<StoreService>::new(ours)
    };
    let (authd, imapd, httpd) = (
        client(Role::Authd).0,
        client(Role::Imapd),
        client(Role::Httpd).0,
    );
    let (imapd, imapd_events) = (imapd.0, tokio::sync::Mutex::new(imapd.1));
    let shutdown = CancellationToken::new();
    let ctx = Context::<grant::Storaged> {
        config: StoragedConfig {
            dir: dir.path().to_path_buf(),
            storage: Default::default(),
        },
        listeners: Vec::new(),
        peers: Default::default(),
        incoming,
        admin: admin_rx,
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
        files: Vec::new(),
        reporter: ipc::Reporter::detached(),
    };
    tokio::spawn(storaged::run(ctx));
    let h = H {
        _dir: dir,
        authd,
        imapd,
        imapd_events,
        httpd,
        admin,
        _incoming: incoming_tx,
        shutdown,
    };
    for op in [
        store::Admin::AddDomain {
            domain: "example.org".into(),
            separator: None,
        },
        store::Admin::AddAccount {
            name: "bob".into(),
            address: "bob@example.org".into(),
        },
        store::Admin::AddAccount {
            name: "eve".into(),
            address: "eve@example.org".into(),
        },
    ] {
        h.admin(op).await.unwrap();
    }
    h
}

impl H {
    async fn admin(&self, op: store::Admin) -> Result<store::AdminReply, String> {
        let (reply, rx) = oneshot::channel();
        self.admin
            .send(AdminCall {
                request: RoleAdmin::Store(op),
                fds: Vec::new(),
                reply,
            })
            .unwrap();
        match rx.await.unwrap()? {
            AdminReply::Store(r) => Ok(r),
            other => Err(format!("{other:?}")),
        }
    }

    async fn register(&self, ticket: Ticket, account: &str, role: Role) {
        let r = store::RegisterTicket {
            ticket,
            account: account.into(),
            role,
            expires: i64::MAX / 2,
        };
        assert_eq!(self.authd.ask(r.clone()).await.unwrap(), Ok(()));
    }

    /// Makes the request `op` builds for `ticket` on `via`'s link; its answer and the
    /// descriptors that came with it.
    async fn op<C: Call<Service = StoreService>>(
        &self,
        via: &Client<StoreService>,
        ticket: Ticket,
        op: impl FnOnce(Ticket) -> C,
    ) -> (C::Answer, Vec<std::os::fd::OwnedFd>) {
        via.call(op(ticket), Vec::new()).await.unwrap()
    }
}

const BOB: Ticket = Ticket([1; 16]);
const EVE: Ticket = Ticket([2; 16]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_without_a_valid_ticket_for_this_role() {
    let h = start().await;
    let list = |ticket| store::ListMailboxes { ticket };
    assert_eq!(
        h.op(&h.imapd, BOB, list).await.0,
        Err(Refused::InvalidTicket)
    );
    h.register(BOB, "bob", Role::Imapd).await;
    assert!(matches!(
        h.op(&h.imapd, BOB, list).await.0,
        Ok(l) if l.len() == 6
    ));
    // The same ticket on httpd's link is not valid: it was issued to imapd.
    assert_eq!(
        h.op(&h.httpd, BOB, list).await.0,
        Err(Refused::InvalidTicket)
    );
    // Only authd may register tickets; imapd may not mint its own.
    let forged = store::RegisterTicket {
        ticket: Ticket([9; 16]),
        account: "eve".into(),
        role: Role::Imapd,
        expires: i64::MAX / 2,
    };
    assert!(matches!(
        h.imapd.ask(forged.clone()).await.unwrap(),
        Err(store::Refused::Failed(f)) if !f.temporary
    ));
    assert_eq!(
        h.op(&h.imapd, Ticket([9; 16]), list).await.0,
        Err(Refused::InvalidTicket)
    );
    // Revoked: gone.
    let revoke = store::RevokeTicket { ticket: BOB };
    assert_eq!(h.authd.ask(revoke.clone()).await.unwrap(), Ok(()));
    assert_eq!(
        h.op(&h.imapd, BOB, list).await.0,
        Err(Refused::InvalidTicket)
    );
    // Expired: gone.
    let r = store::RegisterTicket {
        ticket: BOB,
        account: "bob".into(),
        role: Role::Imapd,
        expires: 1,
    };
    assert_eq!(h.authd.ask(r).await.unwrap(), Ok(()));
    assert_eq!(
        h.op(&h.imapd, BOB, list).await.0,
        Err(Refused::InvalidTicket)
    );
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_or_account_removal_ends_only_that_accounts_sessions() {
    let h = start().await;
    let list = |ticket| store::ListMailboxes { ticket };
    let bob2 = Ticket([3; 16]);
    h.register(BOB, "bob", Role::Imapd).await;
    h.register(bob2, "bob", Role::Httpd).await;
    h.register(EVE, "eve", Role::Imapd).await;
    // Only authd may end an account's sessions.
    let revoke = store::RevokeAccountTickets {
        account: "bob".into(),
    };
    assert!(matches!(
        h.imapd.ask(revoke.clone()).await.unwrap(),
        Err(store::Refused::Failed(f)) if !f.temporary
    ));
    assert!(h.op(&h.imapd, BOB, list).await.0.is_ok());
    // authd says bob's password changed: every session of bob ends, eve's goes on.
    assert_eq!(h.authd.ask(revoke.clone()).await.unwrap(), Ok(()));
    assert_eq!(
        h.op(&h.imapd, BOB, list).await.0,
        Err(Refused::InvalidTicket)
    );
    assert_eq!(
        h.op(&h.httpd, bob2, list).await.0,
        Err(Refused::InvalidTicket)
    );
    assert!(h.op(&h.imapd, EVE, list).await.0.is_ok());
    // Removing eve's account ends her sessions with it.
    h.admin(store::Admin::RemoveAccount { name: "eve".into() })
        .await
        .unwrap();
    assert_eq!(
        h.op(&h.imapd, EVE, list).await.0,
        Err(Refused::InvalidTicket)
    );
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_fetch_open_store_copy_expunge_and_changes() {
    let h = start().await;
    h.register(BOB, "bob", Role::Imapd).await;
    h.register(EVE, "eve", Role::Imapd).await;
    let select = move |ticket| store::Select {
        ticket,
        name: "INBOX".into(),
    };
    let Ok(Selected { id: inbox, info }) = h.op(&h.imapd, BOB, select).await.0 else {
        panic!("no select")
    };
    assert_eq!((info.total, info.uidnext), (0, Uid(1)));

    let msg = b"From: Ann <ann@example.net>\r\nSubject: appended\r\n\r\nhello\r\n";
    let (Ok(upload), fds) = h
        .op(&h.imapd, BOB, |ticket| store::OpenUpload { ticket })
        .await
    else {
        panic!("no upload")
    };
    std::fs::File::from(fds.into_iter().next().unwrap())
        .write_all(msg)
        .unwrap();
    let append = move |ticket| store::Append {
        ticket,
        name: "Inbox".into(),
        upload,
        flags: Flags::SEEN,
        keywords: vec!["$Work".into()],
        internal_date: Some(1_700_000_000),
    };
    assert_eq!(
        h.op(&h.imapd, BOB, append).await.0,
        Ok(Appended {
            uidvalidity: info.uidvalidity,
            uid: Uid(1)
        })
    );

    let fetch = move |ticket| store::Fetch {
        ticket,
        mailbox: inbox,
        uids: UidSet::from([(1, u32::MAX)]),
        after: None,
    };
    let Ok(Messages { messages, more }) = h.op(&h.imapd, BOB, fetch).await.0 else {
        panic!("no messages")
    };
    assert_eq!(more, None);
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(
        (m.uid, m.flags, m.size, m.internal_date),
        (Uid(1), Flags::SEEN, msg.len() as u64, 1_700_000_000)
    );
    assert_eq!(m.keywords, ["$Work"]);
    assert_eq!(m.envelope.subject.as_deref(), Some("appended"));
    assert_eq!(m.structure.len(), 1, "{:?}", m.structure);
    assert_eq!(
        (m.structure[0].content_type.as_str(), m.structure[0].lines),
        ("text", 1)
    );
    assert_eq!(
        m.envelope.from[0],
        (Some("Ann".into()), "ann".into(), "example.net".into())
    );

    let open = move |ticket| store::Open {
        ticket,
        mailbox: inbox,
        uid: Uid(1),
    };
    let (Ok(size), fds) = h.op(&h.imapd, BOB, open).await else {
        panic!("not opened")
    };
    let mut file = std::fs::File::from(fds.into_iter().next().unwrap());
    let mut bytes = Vec::new();
    file.rewind().unwrap();
    file.read_to_end(&mut bytes).unwrap();
    assert_eq!((size, bytes.as_slice()), (msg.len() as u64, &msg[..]));
    assert!(
        file.write_all(b"x").is_err(),
        "the message descriptor is read-only"
    );

    let store_op = move |ticket| store::StoreFlags {
        ticket,
        mailbox: inbox,
        uids: UidSet::from([(1, 1)]),
        change: FlagChange::Add,
        flags: Flags::DELETED,
        keywords: vec![],
        unchanged_since: None,
    };
    let Ok(Stored { updated, modified }) = h.op(&h.imapd, BOB, store_op).await.0 else {
        panic!("not stored")
    };
    assert!(modified.is_empty() && updated[0].flags == Flags::SEEN | Flags::DELETED);
    let copy = move |ticket| store::Copy {
        ticket,
        from: inbox,
        uids: UidSet::from([(1, 1)]),
        to: "Archive".into(),
    };
    let Ok(Copied { pairs, .. }) = h.op(&h.imapd, BOB, copy).await.0 else {
        panic!("not copied")
    };
    assert_eq!(pairs, [(Uid(1), Uid(1))]);
    let expunge = move |ticket| store::Expunge {
        ticket,
        mailbox: inbox,
        uids: None,
    };
    assert_eq!(h.op(&h.imapd, BOB, expunge).await.0, Ok(vec![Uid(1)]));
    let changes = move |ticket| store::Changes {
        ticket,
        mailbox: inbox,
        since: ModSeq(1),
    };
    let Ok(ChangesSince { vanished, .. }) = h.op(&h.imapd, BOB, changes).await.0 else {
        panic!("no changes")
    };
    assert_eq!(vanished, [Uid(1)]);

    // Eve's ticket cannot reach bob's mailbox by id.
    fn no_such_mailbox<T: std::fmt::Debug>(r: Result<T, Refused>) {
        assert!(
            matches!(r, Err(Refused::No(ref e)) if e.contains("no such mailbox")),
            "{r:?}"
        );
    }
    no_such_mailbox(h.op(&h.imapd, EVE, fetch).await.0);
    no_such_mailbox(h.op(&h.imapd, EVE, open).await.0);
    no_such_mailbox(h.op(&h.imapd, EVE, expunge).await.0);
    let select = move |ticket| store::Select {
        ticket,
        name: "Inbox".into(),
    };
    let Ok(Selected { id: eve_inbox, .. }) = h.op(&h.imapd, EVE, select).await.0 else {
        panic!("no select")
    };
    assert_ne!(eve_inbox, inbox);

    // Mailbox management, and a clean store at the end.
    let create = move |ticket| store::CreateMailbox {
        ticket,
        name: "Projects/moxd".into(),
    };
    assert_eq!(h.op(&h.imapd, BOB, create).await.0, Ok(()));
    let rename = move |ticket| store::RenameMailbox {
        ticket,
        from: "Projects".into(),
        to: "Work".into(),
    };
    assert_eq!(h.op(&h.imapd, BOB, rename).await.0, Ok(()));
    // Renaming INBOX moves its messages into the new mailbox and leaves INBOX empty.
    let (Ok(upload), fds) = h
        .op(&h.imapd, BOB, |ticket| store::OpenUpload { ticket })
        .await
    else {
        panic!("no upload")
    };
    std::fs::File::from(fds.into_iter().next().unwrap())
        .write_all(b"Subject: keep me\r\n\r\nx\r\n")
        .unwrap();
    let append = move |ticket| store::Append {
        ticket,
        name: "Inbox".into(),
        upload,
        flags: Flags::NONE,
        keywords: vec![],
        internal_date: None,
    };
    let done = h.op(&h.imapd, BOB, append).await.0;
    assert!(done.is_ok(), "{done:?}");
    let rename = move |ticket| store::RenameMailbox {
        ticket,
        from: "inbox".into(),
        to: "Old mail".into(),
    };
    assert_eq!(h.op(&h.imapd, BOB, rename).await.0, Ok(()));
    let Ok(list) = h
        .op(&h.imapd, BOB, |ticket| store::ListMailboxes { ticket })
        .await
        .0
    else {
        panic!("no list")
    };
    let count = |name: &str| list.iter().find(|m| m.name == name).map(|m| m.total);
    assert_eq!(
        (count("Inbox"), count("Old mail")),
        (Some(0), Some(1)),
        "{list:?}"
    );
    let delete = move |ticket| store::DeleteMailbox {
        ticket,
        name: "Inbox".into(),
    };
    assert!(matches!(
        h.op(&h.imapd, BOB, delete).await.0,
        Err(Refused::No(_))
    ));
    assert_eq!(
        h.admin(store::Admin::VerifyData).await.unwrap(),
        store::AdminReply::Problems(vec![])
    );
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_get_durable_changes_in_modseq_order_until_logout() {
    use store::{Change, Event};
    let h = start().await;
    h.register(BOB, "bob", Role::Imapd).await;
    assert_eq!(
        h.op(&h.imapd, BOB, |ticket| store::Watch { ticket })
            .await
            .0,
        Ok(())
    );
    let select = move |ticket| store::Select {
        ticket,
        name: "Inbox".into(),
    };
    let Ok(Selected { id: inbox, .. }) = h.op(&h.imapd, BOB, select).await.0 else {
        panic!("no select")
    };
    // A delivery (through the admin path, as moxctl deliver does), a flag change, an expunge.
    let (reply, rx) = oneshot::channel();
    let mut msg = tempfile::tempfile().unwrap();
    msg.write_all(b"Subject: x\r\n\r\ny\r\n").unwrap();
    msg.rewind().unwrap();
    h.admin
        .send(AdminCall {
            request: RoleAdmin::Store(store::Admin::Deliver {
                recipients: vec!["bob@example.org".into()],
            }),
            fds: vec![msg.into()],
            reply,
        })
        .unwrap();
    rx.await.unwrap().unwrap();
    let flag = move |ticket| store::StoreFlags {
        ticket,
        mailbox: inbox,
        uids: UidSet::from([(1, 1)]),
        change: FlagChange::Add,
        flags: Flags::DELETED,
        keywords: vec![],
        unchanged_since: None,
    };
    let done = h.op(&h.imapd, BOB, flag).await.0;
    assert!(done.is_ok(), "{done:?}");
    let expunge = move |ticket| store::Expunge {
        ticket,
        mailbox: inbox,
        uids: None,
    };
    let done = h.op(&h.imapd, BOB, expunge).await.0;
    assert!(done.is_ok(), "{done:?}");

    let mut events = h.imapd_events.lock().await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let wait = tokio::time::timeout(std::time::Duration::from_secs(5), events.recv());
        got.push(wait.await.expect("an event in time").expect("event"));
    }
    let modseqs: Vec<ModSeq> = got
        .iter()
        .map(|Event::Changed { modseq, .. }| *modseq)
        .collect();
    assert!(
        modseqs.windows(2).all(|w| w[0] < w[1]),
        "in order: {modseqs:?}"
    );
    let changes: Vec<Change> = got
        .into_iter()
        .map(
            |Event::Changed {
                 account, change, ..
             }| {
                assert_eq!(account, "bob");
                change
            },
        )
        .collect();
    assert_eq!(
        changes[0],
        Change::New {
            mailbox: inbox,
            uid: Uid(1)
        }
    );
    assert_eq!(
        changes[1],
        Change::Flags {
            mailbox: inbox,
            uid: Uid(1),
            flags: Flags::DELETED,
            keywords: vec![]
        }
    );
    assert_eq!(
        changes[2],
        Change::Expunged {
            mailbox: inbox,
            uids: vec![Uid(1)]
        }
    );

    // After logout nothing more arrives for that watch.
    let revoke = store::RevokeTicket { ticket: BOB };
    assert_eq!(h.authd.ask(revoke).await.unwrap(), Ok(()));
    h.register(EVE, "bob", Role::Imapd).await;
    let (Ok(upload), fds) = h
        .op(&h.imapd, EVE, |ticket| store::OpenUpload { ticket })
        .await
    else {
        panic!("no upload")
    };
    std::fs::File::from(fds.into_iter().next().unwrap())
        .write_all(b"Subject: z\r\n\r\n")
        .unwrap();
    let append = move |ticket| store::Append {
        ticket,
        name: "Inbox".into(),
        upload,
        flags: Flags::NONE,
        keywords: vec![],
        internal_date: None,
    };
    assert!(matches!(
        h.op(&h.imapd, EVE, append).await.0,
        Ok(Appended { .. })
    ));
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), events.recv()).await;
    assert!(
        quiet.is_err(),
        "no events after the watch's ticket was revoked: {quiet:?}"
    );
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_link_ends_the_sessions_of_its_role() {
    let h = start().await;
    let (ours, theirs) = Link::memory_pair("imapd#2→storaged", "storaged←imapd#2");
    h._incoming.send((Role::Imapd, theirs)).unwrap();
    let second = Client::<StoreService>::new(ours).0;
    h.register(BOB, "bob", Role::Imapd).await;
    let listed = h
        .op(&second, BOB, |ticket| store::ListMailboxes { ticket })
        .await
        .0;
    assert!(listed.is_ok(), "{listed:?}");
    // The imapd process behind that link is gone (as when it is killed).
    drop(second);
    let start = std::time::Instant::now();
    while h
        .op(&h.imapd, BOB, |ticket| store::ListMailboxes { ticket })
        .await
        .0
        != Err(Refused::InvalidTicket)
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "sessions outlived the link"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_watch_outlives_the_first_of_its_sessions() {
    use store::{Change, Event};
    let h = start().await;
    h.register(BOB, "bob", Role::Imapd).await;
    h.register(EVE, "bob", Role::Imapd).await;
    assert_eq!(
        h.op(&h.imapd, BOB, |ticket| store::Watch { ticket })
            .await
            .0,
        Ok(())
    );
    assert_eq!(
        h.op(&h.imapd, EVE, |ticket| store::Watch { ticket })
            .await
            .0,
        Ok(())
    );
    let revoke = store::RevokeTicket { ticket: BOB };
    assert_eq!(h.authd.ask(revoke).await.unwrap(), Ok(()));
    let create = move |ticket| store::CreateMailbox {
        ticket,
        name: "Shared".into(),
    };
    let done = h.op(&h.imapd, EVE, create).await.0;
    assert!(done.is_ok(), "{done:?}");
    let (Ok(upload), fds) = h
        .op(&h.imapd, EVE, |ticket| store::OpenUpload { ticket })
        .await
    else {
        panic!("no upload")
    };
    std::fs::File::from(fds.into_iter().next().unwrap())
        .write_all(b"Subject: s\r\n\r\n")
        .unwrap();
    let append = move |ticket| store::Append {
        ticket,
        name: "Shared".into(),
        upload,
        flags: Flags::NONE,
        keywords: vec![],
        internal_date: None,
    };
    let done = h.op(&h.imapd, EVE, append).await.0;
    assert!(done.is_ok(), "{done:?}");
    let mut events = h.imapd_events.lock().await;
    let wait = tokio::time::timeout(std::time::Duration::from_secs(5), events.recv());
    let Some(Event::Changed { change, .. }) = wait.await.expect("an event in time") else {
        panic!("no event")
    };
    assert!(
        matches!(change, Change::New { uid: Uid(1), .. }),
        "{change:?}"
    );
    h.shutdown.cancel();
}
