//! A role's grant as a type. Each role has a [`Grant`] here, named after it (`grant::Smtpd`,
//! …), which names the struct of its outgoing links (one [`PeerSlot`] per role it calls, and no
//! other) and the struct of its settings (its own, and no other role's). A role's entry point
//! takes `Context<grant::ItsRole>`, so code that names a link or a setting outside the grant
//! does not compile: the MX smtpd has no `authd` or `queued` field to name.
//!
//! The slots are written once below, per role; `tests` checks them against
//! [`crate::topology::EDGES`] (the one list of edges) for every role, and the links refuse at
//! run time any peer the type lacks ([`PeerLinks::connect`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::{
    AuthdConfig, HttpdConfig, ImapdConfig, KeydConfig, QueuedConfig, RoleConfig, SmtpdConfig,
    StoragedConfig,
};
use crate::msg::{auth::AuthService, key::KeyService, queue::QueueService, store::StoreService};
use crate::slot::PeerSlot;
use crate::topology::Role;
use crate::transport::Link;

/// What one role is granted: its links and its settings, as types.
pub trait Grant: fmt::Debug + Send + Sync + 'static {
    /// The role this grant is for.
    const ROLE: Role;
    /// Its outgoing links: one slot per role it calls.
    type Peers: PeerLinks + Default + Clone + fmt::Debug;
    /// Its own settings.
    type Config: fmt::Debug + Send + 'static;

    /// Its settings out of the bootstrap's; the bootstrap's back if they are another role's.
    fn config(config: RoleConfig) -> Result<Self::Config, RoleConfig>;
}

/// A role's outgoing links, as the runtime around the role drives them: installed, replaced
/// and forgotten as peers come and go (`PeerUp`, `PeerDown`), and pinged for `moxctl`. Every
/// method refuses a peer outside the grant.
pub trait PeerLinks: Send + Sync + 'static {
    /// The role whose links these are.
    fn role(&self) -> Role;

    /// The roles this role calls: one slot each.
    fn slots(&self) -> &'static [Role];

    /// Installs a fresh link to `peer`, replacing the old one.
    fn connect(&self, peer: Role, link: Link) -> Result<(), GrantError>;

    /// Forgets the link to `peer`.
    fn disconnect(&self, peer: Role) -> Result<(), GrantError>;

    /// Pings `peer` over its current link.
    fn ping(
        &self,
        peer: Role,
    ) -> Pin<Box<dyn Future<Output = Result<Duration, String>> + Send + '_>>;
}

/// What the supervisor handed over does not fit a role's grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// A link to a role this role does not call.
    #[error("{role} has no link to {peer} in its grant")]
    NotGranted { role: Role, peer: Role },
    /// Settings meant for another role.
    #[error("{role} was given the settings of {given}")]
    WrongConfig { role: Role, given: Role },
    /// A bootstrap meant for another role.
    #[error("{role} was started with the grant of {given}")]
    WrongRole { role: Role, given: Role },
}

/// The role at the other end of a slot, by the slot's name.
macro_rules! slot_role {
    (keyd) => {
        Role::Keyd
    };
    (authd) => {
        Role::Authd
    };
    (storaged) => {
        Role::Storaged
    };
    (queued) => {
        Role::Queued
    };
}

/// The service a slot's peer offers, by the slot's name.
macro_rules! slot_service {
    (keyd) => {
        KeyService
    };
    (authd) => {
        AuthService
    };
    (storaged) => {
        StoreService
    };
    (queued) => {
        QueueService
    };
}

/// One grant per role: `Role: ConfigType, PeersType { slot, … };`.
macro_rules! grants {
    ($($role:ident: $config:ty, $peers:ident { $($slot:ident),* };)*) => {
        $(
            #[doc = concat!("The grant of ", stringify!($role), ".")]
            #[derive(Debug, Clone, Copy)]
            pub enum $role {}

            #[doc = concat!("The links ", stringify!($role), " has: one per role it calls.")]
            #[derive(Debug, Clone, Default)]
            pub struct $peers {
                $(pub $slot: PeerSlot<slot_service!($slot)>,)*
            }

            impl Grant for $role {
                const ROLE: Role = Role::$role;
                type Peers = $peers;
                type Config = $config;

                fn config(config: RoleConfig) -> Result<$config, RoleConfig> {
                    match config {
                        RoleConfig::$role(config) => Ok(config),
                        other => Err(other),
                    }
                }
            }

            impl PeerLinks for $peers {
                fn role(&self) -> Role {
                    Role::$role
                }

                fn slots(&self) -> &'static [Role] {
                    &[$(slot_role!($slot)),*]
                }

                fn connect(&self, peer: Role, link: Link) -> Result<(), GrantError> {
                    $(
                        if peer == slot_role!($slot) {
                            self.$slot.set(link);
                            return Ok(());
                        }
                    )*
                    drop(link);
                    Err(GrantError::NotGranted { role: Role::$role, peer })
                }

                fn disconnect(&self, peer: Role) -> Result<(), GrantError> {
                    $(
                        if peer == slot_role!($slot) {
                            self.$slot.clear();
                            return Ok(());
                        }
                    )*
                    Err(GrantError::NotGranted { role: Role::$role, peer })
                }

                fn ping(
                    &self,
                    peer: Role,
                ) -> Pin<Box<dyn Future<Output = Result<Duration, String>> + Send + '_>> {
                    $(
                        if peer == slot_role!($slot) {
                            return Box::pin(self.$slot.ping());
                        }
                    )*
                    let refused = GrantError::NotGranted { role: Role::$role, peer };
                    Box::pin(std::future::ready(Err(refused.to_string())))
                }
            }
        )*

        /// Empty links of `role`'s grant, for tests that look at every role's type.
        #[cfg(test)]
        fn links_of(role: Role) -> Box<dyn PeerLinks> {
            match role {
                $(Role::$role => Box::new($peers::default()),)*
            }
        }
    };
}

grants! {
    Keyd: KeydConfig, KeydPeers { storaged };
    Storaged: StoragedConfig, StoragedPeers {};
    Authd: AuthdConfig, AuthdPeers { storaged };
    Queued: QueuedConfig, QueuedPeers { keyd, storaged };
    Smtpd: SmtpdConfig, SmtpdPeers { keyd, storaged };
    Submission: SmtpdConfig, SubmissionPeers { keyd, authd, storaged, queued };
    Imapd: ImapdConfig, ImapdPeers { keyd, authd, storaged };
    Httpd: HttpdConfig, HttpdPeers { keyd, authd, storaged, queued };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Side;

    fn sorted(roles: impl IntoIterator<Item = Role>) -> Vec<Role> {
        let mut v: Vec<Role> = roles.into_iter().collect();
        v.sort();
        v
    }

    #[test]
    fn each_roles_type_has_exactly_the_slots_of_its_edges() {
        for role in Role::ALL {
            let links = links_of(role);
            assert_eq!(links.role(), role);
            let calls = role
                .peers()
                .filter(|(_, side)| *side == Side::Client)
                .map(|(peer, _)| peer);
            assert_eq!(
                sorted(links.slots().iter().copied()),
                sorted(calls),
                "the slots of {role}'s grant"
            );
        }
    }

    #[tokio::test]
    async fn links_refuse_every_peer_outside_the_grant() {
        for role in Role::ALL {
            let links = links_of(role);
            for peer in Role::ALL {
                let granted = links.slots().contains(&peer);
                let (link, _other_end) = Link::memory_pair("a", "b");
                let refused = Err(GrantError::NotGranted { role, peer });
                if granted {
                    assert_eq!(links.connect(peer, link), Ok(()), "{role} → {peer}");
                    assert_eq!(links.disconnect(peer), Ok(()), "{role} → {peer}");
                } else {
                    assert_eq!(links.connect(peer, link), refused, "{role} → {peer}");
                    assert_eq!(links.disconnect(peer), refused, "{role} → {peer}");
                    let ping = links.ping(peer).await;
                    assert!(
                        ping.is_err_and(|e| e.contains("no link")),
                        "{role} → {peer}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_mx_smtpd_has_neither_password_checker_nor_queue() {
        let mx = links_of(Role::Smtpd);
        assert_eq!(mx.slots(), [Role::Keyd, Role::Storaged]);
        assert!(links_of(Role::Storaged).slots().is_empty());
        assert_eq!(links_of(Role::Keyd).slots(), [Role::Storaged]);
        assert_eq!(links_of(Role::Authd).slots(), [Role::Storaged]);
    }

    #[test]
    fn settings_of_another_role_are_refused() {
        let imapd = RoleConfig::Imapd(ImapdConfig {
            hostname: "h".into(),
        });
        assert!(<Imapd as Grant>::config(imapd.clone()).is_ok());
        assert_eq!(<Httpd as Grant>::config(imapd.clone()), Err(imapd));
    }
}
