//! What submission adds to receiving a message: the From: header must name an address of the
//! authenticated account, and the copy for other domains is DKIM-signed through keyd for the
//! From: domain (when keyd has a key for it).

use ipc::msg::key::KeyService;
use ipc::msg::store::{self, StoreService};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::reply::Reply;

/// The addresses in the From: header of the header block `head`.
fn from_addresses(head: &[u8]) -> Vec<String> {
    let Some(msg) = mail_parser::MessageParser::default().parse_headers(head) else {
        return Vec::new();
    };
    msg.from()
        .map(|a| {
            a.iter()
                .filter_map(|a| a.address().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every From: address must belong to `account` (RFC 6409 §8.1 lets a submission server
/// refuse what the user may not send as).
pub async fn check_from(
    head: &[u8],
    account: &str,
    storaged: Option<&ipc::Client<StoreService>>,
    localserve: bool,
) -> Result<(), Reply> {
    // RFC 5322 §3.6: exactly one From field. mail-parser reports only one of several, so a
    // second, forged one must not slip past the check.
    let count = crate::header::fields(head)
        .iter()
        .filter(|f| crate::header::is(f, "From"))
        .count();
    if count != 1 {
        return Err(Reply::new(
            550,
            "5.6.0",
            format!("a message needs exactly one From: field, not {count}"),
        ));
    }
    let from = from_addresses(head);
    if from.is_empty() {
        return Err(Reply::new(550, "5.6.0", "the message has no From: address"));
    }
    if localserve {
        return Ok(());
    }
    let storaged = storaged.ok_or_else(|| {
        Reply::new(
            451,
            "4.3.0",
            "the message store is not available; try again later",
        )
    })?;
    for address in from {
        let request = store::SenderAccount {
            address: address.clone(),
        };
        match storaged.ask(request).await {
            Ok(Ok(Some(owner))) if owner == account => {}
            Ok(Ok(_)) => {
                return Err(Reply::new(
                    550,
                    "5.7.1",
                    format!("the From: address {address} does not belong to your account"),
                ));
            }
            other => {
                tracing::warn!("checking From: at storaged: {other:?}");
                return Err(Reply::new(
                    451,
                    "4.3.0",
                    "cannot check the From: address now; try again later",
                ));
            }
        }
    }
    Ok(())
}

/// DKIM-Signature fields for the message in `file` (read back from the start), one per key
/// keyd holds for the From: domain; empty when there is none. keyd signs only if the session
/// of `ticket` owns the From: address. The message is read into memory for the signer (bounded
/// by the size limit; submission is authenticated).
pub async fn dkim_sign(
    mut file: tokio::fs::File,
    head: &[u8],
    keyd: Option<&ipc::Client<KeyService>>,
    ticket: ipc::msg::auth::Ticket,
) -> Result<String, String> {
    let Some(domain) = from_addresses(head)
        .first()
        .and_then(|a| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
    else {
        return Ok(String::new());
    };
    let keyd = keyd.ok_or("keyd is not reachable")?;
    let keys = keyclient::dkim::keys_for(keyd, &domain).await?;
    if keys.is_empty() {
        tracing::debug!("no DKIM key for {domain}: sent unsigned");
        return Ok(String::new());
    }
    let mut message = Vec::new();
    file.seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(|e| e.to_string())?;
    file.read_to_end(&mut message)
        .await
        .map_err(|e| e.to_string())?;
    keyclient::dkim::sign(keyd, Some(ticket), &keys, message).await
}
