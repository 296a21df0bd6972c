//! Parsers for the two SCRAM client messages (RFC 5802 §7), strict about syntax.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::SaslError;

/// The gs2 channel binding flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CbFlag<'a> {
    /// `n`: the client does not support channel binding.
    No,
    /// `y`: the client supports it but thinks the server does not.
    ClientOnly,
    /// `p=name`: the client requires channel binding of this type.
    Required(&'a str),
}

/// `client-first-message` = gs2-header client-first-message-bare.
#[derive(Debug)]
pub(super) struct ClientFirst<'a> {
    pub(super) flag: CbFlag<'a>,
    /// The gs2 header exactly as sent (echoed, base64, in `c=`).
    pub(super) gs2_header: &'a str,
    pub(super) authzid: Option<String>,
    pub(super) username: String,
    pub(super) nonce: &'a str,
    /// client-first-message-bare, part of AuthMessage.
    pub(super) bare: &'a str,
}

/// `client-final-message`.
#[derive(Debug)]
pub(super) struct ClientFinal<'a> {
    /// The decoded `c=` attribute.
    pub(super) channel_binding: Vec<u8>,
    pub(super) nonce: &'a str,
    /// The decoded `p=` attribute.
    pub(super) proof: Vec<u8>,
    /// client-final-message-without-proof, part of AuthMessage.
    pub(super) without_proof: &'a str,
}

/// Parses `gs2-cbind-flag "," [authzid] "," [reserved-mext ","] username "," nonce ["," ext]`.
pub(super) fn parse_client_first(msg: &str) -> Result<ClientFirst<'_>, SaslError> {
    let (flag, rest) = msg
        .split_once(',')
        .ok_or(SaslError::Syntax("missing gs2 header"))?;
    let flag = match flag {
        "n" => CbFlag::No,
        "y" => CbFlag::ClientOnly,
        _ => match flag.strip_prefix("p=") {
            Some(name) if is_cb_name(name) => CbFlag::Required(name),
            _ => return Err(SaslError::Syntax("invalid gs2 channel binding flag")),
        },
    };
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(SaslError::Syntax("missing gs2 header"))?;
    let authzid = match authzid {
        "" => None,
        _ => match authzid.strip_prefix("a=") {
            Some(name) => Some(decode_saslname(name)?),
            None => return Err(SaslError::Syntax("invalid authzid in gs2 header")),
        },
    };
    let gs2_header = &msg[..msg.len() - bare.len()];

    let mut attributes = bare.split(',');
    let first = attributes.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(SaslError::MandatoryExtension);
    }
    let username = first
        .strip_prefix("n=")
        .ok_or(SaslError::Syntax("expected n=username"))?;
    let username = decode_saslname(username)?;
    let nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(SaslError::Syntax("expected r=nonce"))?;
    if !is_nonce(nonce) {
        return Err(SaslError::Syntax("invalid client nonce"));
    }
    // Optional extensions are allowed and ignored; they must still be well-formed.
    if !attributes.all(is_extension) {
        return Err(SaslError::Syntax("invalid extension"));
    }
    Ok(ClientFirst {
        flag,
        gs2_header,
        authzid,
        username,
        nonce,
        bare,
    })
}

/// Parses `channel-binding "," nonce ["," extensions] "," proof`.
pub(super) fn parse_client_final(msg: &str) -> Result<ClientFinal<'_>, SaslError> {
    let attributes: Vec<&str> = msg.split(',').collect();
    let [c, r, extensions @ .., p] = attributes.as_slice() else {
        return Err(SaslError::Syntax("expected c=, r= and p="));
    };
    let c = c
        .strip_prefix("c=")
        .ok_or(SaslError::Syntax("expected c=channel-binding"))?;
    let nonce = r
        .strip_prefix("r=")
        .ok_or(SaslError::Syntax("expected r=nonce"))?;
    let proof = p
        .strip_prefix("p=")
        .ok_or(SaslError::Syntax("expected p=proof last"))?;
    if !extensions.iter().all(|e| is_extension(e)) {
        return Err(SaslError::Syntax("invalid extension"));
    }
    Ok(ClientFinal {
        channel_binding: decode_base64(c, "channel binding")?,
        nonce,
        proof: decode_base64(proof, "proof")?,
        without_proof: &msg[..msg.len() - p.len() - 1],
    })
}

/// Decodes a `saslname`: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
fn decode_saslname(name: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(SaslError::BadUsername),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() || out.contains('\0') {
        return Err(SaslError::BadUsername);
    }
    Ok(out)
}

fn decode_base64(value: &str, field: &'static str) -> Result<Vec<u8>, SaslError> {
    BASE64
        .decode(value)
        .map_err(|_| SaslError::BadBase64(field))
}

/// `printable = %x21-2B / %x2D-7E` (no comma), at least one.
fn is_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// `cb-name = 1*(ALPHA / DIGIT / "." / "-")`.
fn is_cb_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// `attr-val = ALPHA "=" value` with a non-empty value without NUL.
fn is_extension(attribute: &str) -> bool {
    let bytes = attribute.as_bytes();
    bytes.len() >= 3 && bytes[0].is_ascii_alphabetic() && bytes[1] == b'=' && !bytes.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_client_first_message() {
        let m = parse_client_first("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(m.flag, CbFlag::No);
        assert_eq!(m.gs2_header, "n,,");
        assert_eq!(m.authzid, None);
        assert_eq!(m.username, "user");
        assert_eq!(m.nonce, "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(m.bare, "n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    }

    #[test]
    fn parses_flags_authzid_escapes_and_extensions() {
        let m = parse_client_first("p=tls-exporter,a=a=3Db,n=x=2Cy,r=abc,x=ignored").unwrap();
        assert_eq!(m.flag, CbFlag::Required("tls-exporter"));
        assert_eq!(m.gs2_header, "p=tls-exporter,a=a=3Db,");
        assert_eq!(m.authzid.as_deref(), Some("a=b"));
        assert_eq!(m.username, "x,y");
        assert_eq!(
            parse_client_first("y,,n=u,r=n").unwrap().flag,
            CbFlag::ClientOnly
        );
    }

    #[test]
    fn refuses_malformed_client_first_messages() {
        let cases = [
            ("", SaslError::Syntax("missing gs2 header")),
            ("n", SaslError::Syntax("missing gs2 header")),
            ("n,", SaslError::Syntax("missing gs2 header")),
            (
                "x,,n=u,r=n",
                SaslError::Syntax("invalid gs2 channel binding flag"),
            ),
            (
                "p=,,n=u,r=n",
                SaslError::Syntax("invalid gs2 channel binding flag"),
            ),
            (
                "p=a b,,n=u,r=n",
                SaslError::Syntax("invalid gs2 channel binding flag"),
            ),
            (
                "n,b=x,n=u,r=n",
                SaslError::Syntax("invalid authzid in gs2 header"),
            ),
            ("n,,m=ext,n=u,r=n", SaslError::MandatoryExtension),
            ("n,,r=n,n=u", SaslError::Syntax("expected n=username")),
            ("n,,n=,r=n", SaslError::BadUsername),
            ("n,,n=a=2c,r=n", SaslError::BadUsername),
            ("n,,n=a=,r=n", SaslError::BadUsername),
            ("n,,n=u", SaslError::Syntax("expected r=nonce")),
            ("n,,n=u,r=", SaslError::Syntax("invalid client nonce")),
            ("n,,n=u,r=a b", SaslError::Syntax("invalid client nonce")),
            ("n,,n=u,r=n,", SaslError::Syntax("invalid extension")),
            ("n,,n=u,r=n,1=x", SaslError::Syntax("invalid extension")),
        ];
        for (input, want) in cases {
            assert_eq!(parse_client_first(input).unwrap_err(), want, "{input:?}");
        }
    }

    #[test]
    fn parses_a_client_final_message() {
        let m = parse_client_final("c=biws,r=abc,p=dGVzdA==").unwrap();
        assert_eq!(m.channel_binding, b"n,,");
        assert_eq!(m.nonce, "abc");
        assert_eq!(m.proof, b"test");
        assert_eq!(m.without_proof, "c=biws,r=abc");
        let m = parse_client_final("c=biws,r=abc,x=y,p=dGVzdA==").unwrap();
        assert_eq!(m.without_proof, "c=biws,r=abc,x=y");
    }

    #[test]
    fn refuses_malformed_client_final_messages() {
        let cases = [
            ("", SaslError::Syntax("expected c=, r= and p=")),
            ("c=biws,r=abc", SaslError::Syntax("expected c=, r= and p=")),
            (
                "r=abc,c=biws,p=dGVzdA==",
                SaslError::Syntax("expected c=channel-binding"),
            ),
            (
                "c=biws,x=abc,p=dGVzdA==",
                SaslError::Syntax("expected r=nonce"),
            ),
            (
                "c=biws,r=abc,p=dGVzdA==,x=y",
                SaslError::Syntax("expected p=proof last"),
            ),
            (
                "c=biws,r=abc,,p=dGVzdA==",
                SaslError::Syntax("invalid extension"),
            ),
            (
                "c=bi!s,r=abc,p=dGVzdA==",
                SaslError::BadBase64("channel binding"),
            ),
            ("c=biws,r=abc,p=dGVzdA=", SaslError::BadBase64("proof")),
            ("c=biws,r=abc,p=dGVzdB==", SaslError::BadBase64("proof")),
        ];
        for (input, want) in cases {
            assert_eq!(parse_client_final(input).unwrap_err(), want, "{input:?}");
        }
    }
}
