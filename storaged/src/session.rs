//! The mailbox API for imapd and httpd. Every request names a session ticket that authd
//! registered for the calling role; the ticket decides the account, and every mailbox a request
//! names must belong to it. A request with another account's mailbox, an expired or unknown
//! ticket, or a ticket issued to another role reaches nothing.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use ipc::msg::auth::Ticket;
use ipc::msg::store::StoreService;
use ipc::msg::store::{
    Envelope as WireEnvelope, FlagChange, MessageFlags, MessageMeta, Response, SessionOp,
    SessionReply,
};
use ipc::rpc::EventSender;
use ipc::{Handle, Role};

use crate::db::now;
use crate::db::record::{Flags, Mailbox, Message};
use crate::envelope::{Envelope, EnvelopeAddress};
use crate::error::StoreError;
use crate::messages::{Change, Updated, check_keyword};
use crate::service::Store;

/// Encoded size a page of fetched metadata stays under (frames carry at most 64 KiB).
const PAGE_BYTES: usize = 48 * 1024;

/// An operation's answer with its descriptors, and the message files to unlink once the change
/// is durable.
type Outcome = ((SessionReply, Vec<Handle>), Vec<u64>);

impl Store {
    /// Carries out `op` for the session of `ticket` on `peer`'s link.
    pub(crate) async fn session_op(
        self: Arc<Self>,
        peer: Role,
        ticket: Ticket,
        op: SessionOp,
        events: EventSender<StoreService>,
    ) -> (Response, Vec<Handle>) {
        let Some(session) = self.session(peer, &ticket) else {
            return (Response::Session(SessionReply::InvalidTicket), Vec::new());
        };
        let account = session.account;
        if op == SessionOp::Watch {
            let link = events.link_name().to_string();
            self.feed.watch(peer, &account, ticket, events, &link);
            return (Response::Session(SessionReply::Done), Vec::new());
        }
        let store = self.clone();
        let result =
            match tokio::task::spawn_blocking(move || store.run_op(peer, &account, op)).await {
                Ok(r) => r,
                Err(e) => Err(StoreError::Db(format!("store task: {e}"))),
            };
        let (reply, fds, unlink) = match result {
            Ok(((reply, fds), unlink)) => (reply, fds, unlink),
            Err(e) => {
                self.db.notice(&e);
                return (refusal(e), Vec::new());
            }
        };
        // Reads wait too: a session must never see a UID or modseq that a crash could still
        // take back. The group flusher makes this cheap when nothing is pending.
        if let Err(e) = self.flusher.flush().await {
            return (refusal(e), Vec::new());
        }
        for id in unlink {
            if let Err(e) = self.files.remove(id) {
                tracing::error!("unlinking message file {id:x}: {e}");
            }
        }
        (Response::Session(reply), fds)
    }

    /// The blocking part; also returns message files to unlink once the change is durable.
    fn run_op(&self, peer: Role, account: &str, op: SessionOp) -> Result<Outcome, StoreError> {
        let _changing = self.pause.read().unwrap_or_else(|e| e.into_inner());
        let db = &self.db;
        let done = |r: SessionReply| Ok(((r, Vec::new()), Vec::new()));
        match op {
            SessionOp::ListMailboxes => done(SessionReply::Mailboxes(db.mailbox_list(account)?)),
            SessionOp::CreateMailbox { name } => {
                db.create_mailbox(account, &name)?;
                done(SessionReply::Done)
            }
            SessionOp::RenameMailbox { from, to }
                if crate::mailboxes::check_name(&from)? == "Inbox" =>
            {
                // RFC 9051 §6.3.6: renaming INBOX moves its messages to a new mailbox of that
                // name and leaves INBOX, empty, in place.
                let (inbox, _) = self.named(account, "Inbox")?;
                let target = db.create_mailbox(account, &to)?;
                let moved = db.move_messages(&self.files, inbox, &[(1, u32::MAX)], target)?;
                Ok(((SessionReply::Done, Vec::new()), moved.unlink))
            }
            SessionOp::RenameMailbox { from, to } => {
                db.rename_mailbox(account, &from, &to)?;
                done(SessionReply::Done)
            }
            SessionOp::DeleteMailbox { name } => {
                let files = db.delete_mailbox(account, &name)?;
                Ok(((SessionReply::Done, Vec::new()), files))
            }
            SessionOp::Subscribe { name, subscribed } => {
                db.subscribe(account, &name, subscribed)?;
                done(SessionReply::Done)
            }
            SessionOp::Select { name } => {
                let (id, m) = self.named(account, &name)?;
                done(SessionReply::Selected {
                    id,
                    info: crate::accounts::mailbox_info(m),
                })
            }
            SessionOp::Fetch {
                mailbox,
                uids,
                after,
            } => {
                self.owned(account, mailbox)?;
                let mut messages = Vec::new();
                let mut bytes = 0;
                let mut more = None;
                for (uid, m) in db.message_records(mailbox)? {
                    if after.is_some_and(|a| uid <= a) || !crate::messages::contains(&uids, uid) {
                        continue;
                    }
                    let meta = meta(uid, m);
                    let size = ipc::codec::encode(&meta)
                        .map(|b| b.len())
                        .unwrap_or(PAGE_BYTES);
                    if bytes + size > PAGE_BYTES && !messages.is_empty() {
                        more = messages.last().map(|m: &MessageMeta| m.uid);
                        break;
                    }
                    bytes += size;
                    messages.push(meta);
                }
                done(SessionReply::Messages { messages, more })
            }
            SessionOp::Open { mailbox, uid } => {
                self.owned(account, mailbox)?;
                let m = db
                    .message_records(mailbox)?
                    .into_iter()
                    .find(|(u, _)| *u == uid)
                    .ok_or_else(|| StoreError::Invalid {
                        what: "uid",
                        why: format!("no message {uid}"),
                    })?
                    .1;
                let file = self.files.open_read(m.file)?;
                Ok((
                    (
                        SessionReply::Opened { size: m.size },
                        vec![OwnedFd::from(file)],
                    ),
                    Vec::new(),
                ))
            }
            SessionOp::OpenUpload => {
                let (id, fd) = self.open_temp(peer).map_err(|r| match r {
                    crate::service::Refusal::NoSpace(m) => StoreError::NoSpace(m),
                    crate::service::Refusal::Failed(f) => StoreError::Db(f.message),
                })?;
                Ok((
                    (SessionReply::UploadOpened { upload: id }, vec![fd]),
                    Vec::new(),
                ))
            }
            SessionOp::Append {
                name,
                upload,
                flags,
                keywords,
                internal_date,
            } => {
                for k in &keywords {
                    check_keyword(k)?;
                }
                if keywords.len() > crate::messages::MAX_KEYWORDS {
                    return Err(StoreError::Invalid {
                        what: "keywords",
                        why: "too many".into(),
                    });
                }
                let (id, m) = self.named(account, &name)?;
                let file = self
                    .take_temp(peer, upload)
                    .ok_or_else(|| StoreError::Invalid {
                        what: "upload",
                        why: format!("no upload {upload}"),
                    })?;
                let size = file
                    .metadata()
                    .map_err(|e| StoreError::File {
                        path: "(upload)".into(),
                        source: e,
                    })?
                    .len();
                if size > crate::service::MAX_MESSAGE_SIZE {
                    return Err(StoreError::Invalid {
                        what: "message",
                        why: format!("{size} bytes is too large"),
                    });
                }
                let file_id = db.new_id()?;
                let head = self.files.store(&file, size, &[file_id])?;
                let (envelope, structure) =
                    match crate::structure::analyze(&self.files, file_id, size, &head) {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = self.files.remove(file_id);
                            return Err(e);
                        }
                    };
                let message = Message {
                    file: file_id,
                    size,
                    modseq: 0,
                    flags: Flags(flags & 0x1f),
                    keywords,
                    internal_date: internal_date.unwrap_or_else(now),
                    envelope,
                    structure,
                };
                let uid = match db.append_messages(&[(id, message)]) {
                    Ok(uids) => uids[0],
                    Err(e) => {
                        let _ = self.files.remove(file_id);
                        return Err(e);
                    }
                };
                done(SessionReply::Appended {
                    uidvalidity: m.uidvalidity,
                    uid,
                })
            }
            SessionOp::Store {
                mailbox,
                uids,
                change,
                flags,
                keywords,
                unchanged_since,
            } => {
                self.owned(account, mailbox)?;
                let change = match change {
                    FlagChange::Add => Change::Add,
                    FlagChange::Remove => Change::Remove,
                    FlagChange::Replace => Change::Replace,
                };
                let r = db.store_flags(
                    mailbox,
                    &uids,
                    change,
                    Flags(flags & 0x1f),
                    &keywords,
                    unchanged_since,
                )?;
                done(SessionReply::Stored {
                    updated: r.updated.into_iter().map(wire_flags).collect(),
                    modified: r.modified,
                })
            }
            SessionOp::Copy { from, uids, to } => {
                self.owned(account, from)?;
                let (to, _) = self.named(account, &to)?;
                let (pairs, uidvalidity) = db.copy_messages(&self.files, from, &uids, to)?;
                done(SessionReply::Copied { uidvalidity, pairs })
            }
            SessionOp::Move { from, uids, to } => {
                self.owned(account, from)?;
                let (to, _) = self.named(account, &to)?;
                let moved = db.move_messages(&self.files, from, &uids, to)?;
                let reply = SessionReply::Copied {
                    uidvalidity: moved.uidvalidity,
                    pairs: moved.pairs,
                };
                Ok(((reply, Vec::new()), moved.unlink))
            }
            SessionOp::Expunge { mailbox, uids } => {
                self.owned(account, mailbox)?;
                let (gone, unlink) = db.expunge(mailbox, uids.as_deref())?;
                Ok(((SessionReply::Expunged(gone), Vec::new()), unlink))
            }
            SessionOp::Search { mailbox, criteria } => {
                self.owned(account, mailbox)?;
                done(SessionReply::Uids(crate::search::search(
                    db,
                    &self.files,
                    mailbox,
                    &criteria,
                )?))
            }
            SessionOp::Watch => done(SessionReply::Done),
            SessionOp::Changes { mailbox, since } => {
                self.owned(account, mailbox)?;
                let c = db.changes_since(mailbox, since)?;
                done(SessionReply::Changes {
                    changed: c.changed.into_iter().map(wire_flags).collect(),
                    vanished: c.vanished,
                    highest_modseq: c.highest_modseq,
                })
            }
        }
    }

    /// A mailbox of `account` by id; another account's is "no such mailbox", as if absent.
    fn owned(&self, account: &str, id: u64) -> Result<Mailbox, StoreError> {
        match self.db.mailbox(id)? {
            Some(m) if m.account == account => Ok(m),
            _ => Err(StoreError::NoMailbox(id.to_string())),
        }
    }

    fn named(&self, account: &str, name: &str) -> Result<(u64, Mailbox), StoreError> {
        let name = crate::mailboxes::check_name(name)?;
        self.db
            .mailbox_by_name(account, &name)?
            .ok_or(StoreError::NoMailbox(name))
    }
}

fn refusal(e: StoreError) -> Response {
    match e {
        StoreError::Db(_)
        | StoreError::DbIo(_)
        | StoreError::Failed(_)
        | StoreError::Corrupt { .. }
        | StoreError::File { .. }
        | StoreError::Schema { .. } => {
            tracing::error!("{e}");
            Response::Failed(ipc::msg::store::Failure {
                temporary: true,
                message: "storage error".into(),
            })
        }
        other => Response::Session(SessionReply::Refused(other.to_string())),
    }
}

fn wire_flags(u: Updated) -> MessageFlags {
    MessageFlags {
        uid: u.uid,
        modseq: u.modseq,
        flags: u.flags.0,
        keywords: u.keywords,
    }
}

fn meta(uid: u32, m: Message) -> MessageMeta {
    MessageMeta {
        uid,
        modseq: m.modseq,
        flags: m.flags.0,
        keywords: m.keywords,
        internal_date: m.internal_date,
        size: m.size,
        envelope: wire_envelope(m.envelope),
        structure: m.structure.into_iter().map(wire_part).collect(),
    }
}

fn wire_envelope(e: Envelope) -> WireEnvelope {
    let list =
        |v: Vec<EnvelopeAddress>| v.into_iter().map(|a| (a.name, a.local, a.domain)).collect();
    WireEnvelope {
        date: e.date,
        subject: e.subject,
        from: list(e.from),
        sender: list(e.sender),
        reply_to: list(e.reply_to),
        to: list(e.to),
        cc: list(e.cc),
        bcc: list(e.bcc),
        in_reply_to: e.in_reply_to,
        message_id: e.message_id,
    }
}

fn wire_part(p: crate::structure::BodyPart) -> ipc::msg::store::BodyPart {
    ipc::msg::store::BodyPart {
        parent: p.parent,
        content_type: p.content_type,
        subtype: p.subtype,
        params: p.params,
        id: p.id,
        description: p.description,
        encoding: p.encoding,
        disposition: p.disposition,
        language: p.language,
        location: p.location,
        header_start: p.header_start,
        body_start: p.body_start,
        end: p.end,
        lines: p.lines,
    }
}
