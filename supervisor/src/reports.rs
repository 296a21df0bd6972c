//! Reports from roles about the peers that call them (DESIGN.md §3): a serving role that shut a
//! link down because its client sent a broken frame says so over its control channel, and the
//! supervisor restarts that client, so that it comes back with fresh links instead of running
//! on without one.
//!
//! A report is the word of a role that may itself be compromised, so it is honoured only when
//! it can be true: the reporter serves the peer it names (an edge of `ipc::topology::EDGES`
//! with the reporter as server). A network role serves nobody, so it can never get keyd,
//! storaged or authd restarted, and no client can get its server restarted. The offender is
//! restarted like a crashed role (the crash backoff of `tree.rs`, doubling from 250 ms to 5 s
//! and starting over after a minute of readiness), never at once like an operator's restart:
//! a lying server can make its clients flap no faster than crashes would.

use ipc::msg::admin::RoleState;
use ipc::{Role, Side};

/// Whether `reporter`'s report that `peer` broke its link is acted on, given `peer`'s state:
/// `Ok` to restart `peer`, `Err(why)` to log the report and ignore it.
pub(crate) fn judge(reporter: Role, peer: Role, peer_state: RoleState) -> Result<(), String> {
    if reporter.side_towards(peer) != Some(Side::Server) {
        return Err(format!("{peer} is not a client of {reporter}"));
    }
    if peer_state != RoleState::Ready {
        // Starting, stopping or waiting to restart: it gets fresh links anyway, and a second
        // report about the same breakage must not count as a second crash.
        return Err(format!("{peer} is {}", describe(peer_state)));
    }
    Ok(())
}

fn describe(state: RoleState) -> &'static str {
    match state {
        RoleState::Starting => "starting",
        RoleState::Ready => "ready",
        RoleState::Stopping => "stopping already",
        RoleState::Backoff => "waiting to restart",
        RoleState::Stopped => "not running",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::topology::EDGES;

    #[test]
    fn only_a_server_is_heard_about_its_own_client() {
        for reporter in Role::ALL {
            for peer in Role::ALL {
                let served = EDGES
                    .iter()
                    .any(|e| e.server == reporter && e.client == peer);
                assert_eq!(
                    judge(reporter, peer, RoleState::Ready).is_ok(),
                    served,
                    "{reporter} about {peer}"
                );
            }
        }
    }

    #[test]
    fn a_network_role_can_get_nothing_restarted() {
        for reporter in [Role::Smtpd, Role::Submission, Role::Imapd, Role::Httpd] {
            for peer in Role::ALL {
                assert!(
                    judge(reporter, peer, RoleState::Ready).is_err(),
                    "{reporter} about {peer}"
                );
            }
        }
    }

    #[test]
    fn a_client_cannot_get_its_server_restarted() {
        for (reporter, peer) in [
            (Role::Imapd, Role::Keyd),
            (Role::Submission, Role::Authd),
            (Role::Smtpd, Role::Storaged),
            (Role::Submission, Role::Queued),
            (Role::Queued, Role::Storaged),
        ] {
            let why = judge(reporter, peer, RoleState::Ready).expect_err("ignored");
            assert_eq!(why, format!("{peer} is not a client of {reporter}"));
        }
    }

    #[test]
    fn a_peer_already_restarting_is_not_restarted_again() {
        for state in [
            RoleState::Starting,
            RoleState::Stopping,
            RoleState::Backoff,
            RoleState::Stopped,
        ] {
            assert!(judge(Role::Keyd, Role::Imapd, state).is_err(), "{state:?}");
        }
        assert_eq!(judge(Role::Keyd, Role::Imapd, RoleState::Ready), Ok(()));
    }
}
