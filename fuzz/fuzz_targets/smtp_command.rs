//! smtpd's command parser and session state machine: the input is a conversation, one command
//! per line; every line is parsed and handed to a session whose peers answer from the input's
//! own bytes. Nothing may panic, every reply must be well formed, and the session must stay
//! within its limits.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use smtpd::session::{Config, Mode, Recipient, Session, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, script)) = data.split_first() else {
        return;
    };
    let config = Arc::new(Config {
        hostname: "mx.example.org".into(),
        mode: if flags & 1 == 0 { Mode::Mx } else { Mode::Submission },
        max_size: 1000,
        max_recipients: 5,
        max_errors: 50,
        starttls: flags & 2 != 0,
    });
    let mut s = Session::new(config, flags & 4 != 0);
    s.mechanisms = vec!["PLAIN".into()];
    for (i, line) in script.split(|&b| b == b'\n').enumerate() {
        let step = match smtpd::command::parse(line) {
            Ok(cmd) => s.command(cmd),
            Err(reply) => s.bad_command(reply),
        };
        let reply = match step {
            Step::Reply(r) | Step::Data(r) => r,
            Step::StartTls(r) => {
                s.tls_started();
                r
            }
            Step::CheckRecipient(to) => {
                let found = [Recipient::Local, Recipient::Unknown, Recipient::Remote][i % 3];
                s.recipient(to, found)
            }
            Step::CheckSender(_) => s.sender(if i % 2 == 0 { Some("alice") } else { None }),
            Step::Auth { .. } => {
                s.authenticated("alice".into());
                continue;
            }
        };
        let wire = reply.to_wire();
        assert!((200..600).contains(&reply.code), "{wire}");
        assert!(wire.ends_with("\r\n"), "{wire:?}");
        for l in wire.trim_end_matches("\r\n").split("\r\n") {
            assert!(!l.contains(['\r', '\n']) && l.starts_with(&reply.code.to_string()), "{wire:?}");
        }
        if let Some(tx) = &s.tx {
            assert!(tx.local.len() + tx.remote.len() <= 5);
        }
        if reply.closes() {
            return;
        }
    }
});
