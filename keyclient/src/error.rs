//! Why a TLS configuration could not be built from keyd, with the underlying error kept as the
//! source (a role logs the chain and serves without TLS, or retries).

use std::time::Duration;

/// Building the server configuration from keyd failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No link to keyd came up in time.
    #[error("no link to keyd within {0:?}")]
    NoLink(Duration),
    /// keyd did not answer the certificate request in time.
    #[error("keyd did not answer within {0:?}")]
    Silent(Duration),
    /// The link to keyd failed during the request.
    #[error("asking keyd for certificates")]
    Link(#[source] ipc::ChannelError),
    /// keyd refused the certificate request.
    #[error("keyd refused the certificate request: {0}")]
    Refused(ipc::msg::key::Refused),
    /// keyd serves no certificate at all.
    #[error("keyd has no certificates")]
    NoCertificates,
    /// A certificate's public key is not the key keyd signs with.
    #[error("certificate {key} does not match its key in keyd")]
    KeyMismatch {
        key: String,
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("building the TLS configuration")]
    Tls(#[source] rustls::Error),
}

impl SetupError {
    /// The error and each of its causes, `: `-separated, for one log line.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            text.push_str(": ");
            text.push_str(&e.to_string());
            cause = e.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_keeps_the_cause() {
        let e = SetupError::KeyMismatch {
            key: "tls.ecdsa".into(),
            source: rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch),
        };
        let line = e.chain();
        assert!(
            line.starts_with("certificate tls.ecdsa does not match its key in keyd: "),
            "{line}"
        );
        assert!(line.len() > "certificate tls.ecdsa does not match its key in keyd: ".len());
        assert!(std::error::Error::source(&e).is_some());
    }
}
