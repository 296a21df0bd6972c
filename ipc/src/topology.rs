//! The roles and the one declared list of edges between them. The supervisor creates a
//! socketpair for exactly these edges; no other way between roles exists.
//!
//! [`EDGES`] is the one source of who may reach whom. The places that name it for readers —
//! each role crate's `//! Peers of …` line and ARCHITECTURE.md's edge table — are checked
//! against it by `ipc/tests/topology_docs.rs`: change an edge here, and that test names the
//! lines to change with it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A process of the tree other than the supervisor. Declared in start order: the roles others
/// call come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Keyd,
    Storaged,
    Authd,
    Queued,
    /// SMTP on port 25 (MX): delivers to local recipients, never signs, never relays.
    Smtpd,
    /// SMTP submission (465, 587): the same code as smtpd with the rights of authenticated
    /// senders (AUTH through authd, DKIM through keyd, the queue).
    Submission,
    Imapd,
    Httpd,
}

/// An edge: `client` calls the service `server` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub client: Role,
    pub server: Role,
}

/// Our side of an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// We call the peer.
    Client,
    /// The peer calls us.
    Server,
}

/// Every edge of the tree (explained in ARCHITECTURE.md, "The edges").
pub const EDGES: &[Edge] = &[
    edge(Role::Smtpd, Role::Keyd),
    edge(Role::Smtpd, Role::Storaged),
    edge(Role::Submission, Role::Keyd),
    edge(Role::Submission, Role::Authd),
    edge(Role::Submission, Role::Storaged),
    edge(Role::Submission, Role::Queued),
    edge(Role::Imapd, Role::Keyd),
    edge(Role::Imapd, Role::Authd),
    edge(Role::Imapd, Role::Storaged),
    edge(Role::Queued, Role::Keyd),
    edge(Role::Queued, Role::Storaged),
    edge(Role::Httpd, Role::Keyd),
    edge(Role::Httpd, Role::Authd),
    edge(Role::Httpd, Role::Storaged),
    edge(Role::Httpd, Role::Queued),
    edge(Role::Authd, Role::Storaged),
    // keyd asks storaged one question: does the submission session of a ticket own the From:
    // address it wants signed (DESIGN.md §15)? Declared out of start order on purpose: see
    // `servers_start_before_their_clients`.
    edge(Role::Keyd, Role::Storaged),
];

const fn edge(client: Role, server: Role) -> Edge {
    Edge { client, server }
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Keyd,
        Role::Storaged,
        Role::Authd,
        Role::Queued,
        Role::Smtpd,
        Role::Submission,
        Role::Imapd,
        Role::Httpd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Keyd => "keyd",
            Role::Authd => "authd",
            Role::Storaged => "storaged",
            Role::Queued => "queued",
            Role::Smtpd => "smtpd",
            Role::Submission => "submission",
            Role::Imapd => "imapd",
            Role::Httpd => "httpd",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Roles without which nothing works: failing to start them repeatedly stops the tree.
    pub fn is_core(self) -> bool {
        matches!(self, Role::Keyd | Role::Authd | Role::Storaged)
    }

    /// The peers of this role and our side of each edge, in declaration order.
    pub fn peers(self) -> impl Iterator<Item = (Role, Side)> {
        EDGES.iter().filter_map(move |e| {
            if e.client == self {
                Some((e.server, Side::Client))
            } else if e.server == self {
                Some((e.client, Side::Server))
            } else {
                None
            }
        })
    }

    /// Our side of the edge to `peer`, if there is one.
    pub fn side_towards(self, peer: Role) -> Option<Side> {
        self.peers().find(|(p, _)| *p == peer).map(|(_, side)| side)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.name()), Some(role));
        }
        assert_eq!(Role::from_name("supervisor"), None);
    }

    #[test]
    fn edges_are_unique_and_never_loops() {
        for (i, a) in EDGES.iter().enumerate() {
            assert_ne!(a.client, a.server);
            for b in &EDGES[i + 1..] {
                let same = (a.client, a.server) == (b.client, b.server)
                    || (a.client, a.server) == (b.server, b.client);
                assert!(!same, "duplicate edge {a:?}");
            }
        }
    }

    #[test]
    fn servers_start_before_their_clients() {
        for e in EDGES {
            // keyd starts first (every TLS handshake needs it); its one question to storaged
            // comes only with a DKIM signature for a submission session, long after storaged
            // is up, and waits for the link like any call to a restarting peer.
            if (e.client, e.server) == (Role::Keyd, Role::Storaged) {
                continue;
            }
            assert!(e.server < e.client, "{e:?}");
        }
    }

    #[test]
    fn each_role_reaches_exactly_its_reviewed_peers() {
        let peers = |r: Role| {
            let mut v: Vec<&str> = r.peers().map(|(p, _)| p.name()).collect();
            v.sort();
            v
        };
        assert_eq!(
            peers(Role::Keyd),
            [
                "httpd",
                "imapd",
                "queued",
                "smtpd",
                "storaged",
                "submission"
            ]
        );
        assert_eq!(
            peers(Role::Authd),
            ["httpd", "imapd", "storaged", "submission"]
        );
        assert_eq!(
            peers(Role::Storaged),
            [
                "authd",
                "httpd",
                "imapd",
                "keyd",
                "queued",
                "smtpd",
                "submission"
            ]
        );
        // The MX instance reaches no password checker, no queue and no DKIM key.
        assert_eq!(peers(Role::Smtpd), ["keyd", "storaged"]);
        assert_eq!(
            peers(Role::Submission),
            ["authd", "keyd", "queued", "storaged"]
        );
        assert_eq!(peers(Role::Imapd), ["authd", "keyd", "storaged"]);
        assert_eq!(
            peers(Role::Queued),
            ["httpd", "keyd", "storaged", "submission"]
        );
        assert_eq!(peers(Role::Httpd), ["authd", "keyd", "queued", "storaged"]);
    }
}
