//! imapd
