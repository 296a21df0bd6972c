//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463, RFC 2034).

use std::fmt;

/// One reply: a code, an enhanced status code (except for greetings and 354) and its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<&'static str>,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced code (220 greeting, 354, EHLO's 250, 221 has one).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    pub fn multiline(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines,
        }
    }

    /// `452 4.3.1`: storaged or queued is short of space (under its free-space floor, a full
    /// disk, or this role's share of open deliveries taken). The detail is logged, not told.
    pub fn insufficient_storage() -> Reply {
        Reply::new(452, "4.3.1", "insufficient system storage; try again later")
    }

    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Whether the connection ends after this reply (421, 221).
    pub fn closes(&self) -> bool {
        matches!(self.code, 221 | 421)
    }

    /// The wire form, every line ending in CRLF. Line breaks inside texts are never sent.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let clean: String = line
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            match self.enhanced {
                Some(e) => out += &format!("{}{sep}{e} {clean}\r\n", self.code),
                None => out += &format!("{}{sep}{clean}\r\n", self.code),
            }
        }
        if self.lines.is_empty() {
            out += &format!("{} \r\n", self.code);
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_wire().trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        assert_eq!(Reply::new(250, "2.1.0", "ok").to_wire(), "250 2.1.0 ok\r\n");
        assert_eq!(
            Reply::multiline(
                250,
                vec!["mx".into(), "PIPELINING".into(), "SIZE 10".into()]
            )
            .to_wire(),
            "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
        assert_eq!(
            Reply::new(550, "5.1.1", "no\r\nsuch").to_wire(),
            "550 5.1.1 no  such\r\n",
            "no injected lines"
        );
        assert_eq!(Reply::plain(354, "go").to_wire(), "354 go\r\n");
    }
}
