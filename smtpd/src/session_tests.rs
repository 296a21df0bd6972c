//! Table-driven conversations with the session state machine, its peers faked: each row is a
//! command line and the reply code (and enhanced code) it must get.

use std::sync::Arc;

use crate::command;
use crate::session::{Config, Mode, Recipient, Session, Step};

/// Runs `script` against a session; returns the replies' "code enhanced" strings.
fn run(mode: Mode, tls: bool, script: &[&str]) -> Vec<String> {
    let config = Arc::new(Config {
        hostname: "mx.example.org".into(),
        mode,
        max_size: 1000,
        max_recipients: 3,
        max_errors: 20,
        starttls: true,
    });
    let mut s = Session::new(config, tls);
    s.mechanisms = vec!["SCRAM-SHA-256".into(), "PLAIN".into()];
    script
        .iter()
        .map(|line| {
            let step = match command::parse(line.as_bytes()) {
                Ok(cmd) => s.command(cmd),
                Err(r) => s.bad_command(r),
            };
            let reply = match step {
                Step::Reply(r) | Step::Data(r) => r,
                Step::StartTls(r) => {
                    s.tls_started();
                    r
                }
                Step::CheckRecipient(to) => {
                    let found = match to.domain.as_str() {
                        "example.org" if to.local == "nobody" => Recipient::Unknown,
                        "example.org" => Recipient::Local,
                        _ => Recipient::Remote,
                    };
                    s.recipient(to, found)
                }
                Step::CheckSender(from) => {
                    let owner = from
                        .as_ref()
                        .and_then(|a| (a.domain == "example.org").then_some("alice"));
                    s.sender(owner)
                }
                Step::Auth { .. } => {
                    s.authenticated("alice".into());
                    crate::reply::Reply::new(235, "2.7.0", "ok")
                }
            };
            format!("{} {}", reply.code, reply.enhanced.unwrap_or("-"))
        })
        .collect()
}

fn check(mode: Mode, tls: bool, rows: &[(&str, &str)]) {
    let script: Vec<&str> = rows.iter().map(|(c, _)| *c).collect();
    let got = run(mode, tls, &script);
    for ((cmd, want), got) in rows.iter().zip(&got) {
        assert_eq!(got, want, "after `{cmd}` in {rows:?}");
    }
}

#[test]
fn mx_conversation() {
    check(
        Mode::Mx,
        false,
        &[
            ("MAIL FROM:<a@example.net>", "503 5.5.1"),
            ("RCPT TO:<b@example.org>", "503 5.5.1"),
            ("DATA", "503 5.5.1"),
            ("EHLO client.example", "250 -"),
            ("AUTH PLAIN AAAA", "502 5.5.1"),
            ("MAIL FROM:<a@example.net> SIZE=1001", "552 5.3.4"),
            ("MAIL FROM:<a@example.net> REQUIRETLS", "530 5.7.10"),
            ("MAIL FROM:<jø@example.net>", "553 5.6.7"),
            (
                "MAIL FROM:<a@example.net> SIZE=999 BODY=8BITMIME",
                "250 2.1.0",
            ),
            ("MAIL FROM:<a@example.net>", "503 5.5.1"),
            ("DATA", "554 5.5.1"),
            ("RCPT TO:<b@example.org>", "250 2.1.5"),
            ("RCPT TO:<nobody@example.org>", "550 5.1.1"),
            ("RCPT TO:<c@elsewhere.example>", "554 5.7.1"),
            ("RCPT TO:<jø@example.org>", "553 5.6.7"),
            ("RCPT TO:<Postmaster>", "554 5.7.1"),
            ("RCPT TO:<c@example.org>", "250 2.1.5"),
            ("RCPT TO:<d@example.org>", "250 2.1.5"),
            ("RCPT TO:<e@example.org>", "452 4.5.3"),
            ("DATA", "354 -"),
        ],
    );
}

#[test]
fn helo_takes_no_parameters_and_rset_vrfy_expn_help_noop_quit() {
    check(
        Mode::Mx,
        false,
        &[
            ("HELO client.example", "250 -"),
            ("MAIL FROM:<a@example.net> SIZE=10", "555 5.5.4"),
            ("MAIL FROM:<a@example.net>", "250 2.1.0"),
            ("RSET", "250 2.0.0"),
            ("RCPT TO:<b@example.org>", "503 5.5.1"),
            ("VRFY root", "252 2.5.0"),
            ("EXPN staff", "502 5.5.1"),
            ("HELP", "214 2.0.0"),
            ("NOOP", "250 2.0.0"),
            ("BOGUS", "500 5.5.1"),
            ("QUIT", "221 2.0.0"),
        ],
    );
}

#[test]
fn smtputf8_addresses_with_the_parameter() {
    check(
        Mode::Mx,
        false,
        &[
            ("EHLO c", "250 -"),
            ("MAIL FROM:<jø@example.net> SMTPUTF8", "250 2.1.0"),
            ("RCPT TO:<bø@example.org>", "250 2.1.5"),
        ],
    );
}

#[test]
fn submission_needs_tls_then_auth_then_own_sender() {
    check(
        Mode::Submission,
        false,
        &[
            ("EHLO c", "250 -"),
            ("AUTH PLAIN AGFsaWNlAHNlY3JldA==", "538 5.7.11"),
            ("MAIL FROM:<alice@example.org>", "530 5.7.0"),
            ("STARTTLS", "220 2.0.0"),
            ("MAIL FROM:<alice@example.org>", "503 5.5.1"),
            ("AUTH PLAIN x", "503 5.5.1"),
            ("EHLO c", "250 -"),
            ("STARTTLS", "503 5.5.1"),
            ("AUTH CRAM-MD5", "504 5.5.4"),
            ("AUTH PLAIN AGFsaWNlAHNlY3JldA==", "235 2.7.0"),
            ("AUTH PLAIN AGFsaWNlAHNlY3JldA==", "503 5.5.1"),
            ("MAIL FROM:<alice@elsewhere.example>", "550 5.7.1"),
            ("MAIL FROM:<>", "550 5.7.1"),
            ("MAIL FROM:<alice@example.org> REQUIRETLS", "250 2.1.0"),
            ("RCPT TO:<bob@example.org>", "250 2.1.5"),
            ("RCPT TO:<carol@elsewhere.example>", "250 2.1.5"),
            ("DATA", "354 -"),
        ],
    );
}

#[test]
fn ehlo_announces_what_the_connection_allows() {
    let config = |mode| {
        Arc::new(Config {
            hostname: "mx.example.org".into(),
            mode,
            max_size: 1000,
            max_recipients: 50,
            max_errors: 20,
            starttls: true,
        })
    };
    let ehlo = |mode, tls: bool| {
        let mut s = Session::new(config(mode), tls);
        s.mechanisms = vec!["PLAIN".into()];
        match s.command(command::parse(b"EHLO c").unwrap()) {
            Step::Reply(r) => r.lines,
            other => panic!("{other:?}"),
        }
    };
    let plain_mx = ehlo(Mode::Mx, false);
    for ext in [
        "PIPELINING",
        "SIZE 1000",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "STARTTLS",
        "LIMITS RCPTMAX=50",
    ] {
        assert!(plain_mx.iter().any(|l| l == ext), "{ext}: {plain_mx:?}");
    }
    assert!(
        !plain_mx
            .iter()
            .any(|l| l.starts_with("AUTH") || l == "REQUIRETLS")
    );
    let tls_sub = ehlo(Mode::Submission, true);
    assert!(tls_sub.iter().any(|l| l == "AUTH PLAIN") && tls_sub.iter().any(|l| l == "REQUIRETLS"));
    assert!(!tls_sub.iter().any(|l| l == "STARTTLS"));
    assert!(
        !ehlo(Mode::Submission, false)
            .iter()
            .any(|l| l.starts_with("AUTH")),
        "no AUTH before TLS"
    );
    assert!(
        !ehlo(Mode::Mx, true).iter().any(|l| l.starts_with("AUTH")),
        "no AUTH on MX"
    );
}

#[test]
fn too_many_errors_close_the_connection() {
    let script = vec!["BOGUS"; 25];
    let got = run(Mode::Mx, false, &script);
    assert_eq!(got[0], "500 5.5.1");
    assert_eq!(got[19], "421 4.7.0", "{got:?}");
}
