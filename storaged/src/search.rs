//! SEARCH over a mailbox: metadata criteria from the database, header and text criteria from the
//! message files (decoded with mail-parser), evaluated as a validated postfix program.

use ipc::msg::store::{Criteria, SearchTerm};

use crate::db::Db;
use crate::db::record::Message;
use crate::error::{Result, StoreError};
use crate::files::Files;
use crate::messages::contains;

/// Longest program accepted.
const MAX_TERMS: usize = 256;

/// The UIDs of `mailbox` matching `criteria`, in order.
pub fn search(db: &Db, files: &Files, mailbox: u64, criteria: &Criteria) -> Result<Vec<u32>> {
    check(criteria)?;
    let needs_file = criteria.0.iter().any(|t| {
        matches!(
            t,
            SearchTerm::Header { .. } | SearchTerm::Body(_) | SearchTerm::Text(_)
        )
    });
    let mut out = Vec::new();
    for (uid, m) in db.message_records(mailbox)? {
        let content = if needs_file {
            Some(Content::read(files, &m)?)
        } else {
            None
        };
        if matches(&criteria.0, uid, &m, content.as_ref()) {
            out.push(uid);
        }
    }
    Ok(out)
}

/// Checks that the program is well formed: bounded, and every operator has its operands.
fn check(criteria: &Criteria) -> Result<()> {
    let invalid = |why: &str| StoreError::Invalid {
        what: "search",
        why: why.into(),
    };
    if criteria.0.len() > MAX_TERMS {
        return Err(invalid("too many criteria"));
    }
    let mut depth: usize = 0;
    for term in &criteria.0 {
        depth = match term {
            SearchTerm::And(n) => {
                let n = usize::from(*n);
                if n == 0 || depth < n {
                    return Err(invalid("AND without its operands"));
                }
                depth - n + 1
            }
            SearchTerm::Or => depth
                .checked_sub(1)
                .filter(|d| *d >= 1)
                .ok_or_else(|| invalid("OR without two operands"))?,
            SearchTerm::Not => {
                if depth == 0 {
                    return Err(invalid("NOT without an operand"));
                }
                depth
            }
            _ => depth + 1,
        };
    }
    if depth > 1 {
        return Err(invalid("several criteria left over: combine them with AND"));
    }
    Ok(())
}

fn matches(program: &[SearchTerm], uid: u32, m: &Message, content: Option<&Content>) -> bool {
    let mut stack: Vec<bool> = Vec::with_capacity(8);
    for term in program {
        let value = match term {
            SearchTerm::And(n) => {
                let at = stack.len() - usize::from(*n);
                stack.drain(at..).all(|b| b)
            }
            SearchTerm::Or => {
                let (b, a) = (stack.pop(), stack.pop());
                a == Some(true) || b == Some(true)
            }
            SearchTerm::Not => !stack.pop().unwrap_or(false),
            SearchTerm::All => true,
            SearchTerm::Uids(set) => contains(set, uid),
            SearchTerm::Flags { flags, set } => {
                let bits = *flags;
                if *set {
                    m.flags.contains(bits)
                } else {
                    !m.flags.intersects(bits)
                }
            }
            SearchTerm::Keyword { keyword, set } => {
                m.keywords.iter().any(|k| k.eq_ignore_ascii_case(keyword)) == *set
            }
            SearchTerm::Since(t) => m.internal_date >= *t,
            SearchTerm::Before(t) => m.internal_date < *t,
            SearchTerm::Larger(n) => m.size > *n,
            SearchTerm::Smaller(n) => m.size < *n,
            SearchTerm::ModSeq(n) => m.modseq >= n.0,
            SearchTerm::Header { field, contains } => {
                content.is_some_and(|c| c.header(field, contains))
            }
            SearchTerm::Body(s) => content.is_some_and(|c| has(&c.body, s)),
            SearchTerm::Text(s) => content.is_some_and(|c| has(&c.headers, s) || has(&c.body, s)),
        };
        stack.push(value);
    }
    stack.pop().unwrap_or(true)
}

/// What text criteria look at: the raw header block and the decoded text of the body.
struct Content {
    headers: String,
    fields: Vec<(String, String)>,
    body: String,
}

impl Content {
    fn read(files: &Files, m: &Message) -> Result<Content> {
        use std::io::Read;
        let mut bytes = Vec::with_capacity(m.size as usize);
        files
            .open_read(m.file)?
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::File {
                path: format!("{:x}", m.file),
                source: e,
            })?;
        let Some(parsed) = mail_parser::MessageParser::default().parse(&bytes) else {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            return Ok(Content {
                headers: text.clone(),
                fields: Vec::new(),
                body: text,
            });
        };
        let fields = parsed
            .headers_raw()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
            .collect::<Vec<_>>();
        let body_start = parsed.root_part().offset_body as usize;
        let headers =
            String::from_utf8_lossy(bytes.get(..body_start).unwrap_or(&bytes)).into_owned();
        let mut body = String::new();
        let mut i = 0;
        while let Some(text) = parsed.body_text(i) {
            body.push_str(&text);
            body.push('\n');
            i += 1;
        }
        Ok(Content {
            headers,
            fields,
            body,
        })
    }

    fn header(&self, field: &str, needle: &str) -> bool {
        let field = field.to_ascii_lowercase();
        self.fields
            .iter()
            .any(|(k, v)| *k == field && (needle.is_empty() || has(v, needle)))
    }
}

fn has(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::msg::store::SearchTerm::*;

    #[test]
    fn rejects_malformed_programs() {
        for bad in [
            vec![And(2)],
            vec![All, And(3)],
            vec![Or],
            vec![All, Or],
            vec![Not],
            vec![All, All],
            vec![All, And(0)],
        ] {
            assert!(check(&Criteria(bad.clone())).is_err(), "{bad:?}");
        }
        assert!(check(&Criteria(vec![All; MAX_TERMS + 1])).is_err());
        for good in [
            vec![],
            vec![All],
            vec![All, Not],
            vec![All, Larger(1), And(2)],
            vec![All, Larger(1), Or, Not],
        ] {
            assert!(check(&Criteria(good.clone())).is_ok(), "{good:?}");
        }
    }
}
