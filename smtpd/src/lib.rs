//! smtpd
