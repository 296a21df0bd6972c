//! Envelope addresses (RFC 5321 §4.1.2; RFC 6531 for UTF-8): `<local@domain>`, the null
//! reverse path `<>`, and the special `<Postmaster>`. Domains are compared in their ASCII form
//! (IDNA A-labels, lowercase); local parts are kept as sent (they are case-sensitive in
//! principle; storaged folds case for its own addresses).

/// A mailbox from a MAIL or RCPT command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// The local part as sent (a quoted string keeps its quotes).
    pub local: String,
    /// The domain in ASCII (A-labels, lowercase), or an address literal `[…]`; empty for the
    /// bare `<Postmaster>`.
    pub domain: String,
    /// Whether the local part or domain used UTF-8 (needs SMTPUTF8).
    pub utf8: bool,
}

impl Address {
    /// `local@domain`.
    pub fn to_string_ascii_domain(&self) -> String {
        if self.domain.is_empty() {
            self.local.clone()
        } else {
            format!("{}@{}", self.local, self.domain)
        }
    }

    /// Whether this is `<Postmaster>` without a domain (RFC 5321 §4.5.1).
    pub fn is_bare_postmaster(&self) -> bool {
        self.domain.is_empty() && self.local.eq_ignore_ascii_case("postmaster")
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string_ascii_domain())
    }
}

/// Why a path did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError(pub &'static str);

/// Parses `<…>` at the start of `s`; returns the address (`None` for `<>`) and the rest.
pub fn parse_path(s: &str, reverse: bool) -> Result<(Option<Address>, &str), PathError> {
    let s = s.trim_start();
    let body = s
        .strip_prefix('<')
        .ok_or(PathError("the address must be in <>"))?;
    let end = closing_bracket(body).ok_or(PathError("no closing >"))?;
    let (inner, rest) = (&body[..end], &body[end + 1..]);
    if inner.is_empty() {
        return if reverse {
            Ok((None, rest))
        } else {
            Err(PathError("an empty recipient"))
        };
    }
    // A source route (`@a,@b:user@c`) is accepted and ignored (RFC 5321 §4.1.2, §C).
    let inner = if inner.starts_with('@') {
        inner
            .split_once(':')
            .map(|(_, m)| m)
            .ok_or(PathError("a source route without a mailbox"))?
    } else {
        inner
    };
    if !reverse && inner.eq_ignore_ascii_case("postmaster") {
        return Ok((
            Some(Address {
                local: inner.to_string(),
                domain: String::new(),
                utf8: false,
            }),
            rest,
        ));
    }
    Ok((Some(parse_mailbox(inner)?), rest))
}

/// The `>` that ends the path, skipping quoted strings.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// `local@domain`.
pub fn parse_mailbox(s: &str) -> Result<Address, PathError> {
    let at = s.rfind('@').ok_or(PathError("no @ in the address"))?;
    let (local, domain) = (&s[..at], &s[at + 1..]);
    if local.is_empty() || local.len() > 64 {
        return Err(PathError("the local part must be 1 to 64 octets"));
    }
    if local.starts_with('"') {
        check_quoted(local)?;
    } else {
        check_dot_string(local)?;
    }
    let domain = parse_domain(domain)?;
    Ok(Address {
        utf8: !local.is_ascii() || !s[at + 1..].is_ascii(),
        local: local.to_string(),
        domain,
    })
}

fn check_dot_string(local: &str) -> Result<(), PathError> {
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";
    for atom in local.split('.') {
        if atom.is_empty() {
            return Err(PathError(
                "empty atom in the local part (two dots, or a dot at an end)",
            ));
        }
        if !atom.chars().all(|c| {
            c.is_ascii_alphanumeric() || SPECIALS.contains(c) || (!c.is_ascii() && !c.is_control())
        }) {
            return Err(PathError(
                "a character not allowed in an unquoted local part",
            ));
        }
    }
    Ok(())
}

fn check_quoted(local: &str) -> Result<(), PathError> {
    let inner = local
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .ok_or(PathError("an unterminated quoted local part"))?;
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            if !(' '..='~').contains(&c) {
                return Err(PathError("a bad quoted pair"));
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' || (c.is_ascii() && !(' '..='~').contains(&c)) || c.is_control() {
            return Err(PathError("a character not allowed in a quoted local part"));
        }
    }
    if escaped {
        return Err(PathError("a quoted local part ending in a backslash"));
    }
    Ok(())
}

/// A domain (to A-labels, lowercase) or an address literal.
pub fn parse_domain(d: &str) -> Result<String, PathError> {
    if let Some(lit) = d.strip_prefix('[') {
        let lit = lit
            .strip_suffix(']')
            .ok_or(PathError("an unterminated address literal"))?;
        let ok = match lit.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => lit.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        return if ok {
            Ok(format!("[{lit}]"))
        } else {
            Err(PathError("a bad address literal"))
        };
    }
    let d = d.strip_suffix('.').unwrap_or(d);
    if d.is_empty() || d.len() > 255 {
        return Err(PathError("a bad domain"));
    }
    let ascii =
        idna::domain_to_ascii(d).map_err(|_| PathError("a domain that is not valid IDNA"))?;
    let ok = ascii.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if ok {
        Ok(ascii)
    } else {
        Err(PathError("a bad domain"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(s: &str) -> Result<Address, PathError> {
        parse_path(s, false).map(|(a, _)| a.unwrap())
    }

    #[test]
    fn parses_paths() {
        let a = mailbox("<Alice@Example.ORG>").unwrap();
        assert_eq!(
            (a.local.as_str(), a.domain.as_str(), a.utf8),
            ("Alice", "example.org", false)
        );
        let (none, rest) = parse_path("<> SIZE=10", true).unwrap();
        assert_eq!((none, rest), (None, " SIZE=10"));
        assert!(parse_path("<>", false).is_err());
        assert_eq!(
            mailbox("<@relay.example:bob@example.org>").unwrap().local,
            "bob"
        );
        let q = mailbox("<\"john doe\\\"x>\"@example.org>").unwrap();
        assert_eq!(q.local, "\"john doe\\\"x>\"");
        assert_eq!(mailbox("<user@[192.0.2.1]>").unwrap().domain, "[192.0.2.1]");
        assert_eq!(
            mailbox("<user@[IPv6:2001:db8::1]>").unwrap().domain,
            "[IPv6:2001:db8::1]"
        );
        assert!(mailbox("<Postmaster>").unwrap().is_bare_postmaster());
        let u = mailbox("<jøran@blåbærsyltetøy.example>").unwrap();
        assert_eq!(u.domain, "xn--blbrsyltety-y8ao3x.example");
        assert!(u.utf8);
        assert_eq!(mailbox("<a@example.org.>").unwrap().domain, "example.org");
    }

    #[test]
    fn refuses_bad_paths() {
        for bad in [
            "alice@example.org",
            "<alice@example.org",
            "<alice>",
            "<@example.org>",
            "<a..b@example.org>",
            "<.a@example.org>",
            "<a b@example.org>",
            "<a@-example.org>",
            "<a@exa_mple.org>",
            "<a@[300.1.1.1]>",
            "<\"unterminated@example.org>",
            "<a@>",
        ] {
            assert!(mailbox(bad).is_err(), "{bad}");
        }
        let long = format!("<{}@example.org>", "a".repeat(65));
        assert!(mailbox(&long).is_err());
    }
}
