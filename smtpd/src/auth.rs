//! AUTH (RFC 4954): the SASL exchange is relayed verbatim between the client and authd, which
//! alone checks passwords. smtpd only base64-decodes and -encodes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ipc::msg::auth::{self, AuthService, Failure, Progress, Ticket};
use ipc::msg::types::AccountId;
use ipc::{Secret, SecretBytes};

use crate::io::{Conn, ConnError, Line};
use crate::reply::Reply;

/// The end of an exchange.
pub enum Authenticated {
    Yes { account: AccountId, ticket: Ticket },
    No(Reply),
}

pub async fn relay(
    conn: &mut Conn,
    authd: &ipc::Client<AuthService>,
    mechanism: String,
    initial: Option<Secret<String>>,
) -> Result<Authenticated, ConnError> {
    let no = |code, e, text: &str| Ok(Authenticated::No(Reply::new(code, e, text)));
    let initial_response = match initial.as_ref().map(|s| s.expose().as_str()) {
        None => None,
        Some("=") => Some(SecretBytes::default()),
        Some(b64) => match B64.decode(b64) {
            Ok(bytes) => Some(SecretBytes::new(bytes)),
            Err(_) => return no(501, "5.5.2", "the initial response is not base64"),
        },
    };
    let start = auth::Start {
        mechanism,
        initial_response,
        channel_binding: conn.channel_binding(),
        remote: conn.peer.ip(),
    };
    let mut answer = authd.ask(start).await;
    loop {
        let response = match answer {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("authd: {e}");
                return no(
                    454,
                    "4.7.0",
                    "authentication is not available right now; try again later",
                );
            }
        };
        match response {
            Ok(Progress::Continue {
                exchange,
                challenge,
            }) => {
                conn.queue(&Reply::plain(334, B64.encode(&challenge)));
                conn.flush().await?;
                // The client's line may be its password, base64-encoded.
                let line = match conn.line(crate::command::MAX_LINE).await? {
                    Line::Ok(l) => SecretBytes::new(l),
                    Line::TooLong => {
                        abort(authd, exchange).await;
                        return no(500, "5.5.6", "authentication line too long");
                    }
                };
                if line.expose() == b"*" {
                    abort(authd, exchange).await;
                    return no(501, "5.0.0", "authentication canceled");
                }
                let Ok(response) = B64.decode(line.expose()).map(SecretBytes::new) else {
                    abort(authd, exchange).await;
                    return no(501, "5.5.2", "the response is not base64");
                };
                answer = authd.ask(auth::Step { exchange, response }).await;
            }
            Ok(Progress::Success {
                account,
                ticket,
                additional,
            }) => {
                // RFC 4954 §4: additional data goes in a challenge the client answers empty.
                if let Some(data) = additional {
                    conn.queue(&Reply::plain(334, B64.encode(&data)));
                    conn.flush().await?;
                    let _ = conn.line(crate::command::MAX_LINE).await?;
                }
                return Ok(Authenticated::Yes { account, ticket });
            }
            Err(f) => {
                return Ok(Authenticated::No(match f {
                    Failure::Credentials => {
                        Reply::new(535, "5.7.8", "authentication credentials invalid")
                    }
                    Failure::Malformed(why) => {
                        Reply::new(501, "5.5.2", format!("malformed authentication: {why}"))
                    }
                    Failure::Temporary(why) => Reply::new(
                        454,
                        "4.7.0",
                        format!("temporary authentication failure: {why}"),
                    ),
                }));
            }
        }
    }
}

async fn abort(authd: &ipc::Client<AuthService>, exchange: u64) {
    let _ = authd.ask(auth::Abort { exchange }).await;
}

/// The mechanisms authd offers on a connection with (or without) TLS channel binding.
pub async fn mechanisms(authd: &ipc::Client<AuthService>, channel_binding: bool) -> Vec<String> {
    match authd.ask(auth::Mechanisms { channel_binding }).await {
        Ok(Ok(m)) => m,
        other => {
            tracing::warn!("authd gave no mechanisms: {other:?}");
            Vec::new()
        }
    }
}
