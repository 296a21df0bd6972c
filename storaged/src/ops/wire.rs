//! Store records as catalogue types: the shapes the mailbox API sends to imapd and httpd.

use ipc::msg::store::{Envelope as WireEnvelope, MessageFlags, MessageMeta, ModSeq, Uid};

use crate::db::record::Message;
use crate::envelope::{Envelope, EnvelopeAddress};
use crate::messages::Updated;

pub(super) fn wire_flags(u: Updated) -> MessageFlags {
    MessageFlags {
        uid: Uid(u.uid),
        modseq: ModSeq(u.modseq),
        flags: u.flags,
        keywords: u.keywords,
    }
}

pub(super) fn meta(uid: u32, m: Message) -> MessageMeta {
    MessageMeta {
        uid: Uid(uid),
        modseq: ModSeq(m.modseq),
        flags: m.flags,
        keywords: m.keywords,
        internal_date: m.internal_date,
        size: m.size,
        envelope: wire_envelope(m.envelope),
        structure: m.structure,
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
