//! The SMTP session state machine (RFC 5321 §4.1.4 ordering, RFC 4954 AUTH, RFC 3207 STARTTLS,
//! RFC 6531 SMTPUTF8, RFC 8689 REQUIRETLS, RFC 9422 LIMITS), without I/O: commands in,
//! [`Step`]s out. What needs a peer (a recipient lookup, authd, TLS, the message) is a step the
//! connection carries out and reports back.

use std::sync::Arc;
use std::time::Duration;

use crate::address::Address;
use crate::command::{Command, MailParams};
use crate::reply::Reply;
use ipc::Secret;

/// Which instance this is (DESIGN.md §8): MX takes mail for local recipients only; submission
/// takes mail from authenticated users, for anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Mx,
    Submission,
}

/// What a session is allowed and limited to.
#[derive(Debug, Clone)]
pub struct Config {
    pub hostname: String,
    pub mode: Mode,
    pub max_size: u64,
    pub max_recipients: usize,
    /// Errors after which the connection is closed.
    pub max_errors: u32,
    /// STARTTLS can be offered (a plain listener with certificates).
    pub starttls: bool,
}

/// Where a recipient's mail goes, as the connection found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    Local,
    /// A local domain without that address.
    Unknown,
    /// Not one of our domains.
    Remote,
}

/// What the connection must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Reply(Reply),
    /// Say 220, drop everything buffered, handshake, then call [`Session::tls_started`].
    StartTls(Reply),
    /// Ask where `to` goes, then call [`Session::recipient`].
    CheckRecipient(Address),
    /// Submission: ask which account `from` belongs to, then call [`Session::sender`].
    CheckSender(Option<Address>),
    /// Relay a SASL exchange to authd, then call [`Session::authenticated`] on success.
    Auth {
        mechanism: String,
        initial: Option<Secret<String>>,
    },
    /// Say 354 and read the message.
    Data(Reply),
}

/// One mail transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub from: Option<Address>,
    pub params: MailParams,
    pub local: Vec<Address>,
    pub remote: Vec<Address>,
    /// MAIL was accepted (a pending sender check has not finished otherwise).
    pub started: bool,
}

#[derive(Debug)]
pub struct Session {
    pub config: Arc<Config>,
    pub tls: bool,
    /// The client's HELO/EHLO name and whether it was EHLO.
    pub helo: Option<(String, bool)>,
    pub account: Option<String>,
    pub tx: Option<Transaction>,
    pub errors: u32,
    /// Mechanisms to announce (from authd, for this connection's TLS state).
    pub mechanisms: Vec<String>,
}

impl Session {
    pub fn new(config: Arc<Config>, tls: bool) -> Session {
        Session {
            config,
            tls,
            helo: None,
            account: None,
            tx: None,
            errors: 0,
            mechanisms: Vec::new(),
        }
    }

    pub fn greeting(&self) -> Reply {
        Reply::plain(220, format!("{} ESMTP moxd", self.config.hostname))
    }

    /// How long to wait before answering after errors: nothing for the first three, then a
    /// second more per error, at most five (slows down guessing without hurting clients that
    /// make a mistake).
    pub fn delay(&self) -> Duration {
        Duration::from_secs(u64::from(self.errors.saturating_sub(3).min(5)))
    }

    /// Counts an error reply; past the limit the connection is closed instead.
    pub fn error(&mut self, reply: Reply) -> Reply {
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            return Reply::new(
                421,
                "4.7.0",
                format!("{} too many errors, closing", self.config.hostname),
            );
        }
        reply
    }

    /// Handles a line that did not parse.
    pub fn bad_command(&mut self, reply: Reply) -> Step {
        Step::Reply(self.error(reply))
    }

    /// Handles one command.
    pub fn command(&mut self, cmd: Command) -> Step {
        match self.dispatch(cmd) {
            // 452 (too many recipients) is a normal answer a client is told to expect.
            Step::Reply(r) if r.is_error() && r.code != 421 && r.code != 452 => {
                Step::Reply(self.error(r))
            }
            other => other,
        }
    }

    fn dispatch(&mut self, cmd: Command) -> Step {
        let reply = |code, e, text: &str| Step::Reply(Reply::new(code, e, text));
        match cmd {
            Command::Ehlo(name) => {
                self.helo = Some((name.clone(), true));
                self.tx = None;
                Step::Reply(self.ehlo_reply(&name))
            }
            Command::Helo(name) => {
                self.helo = Some((name.clone(), false));
                self.tx = None;
                Step::Reply(Reply::plain(
                    250,
                    format!("{} greets {name}", self.config.hostname),
                ))
            }
            Command::Quit => Step::Reply(Reply::new(
                221,
                "2.0.0",
                format!("{} closing", self.config.hostname),
            )),
            Command::Noop => reply(250, "2.0.0", "ok"),
            Command::Rset => {
                self.tx = None;
                reply(250, "2.0.0", "reset")
            }
            Command::Help => reply(214, "2.0.0", "moxd: see RFC 5321 for the commands"),
            Command::Vrfy => reply(
                252,
                "2.5.0",
                "cannot verify the user, but will accept the message and attempt delivery",
            ),
            Command::Expn => reply(502, "5.5.1", "EXPN is not available"),
            Command::StartTls => {
                if self.tls {
                    reply(503, "5.5.1", "TLS is already active")
                } else if !self.config.starttls {
                    reply(502, "5.5.1", "STARTTLS is not available here")
                } else {
                    Step::StartTls(Reply::new(220, "2.0.0", "ready to start TLS"))
                }
            }
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to } => self.rcpt(to),
            Command::Data => match &self.tx {
                Some(tx) if tx.started && (!tx.local.is_empty() || !tx.remote.is_empty()) => {
                    Step::Data(Reply::plain(
                        354,
                        "start mail input; end with <CRLF>.<CRLF>",
                    ))
                }
                Some(tx) if tx.started => reply(554, "5.5.1", "no valid recipients"),
                _ => reply(503, "5.5.1", "MAIL and RCPT first"),
            },
        }
    }

    fn ehlo_reply(&self, name: &str) -> Reply {
        let mut lines = vec![
            format!("{} greets {name}", self.config.hostname),
            "PIPELINING".into(),
            format!("SIZE {}", self.config.max_size),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
        ];
        if !self.tls && self.config.starttls {
            lines.push("STARTTLS".into());
        }
        if self.tls {
            lines.push("REQUIRETLS".into());
        }
        lines.push(format!("LIMITS RCPTMAX={}", self.config.max_recipients));
        if self.auth_offered() && !self.mechanisms.is_empty() {
            lines.push(format!("AUTH {}", self.mechanisms.join(" ")));
        }
        Reply::multiline(250, lines)
    }

    /// AUTH is offered on submission, and only over TLS.
    fn auth_offered(&self) -> bool {
        self.config.mode == Mode::Submission && self.tls
    }

    fn auth(&mut self, mechanism: String, initial: Option<Secret<String>>) -> Step {
        let reply = |code, e, text: &str| Step::Reply(Reply::new(code, e, text));
        if self.config.mode == Mode::Mx {
            return reply(502, "5.5.1", "AUTH is for submission (ports 465 and 587)");
        }
        if self.helo.as_ref().is_none_or(|(_, ehlo)| !ehlo) {
            return reply(503, "5.5.1", "send EHLO first");
        }
        if !self.tls {
            return reply(538, "5.7.11", "encryption required: STARTTLS first");
        }
        if self.account.is_some() {
            return reply(503, "5.5.1", "already authenticated");
        }
        if self.tx.is_some() {
            return reply(
                503,
                "5.5.1",
                "AUTH is not allowed during a mail transaction",
            );
        }
        if !self.mechanisms.contains(&mechanism) {
            return reply(504, "5.5.4", "unrecognized authentication mechanism");
        }
        Step::Auth { mechanism, initial }
    }

    /// authd accepted the client.
    pub fn authenticated(&mut self, account: String) {
        self.account = Some(account);
    }

    fn mail(&mut self, from: Option<Address>, params: MailParams) -> Step {
        let reply = |code, e, text: String| Step::Reply(Reply::new(code, e, text));
        let Some((_, ehlo)) = &self.helo else {
            return reply(503, "5.5.1", "send EHLO first".into());
        };
        if self.tx.is_some() {
            return reply(
                503,
                "5.5.1",
                "a transaction is in progress; RSET first".into(),
            );
        }
        if params.any && !ehlo {
            return reply(555, "5.5.4", "parameters need EHLO, not HELO".into());
        }
        if self.config.mode == Mode::Submission && self.account.is_none() {
            return reply(530, "5.7.0", "authentication required".into());
        }
        if let Some(size) = params.size
            && size > self.config.max_size
        {
            return reply(
                552,
                "5.3.4",
                format!(
                    "the message is larger than the limit of {} octets",
                    self.config.max_size
                ),
            );
        }
        if from.as_ref().is_some_and(|a| a.utf8) && !params.smtputf8 {
            return reply(
                553,
                "5.6.7",
                "a UTF-8 address needs the SMTPUTF8 parameter".into(),
            );
        }
        if params.requiretls && !self.tls {
            return reply(530, "5.7.10", "REQUIRETLS needs a TLS connection".into());
        }
        self.tx = Some(Transaction {
            from: from.clone(),
            params,
            ..Transaction::default()
        });
        match self.config.mode {
            Mode::Mx => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.started = true;
                }
                reply(250, "2.1.0", "sender ok".into())
            }
            Mode::Submission => Step::CheckSender(from),
        }
    }

    /// Submission: the sender's address belongs to `account` (or to nobody: `None`).
    pub fn sender(&mut self, owner: Option<&str>) -> Reply {
        let ok = owner.is_some() && owner == self.account.as_deref();
        match self.tx.as_mut() {
            Some(tx) if ok => {
                tx.started = true;
                Reply::new(250, "2.1.0", "sender ok")
            }
            _ => {
                self.tx = None;
                let r = Reply::new(
                    550,
                    "5.7.1",
                    "that sender address does not belong to your account",
                );
                self.error(r)
            }
        }
    }

    fn rcpt(&mut self, to: Address) -> Step {
        let reply = |code, e, text: String| Step::Reply(Reply::new(code, e, text));
        let Some(tx) = self.tx.as_ref().filter(|t| t.started) else {
            return reply(503, "5.5.1", "MAIL first".into());
        };
        if tx.local.len() + tx.remote.len() >= self.config.max_recipients {
            return reply(
                452,
                "4.5.3",
                format!(
                    "too many recipients; at most {} per message",
                    self.config.max_recipients
                ),
            );
        }
        if to.utf8 && !tx.params.smtputf8 {
            return reply(
                553,
                "5.6.7",
                "a UTF-8 address needs SMTPUTF8 on MAIL".into(),
            );
        }
        let to = if to.is_bare_postmaster() {
            Address {
                local: "postmaster".into(),
                domain: self.config.hostname.to_ascii_lowercase(),
                utf8: false,
            }
        } else {
            to
        };
        Step::CheckRecipient(to)
    }

    /// Where `to` goes; adds it to the transaction when it is accepted.
    pub fn recipient(&mut self, to: Address, found: Recipient) -> Reply {
        let mode = self.config.mode;
        let Some(tx) = self.tx.as_mut() else {
            return Reply::new(503, "5.5.1", "MAIL first");
        };
        let reply = match (found, mode) {
            (Recipient::Local, _) => {
                tx.local.push(to);
                return Reply::new(250, "2.1.5", "recipient ok");
            }
            (Recipient::Unknown, _) => Reply::new(550, "5.1.1", "no such user here"),
            (Recipient::Remote, Mode::Mx) => {
                Reply::new(554, "5.7.1", "relaying denied: not a local domain")
            }
            (Recipient::Remote, Mode::Submission) => {
                tx.remote.push(to);
                return Reply::new(250, "2.1.5", "recipient ok");
            }
        };
        self.error(reply)
    }

    /// TLS is up: everything from before is forgotten (RFC 3207 §4.2); EHLO comes again.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.helo = None;
        self.tx = None;
        self.account = None;
    }

    /// The transaction ended (delivered or refused).
    pub fn transaction_done(&mut self) -> Option<Transaction> {
        self.tx.take()
    }

    /// A message was accepted: earlier mistakes on this connection are forgiven.
    pub fn delivered(&mut self) {
        self.errors = 0;
    }
}
