//! storaged's administrative requests, forwarded by the supervisor from moxctl: domains,
//! accounts and addresses, verifydata, local delivery of a file, and backups. They take the
//! pause lock as writers' peers do, so a backup sees no half-made change.

use ipc::sync::{read, write};
use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use ipc::msg::control::{AdminReply as RoleReply, RoleAdmin};
use ipc::msg::store::{AccountInfo, Admin, AdminReply, DomainInfo};
use ipc::{AdminCall, Handle};

use super::{MAX_MESSAGE_SIZE, Store, blocking, lock};
use crate::deliver;
use crate::error::StoreError;
use crate::spool::Spooled;

impl Store {
    /// Carries out one administrative request.
    pub async fn admin(self: Arc<Self>, call: AdminCall) {
        let AdminCall {
            request,
            fds,
            reply,
        } = call;
        let RoleAdmin::Store(request) = request else {
            let _ = reply.send(Err("not a storaged request".into()));
            return;
        };
        let result = self
            .clone()
            .admin_request(request, fds)
            .await
            .map(RoleReply::Store);
        let _ = reply.send(result);
    }

    async fn admin_request(
        self: Arc<Self>,
        request: Admin,
        fds: Vec<Handle>,
    ) -> Result<AdminReply, String> {
        let store = self.clone();
        let done = |s: String| Ok(AdminReply::Done(s));
        match request {
            Admin::Backup => {
                let fd = fds
                    .into_iter()
                    .next()
                    .ok_or("no descriptor attached for the backup")?;
                let summary = ipc::span::spawn_blocking(move || {
                    let staging = store
                        .files
                        .root()
                        .join(format!("backup-{:x}", store.db.new_id()?));
                    let messages = {
                        let _paused = write(&store.pause);
                        crate::backup::snapshot(&store.db, &store.files, &staging)
                    };
                    let messages = match messages {
                        Ok(n) => n,
                        Err(e) => {
                            let _ = std::fs::remove_dir_all(&staging);
                            return Err(e);
                        }
                    };
                    crate::backup::stream(&staging, File::from(fd), messages)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                Ok(AdminReply::Done(format!(
                    "backup of {} messages, {} bytes of message data",
                    summary.messages, summary.bytes
                )))
            }
            Admin::Deliver { recipients } => {
                let fd = fds.into_iter().next().ok_or("no message attached")?;
                let file = blocking(move || store.copy_in(fd))
                    .await
                    .map_err(|r| r.to_string())?;
                let len = file.metadata().map_err(|e| e.to_string())?.len();
                let results = self
                    .deliver(
                        Spooled::File(file, len),
                        recipients,
                        deliver::Placement::default(),
                    )
                    .await
                    .map_err(|r| r.to_string())?;
                Ok(AdminReply::Delivered(results))
            }
            other => blocking(move || store.admin_sync(other))
                .await
                .map_err(|r| r.to_string())?
                .map_or_else(
                    |e| Err(e.to_string()),
                    |r| match r {
                        AdminReply::Done(s) => done(s),
                        r => Ok(r),
                    },
                ),
        }
    }

    /// Ends every session of `account`.
    pub(super) fn revoke_account_tickets(&self, account: &str) {
        let revoked: Vec<_> = {
            let mut tickets = lock(&self.tickets);
            let ids: Vec<_> = tickets
                .iter()
                .filter(|(_, s)| s.account == account)
                .map(|(t, _)| *t)
                .collect();
            ids.into_iter()
                .inspect(|t| {
                    tickets.remove(t);
                })
                .collect()
        };
        for ticket in &revoked {
            self.feed.unwatch(ticket);
        }
        if !revoked.is_empty() {
            tracing::info!(
                "{} sessions of account \"{}\" ended",
                revoked.len(),
                account.escape_debug()
            );
        }
    }

    fn admin_sync(&self, request: Admin) -> Result<Result<AdminReply, StoreError>, StoreError> {
        let _changing = read(&self.pause);
        let db = &self.db;
        let result = match request {
            Admin::AddDomain { domain, separator } => db
                .add_domain(&domain, separator)
                .map(|d| AdminReply::Done(format!("domain {d} added"))),
            Admin::RemoveDomain { domain } => db
                .remove_domain(&domain)
                .map(|()| AdminReply::Done(format!("domain {domain} removed"))),
            Admin::ListDomains => db.domains().map(|list| {
                AdminReply::Domains(
                    list.into_iter()
                        .map(|(domain, d)| DomainInfo {
                            domain,
                            separator: d.localpart_separator,
                        })
                        .collect(),
                )
            }),
            Admin::AddAccount { name, address } => db
                .add_account(name.as_str(), &address)
                .map(|()| AdminReply::Done(format!("account {name} added with address {address}"))),
            Admin::RemoveAccount { name } => db.remove_account(name.as_str()).and_then(|files| {
                db.flush()?;
                // Its sessions end with it, whatever authd does next.
                self.revoke_account_tickets(name.as_str());
                for id in &files {
                    self.files.remove(*id)?;
                }
                Ok(AdminReply::Done(format!(
                    "account {name} removed with {} messages",
                    files.len()
                )))
            }),
            Admin::ListAccounts => db.accounts().map(|list| {
                AdminReply::Accounts(
                    list.into_iter()
                        .map(|(name, addresses)| AccountInfo {
                            name: name.into(),
                            addresses,
                        })
                        .collect(),
                )
            }),
            Admin::AddAddress { address, account } => db
                .add_address(&address, account.as_str())
                .map(|a| AdminReply::Done(format!("address {a} added to {account}"))),
            Admin::RemoveAddress { address } => db
                .remove_address(&address)
                .map(|()| AdminReply::Done(format!("address {address} removed"))),
            Admin::VerifyData => crate::verify::verify(db, &self.files).map(AdminReply::Problems),
            Admin::ListMailboxes { account } => {
                db.mailbox_list(account.as_str()).map(AdminReply::Mailboxes)
            }
            Admin::Deliver { .. } | Admin::Backup => Err(StoreError::Invalid {
                what: "request",
                why: "delivery is asynchronous".into(),
            }),
        };
        match &result {
            Ok(_) => db.flush()?,
            Err(e) => db.notice(e),
        }
        Ok(result)
    }

    /// Copies a message from a descriptor that may be a pipe into a temporary file.
    fn copy_in(&self, fd: Handle) -> Result<File, StoreError> {
        let mut src = File::from(fd).take(MAX_MESSAGE_SIZE + 1);
        let mut tmp = self.files.temp_file()?;
        let n = std::io::copy(&mut src, &mut tmp).map_err(|e| StoreError::File {
            path: "(attached message)".into(),
            source: e,
        })?;
        if n > MAX_MESSAGE_SIZE {
            return Err(StoreError::Invalid {
                what: "message",
                why: format!("larger than {MAX_MESSAGE_SIZE} bytes"),
            });
        }
        Ok(tmp)
    }
}
