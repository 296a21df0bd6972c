//! Text a role supplied, made safe to keep and to log. Its own module because both the
//! handshake (`launch`) and the tree (`tree`) clip what roles say, and neither should have to
//! import the other for it.

/// Longest string from a role kept for status output and logs.
const MAX_ROLE_TEXT: usize = 512;
/// Cuts a string a role supplied to [`MAX_ROLE_TEXT`] and escapes control characters, so it can
/// neither bloat the status nor forge log lines.
pub(crate) fn clip(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if out.len() >= MAX_ROLE_TEXT {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
