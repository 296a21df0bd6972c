//! The one address of a From: field, as keyd reads it before signing (RFC 5322 §3.4, §3.6.2).
//! keyd signs only for a sender it can name without doubt, so this parser is deliberately
//! narrow: one mailbox (`addr-spec` or `display-name <addr-spec>`), comments ignored; several
//! addresses, groups, domain literals, a quoted local part that is not a plain dot-atom, or a
//! display name that itself looks like an address are refused rather than guessed at.

/// The sender named by a From: field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub local: String,
    /// Lowercased.
    pub domain: String,
}

impl Sender {
    /// `local@domain`.
    pub fn address(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// Whether the sender's domain is `domain` or below it.
    pub fn is_within(&self, domain: &str) -> bool {
        self.domain == domain
            || self
                .domain
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.'))
    }
}

/// Why a From: field names no single sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FromError {
    #[error("the From: field has no address")]
    Empty,
    #[error("the From: field names several addresses or a group")]
    Several,
    #[error("the From: field is not one plain address: {0}")]
    Malformed(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Atom(String),
    Quoted(String),
    Special(char),
}

/// The sender of the From: field value `value` (unfolded, as relaxed canonicalization leaves it).
pub fn parse(value: &str) -> Result<Sender, FromError> {
    let tokens = tokenize(value)?;
    if tokens.is_empty() {
        return Err(FromError::Empty);
    }
    if tokens
        .iter()
        .any(|t| matches!(t, Token::Special(',' | ';' | ':')))
    {
        return Err(FromError::Several);
    }
    let opens = tokens.iter().filter(|t| **t == Token::Special('<')).count();
    let closes = tokens.iter().filter(|t| **t == Token::Special('>')).count();
    let spec = match (opens, closes) {
        (0, 0) => &tokens[..],
        (1, 1) => {
            let open = tokens
                .iter()
                .position(|t| *t == Token::Special('<'))
                .ok_or(FromError::Malformed("no `<`"))?;
            if tokens.last() != Some(&Token::Special('>')) {
                return Err(FromError::Malformed("text after the `>`"));
            }
            let name = &tokens[..open];
            if name.iter().any(|t| matches!(t, Token::Special(_))) {
                return Err(FromError::Malformed(
                    "the display name holds an address character",
                ));
            }
            &tokens[open + 1..tokens.len() - 1]
        }
        _ => return Err(FromError::Malformed("unbalanced `<` and `>`")),
    };
    addr_spec(spec)
}

fn addr_spec(tokens: &[Token]) -> Result<Sender, FromError> {
    let [local, Token::Special('@'), Token::Atom(domain)] = tokens else {
        return Err(if tokens.is_empty() {
            FromError::Empty
        } else {
            FromError::Malformed("not local-part@domain")
        });
    };
    let local = match local {
        Token::Atom(a) | Token::Quoted(a) if is_dot_atom(a) => a.clone(),
        _ => return Err(FromError::Malformed("a local part that is not a dot-atom")),
    };
    if !is_dot_atom(domain) || domain.contains(['=', '?', '/', '+', '_']) {
        return Err(FromError::Malformed("not a domain name"));
    }
    Ok(Sender {
        local,
        domain: domain.trim_end_matches('.').to_ascii_lowercase(),
    })
}

/// RFC 5322 `dot-atom-text`, with UTF-8 allowed (RFC 6532).
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|part| !part.is_empty() && part.chars().all(is_atext))
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// Atoms (dots included), quoted strings and specials; whitespace and comments separate.
fn tokenize(value: &str) -> Result<Vec<Token>, FromError> {
    let mut tokens = Vec::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {}
            '(' => {
                let mut depth = 1;
                while depth > 0 {
                    match chars.next() {
                        Some('(') => depth += 1,
                        Some(')') => depth -= 1,
                        Some('\\') => {
                            chars.next();
                        }
                        Some(_) => {}
                        None => return Err(FromError::Malformed("an unclosed comment")),
                    }
                }
            }
            '"' => {
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => text.extend(chars.next()),
                        Some(c) => text.push(c),
                        None => return Err(FromError::Malformed("an unclosed quoted string")),
                    }
                }
                tokens.push(Token::Quoted(text));
            }
            '<' | '>' | '@' | ',' | ';' | ':' => tokens.push(Token::Special(c)),
            '[' | ']' | ')' | '\\' => {
                return Err(FromError::Malformed(
                    "a domain literal or stray special character",
                ));
            }
            c if c.is_control() => return Err(FromError::Malformed("a control character")),
            c => {
                let mut atom = String::from(c);
                while let Some(&next) = chars.peek() {
                    if next == '.' || is_atext(next) {
                        atom.push(next);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Atom(atom));
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(local: &str, domain: &str) -> Result<Sender, FromError> {
        Ok(Sender {
            local: local.into(),
            domain: domain.into(),
        })
    }

    #[test]
    fn reads_the_one_mailbox_of_common_from_fields() {
        let rows: &[(&str, Result<Sender, FromError>)] = &[
            ("alice@example.org", sender("alice", "example.org")),
            ("Alice <alice@Example.ORG>", sender("alice", "example.org")),
            (
                "\"Smith, Alice\" <alice.smith@example.org>",
                sender("alice.smith", "example.org"),
            ),
            (
                "=?utf-8?q?J=C3=B6rg?= <j@mail.example.org>",
                sender("j", "mail.example.org"),
            ),
            (
                "alice@example.org (Alice at work)",
                sender("alice", "example.org"),
            ),
            (
                "Alice (the (real) one) <alice@example.org>",
                sender("alice", "example.org"),
            ),
            ("\"alice\"@example.org", sender("alice", "example.org")),
            ("Jörg <jörg@example.org>", sender("jörg", "example.org")),
        ];
        for (value, expected) in rows {
            assert_eq!(&parse(value), expected, "{value}");
        }
    }

    #[test]
    fn refuses_what_could_name_another_sender() {
        let rows: &[(&str, FromError)] = &[
            ("", FromError::Empty),
            ("(only a comment)", FromError::Empty),
            ("Alice <>", FromError::Empty),
            ("a@example.org, b@evil.example", FromError::Several),
            ("friends: a@example.org;", FromError::Several),
            (
                "bob@evil.example <alice@example.org>",
                FromError::Malformed("the display name holds an address character"),
            ),
            (
                "<alice@example.org> <bob@evil.example>",
                FromError::Malformed("unbalanced `<` and `>`"),
            ),
            (
                "<alice@example.org> trailing",
                FromError::Malformed("text after the `>`"),
            ),
            (
                "alice@[192.0.2.1]",
                FromError::Malformed("a domain literal or stray special character"),
            ),
            (
                "\"alice@evil.example\"@example.org",
                FromError::Malformed("a local part that is not a dot-atom"),
            ),
            (
                "alice@evil.example@example.org",
                FromError::Malformed("not local-part@domain"),
            ),
            ("alice", FromError::Malformed("not local-part@domain")),
            (
                "alice@exa=mple.org",
                FromError::Malformed("not a domain name"),
            ),
            (
                "Alice (unclosed <alice@example.org>",
                FromError::Malformed("an unclosed comment"),
            ),
            (
                "\"Alice <alice@example.org>",
                FromError::Malformed("an unclosed quoted string"),
            ),
        ];
        for (value, expected) in rows {
            assert_eq!(parse(value).as_ref(), Err(expected), "{value}");
        }
    }

    #[test]
    fn a_sender_is_within_its_domain_and_subdomains_only() {
        let s = |d: &str| Sender {
            local: "a".into(),
            domain: d.into(),
        };
        assert!(s("example.org").is_within("example.org"));
        assert!(s("mail.example.org").is_within("example.org"));
        assert!(!s("badexample.org").is_within("example.org"));
        assert!(!s("example.org").is_within("mail.example.org"));
        assert!(!s("example.org.evil").is_within("example.org"));
    }
}
