//! The `moxd` package: wires the role crates to the supervisor. The binaries in `src/bin` are
//! thin; `moxctl`'s client lives in [`admin_client`].

pub mod admin_client;
pub mod backup;
pub mod password;

use std::sync::Arc;

use ipc::RoleSpec;

/// Identifies this build to the roles it starts (version + git commit).
pub const BUILD_ID: &str = env!("MOXD_BUILD_ID");

/// Every role's entry point and confinement, in start order.
pub fn role_specs() -> Arc<[RoleSpec]> {
    let specs = [
        keyd::SPEC,
        storaged::SPEC,
        authd::SPEC,
        queued::SPEC,
        smtpd::SPEC,
        smtpd::SUBMISSION_SPEC,
        imapd::SPEC,
        httpd::SPEC,
    ];
    debug_assert!(specs.iter().map(|s| s.role).eq(ipc::Role::ALL));
    specs.into()
}
