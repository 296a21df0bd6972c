//! Values that may carry a password: SASL responses relayed to authd, the client's initial
//! response on an AUTH line. A [`Secret`] is sent on the wire as the value itself (so the frame
//! bytes do not change), never shows in `Debug` output (logs, panics, `{:?}` of a request), and
//! overwrites its memory when dropped, so that a password does not linger in a freed buffer of a
//! long-lived network role.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// A value whose `Debug` prints `<redacted>` and whose memory is zeroed on drop.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret<T: Zeroize>(T);

/// Secret bytes, such as one SASL message.
pub type SecretBytes = Secret<Vec<u8>>;

impl<T: Zeroize> Secret<T> {
    /// Wraps `value`; from here on it is zeroed when dropped.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_its_value_in_debug_output() {
        let s = SecretBytes::new(b"\0bob\0hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
        let text = Secret::new(String::from("aHVudGVyMg=="));
        assert_eq!(format!("{text:#?}"), "<redacted>");
    }

    #[test]
    fn encodes_as_the_bare_value() {
        let plain = crate::codec::encode(&b"pw".to_vec()).unwrap();
        let secret = crate::codec::encode(&SecretBytes::new(b"pw".to_vec())).unwrap();
        assert_eq!(plain, secret);
        let back: SecretBytes = crate::codec::decode(&secret).unwrap();
        assert_eq!(back.expose(), b"pw");
    }

    #[test]
    fn zeroizes_its_value_when_dropped() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        struct Probe(Arc<AtomicBool>);
        impl Zeroize for Probe {
            fn zeroize(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let zeroed = Arc::new(AtomicBool::new(false));
        let secret = Secret::new(Probe(zeroed.clone()));
        assert!(!zeroed.load(Ordering::SeqCst));
        drop(secret);
        assert!(zeroed.load(Ordering::SeqCst));
    }
}
