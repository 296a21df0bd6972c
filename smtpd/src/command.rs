//! SMTP commands (RFC 5321 §4.1.1 and the extensions moxd announces), parsed from one line
//! without its CRLF. No I/O: a line in, a [`Command`] or the reply for a bad one out.

use crate::address::{Address, parse_domain, parse_path};
use crate::reply::Reply;
use ipc::Secret;

/// The longest command line accepted, CRLF excluded. RFC 5321 asks for 512 octets at least;
/// SMTPUTF8 addresses and parameters need more.
pub const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    Mail {
        from: Option<Address>,
        params: MailParams,
    },
    Rcpt {
        to: Address,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    Auth {
        mechanism: String,
        /// The initial response may carry the password (PLAIN).
        initial: Option<Secret<String>>,
    },
}

/// MAIL FROM parameters moxd understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub requiretls: bool,
    /// Any parameter was given (not allowed after HELO).
    pub any: bool,
}

/// Parses one command line.
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    let line = std::str::from_utf8(line)
        .map_err(|_| Reply::new(500, "5.5.2", "the command is not valid UTF-8"))?;
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Reply::new(
            500,
            "5.5.2",
            "control characters in the command",
        ));
    }
    let (verb, args) = match line.split_once(' ') {
        Some((v, a)) => (v, a),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |c: Command| {
        if args.trim().is_empty() {
            Ok(c)
        } else {
            Err(Reply::new(
                501,
                "5.5.4",
                format!("{verb} takes no arguments"),
            ))
        }
    };
    match verb.as_str() {
        "HELO" | "EHLO" => {
            let name = args.trim();
            if name.is_empty() {
                return Err(Reply::new(
                    501,
                    "5.5.4",
                    format!("{verb} needs your host name"),
                ));
            }
            // Anything goes as the client's name (many send garbage); only its form is kept.
            let name = name.split(' ').next().unwrap_or(name).to_string();
            Ok(if verb == "HELO" {
                Command::Helo(name)
            } else {
                Command::Ehlo(name)
            })
        }
        "MAIL" => parse_mail(args),
        "RCPT" => parse_rcpt(args),
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "QUIT" => no_args(Command::Quit),
        "STARTTLS" => no_args(Command::StartTls),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "AUTH" => {
            let mut parts = args.split(' ').filter(|p| !p.is_empty());
            let mechanism = parts
                .next()
                .ok_or_else(|| Reply::new(501, "5.5.4", "AUTH needs a mechanism"))?
                .to_ascii_uppercase();
            let initial = parts.next().map(|s| Secret::new(s.to_string()));
            if parts.next().is_some() {
                return Err(Reply::new(
                    501,
                    "5.5.4",
                    "AUTH takes a mechanism and one response",
                ));
            }
            Ok(Command::Auth { mechanism, initial })
        }
        "" => Err(Reply::new(500, "5.5.2", "empty command")),
        _ => Err(Reply::new(500, "5.5.1", "command not recognized")),
    }
}

/// `FROM:<path> [params]`, tolerating a space after the colon (as most servers do).
fn parse_mail(args: &str) -> Result<Command, Reply> {
    let rest = strip_keyword(args, "FROM:")
        .ok_or_else(|| Reply::new(501, "5.5.4", "use MAIL FROM:<address>"))?;
    let (from, rest) = parse_path(rest, true)
        .map_err(|e| Reply::new(553, "5.1.7", format!("bad sender address: {}", e.0)))?;
    let mut params = MailParams::default();
    for p in rest.split(' ').filter(|p| !p.is_empty()) {
        params.any = true;
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (p.to_ascii_uppercase(), None),
        };
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => {
                params.size = Some(
                    v.parse()
                        .map_err(|_| Reply::new(501, "5.5.4", "SIZE must be a number of octets"))?,
                )
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => params.eight_bit = true,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => params.eight_bit = false,
            ("SMTPUTF8", None) => params.smtputf8 = true,
            ("REQUIRETLS", None) => params.requiretls = true,
            // RFC 4954 §5: the submitter's identity; accepted and not relied on.
            ("AUTH", Some(_)) => {}
            _ => {
                return Err(Reply::new(
                    555,
                    "5.5.4",
                    format!("MAIL parameter {key} not recognized or not implemented"),
                ));
            }
        }
    }
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(args: &str) -> Result<Command, Reply> {
    let rest = strip_keyword(args, "TO:")
        .ok_or_else(|| Reply::new(501, "5.5.4", "use RCPT TO:<address>"))?;
    let (to, rest) = parse_path(rest, false)
        .map_err(|e| Reply::new(553, "5.1.3", format!("bad recipient address: {}", e.0)))?;
    if let Some(p) = rest.split(' ').find(|p| !p.is_empty()) {
        return Err(Reply::new(
            555,
            "5.5.4",
            format!("RCPT parameter {p} not recognized or not implemented"),
        ));
    }
    let to = to.ok_or_else(|| Reply::new(553, "5.1.3", "an empty recipient"))?;
    Ok(Command::Rcpt { to })
}

fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &args[keyword.len()..])
}

/// Whether a HELO/EHLO name looks like a domain or an address literal (for the Received line).
pub fn valid_helo(name: &str) -> bool {
    parse_domain(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line.as_bytes()).unwrap_or_else(|r| panic!("{line}: {r}"))
    }

    fn err(line: &[u8]) -> (u16, &'static str) {
        let r = parse(line).expect_err(&String::from_utf8_lossy(line));
        (r.code, r.enhanced.unwrap_or(""))
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(
            ok("EHLO client.example"),
            Command::Ehlo("client.example".into())
        );
        assert_eq!(ok("helo [192.0.2.1]"), Command::Helo("[192.0.2.1]".into()));
        assert_eq!(ok("DATA"), Command::Data);
        assert_eq!(ok("rset"), Command::Rset);
        assert_eq!(ok("NOOP anything"), Command::Noop);
        assert_eq!(ok("QUIT"), Command::Quit);
        assert_eq!(ok("VRFY root"), Command::Vrfy);
        assert_eq!(ok("EXPN staff"), Command::Expn);
        assert_eq!(ok("HELP"), Command::Help);
        assert_eq!(ok("STARTTLS"), Command::StartTls);
        assert_eq!(
            ok("AUTH plain AGFAYg=="),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some(Secret::new("AGFAYg==".into()))
            }
        );
        assert_eq!(
            ok("AUTH LOGIN"),
            Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None
            }
        );
        let Command::Mail { from, params } =
            ok("MAIL FROM:<a@example.org> SIZE=1000 BODY=8BITMIME SMTPUTF8 AUTH=<>")
        else {
            panic!()
        };
        assert_eq!(from.unwrap().domain, "example.org");
        assert_eq!(
            params,
            MailParams {
                size: Some(1000),
                eight_bit: true,
                smtputf8: true,
                requiretls: false,
                any: true
            }
        );
        assert!(matches!(
            ok("mail from: <>"),
            Command::Mail { from: None, .. }
        ));
        assert!(matches!(
            ok("MAIL FROM:<> REQUIRETLS"),
            Command::Mail {
                params: MailParams {
                    requiretls: true,
                    ..
                },
                ..
            }
        ));
        let Command::Rcpt { to } = ok("RCPT TO:<Bob@Example.net>") else {
            panic!()
        };
        assert_eq!(to.to_string(), "Bob@example.net");
        assert!(matches!(ok("RCPT TO:<postmaster>"), Command::Rcpt { .. }));
    }

    #[test]
    fn answers_bad_commands_with_the_right_codes() {
        let table: &[(&[u8], (u16, &str))] = &[
            (b"", (500, "5.5.2")),
            (b"FOO bar", (500, "5.5.1")),
            (b"BDAT 10 LAST", (500, "5.5.1")),
            (b"MAIL FROM:a@example.org", (553, "5.1.7")),
            (b"MAIL TO:<a@example.org>", (501, "5.5.4")),
            (b"MAIL FROM:<a@example.org> SIZE=big", (501, "5.5.4")),
            (b"MAIL FROM:<a@example.org> RET=FULL", (555, "5.5.4")),
            (b"MAIL FROM:<a@example.org> BODY=BINARYMIME", (555, "5.5.4")),
            (b"RCPT TO:<>", (553, "5.1.3")),
            (b"RCPT TO:<a@example.org> NOTIFY=NEVER", (555, "5.5.4")),
            (b"RCPT FROM:<a@example.org>", (501, "5.5.4")),
            (b"DATA now", (501, "5.5.4")),
            (b"STARTTLS please", (501, "5.5.4")),
            (b"EHLO", (501, "5.5.4")),
            (b"AUTH", (501, "5.5.4")),
            (b"AUTH PLAIN a b", (501, "5.5.4")),
            (b"MAIL FROM:<a\xff@example.org>", (500, "5.5.2")),
            (b"NOOP \x00", (500, "5.5.2")),
        ];
        for (line, want) in table {
            assert_eq!(err(line), *want, "{}", String::from_utf8_lossy(line));
        }
    }
}
