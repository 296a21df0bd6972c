//! Landlock: filesystem access only to the role's own paths; TCP bind/connect only to its ports.

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, NetPort,
    PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use crate::{Error, FsAccess, Policy, Report};

/// The newest ABI whose rights we ask for; older kernels get the subset they know.
const ABI_WANTED: ABI = ABI::V6;

pub(super) fn apply(policy: &Policy, report: &mut Report) -> Result<(), Error> {
    let err = |e: landlock::RulesetError| Error::Landlock(e.to_string());
    let ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_WANTED))
        .map_err(err)?
        .handle_access(AccessNet::from_all(ABI_WANTED))
        .map_err(err)?
        .scope(Scope::from_all(ABI_WANTED))
        .map_err(err)?;
    let mut created = ruleset.create().map_err(err)?;
    for rule in &policy.fs {
        let access = match rule.access {
            FsAccess::ReadOnly => AccessFs::from_read(ABI_WANTED),
            FsAccess::ReadWrite => AccessFs::from_all(ABI_WANTED),
        };
        let fd = PathFd::new(&rule.path).map_err(|e| {
            Error::Landlock(format!("opening {} for a rule: {e}", rule.path.display()))
        })?;
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(err)?;
    }
    for port in &policy.tcp_bind {
        created = created
            .add_rule(NetPort::new(*port, AccessNet::BindTcp))
            .map_err(err)?;
    }
    for port in &policy.tcp_connect {
        created = created
            .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
            .map_err(err)?;
    }
    let status = created.restrict_self().map_err(err)?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => format!("ABI {}", effective_abi as i32),
        LandlockStatus::NotEnabled => "not enabled in this kernel".into(),
        LandlockStatus::NotImplemented => "not built into this kernel".into(),
    };
    let paths: Vec<String> = policy
        .fs
        .iter()
        .map(|r| format!("{}({:?})", r.path.display(), r.access))
        .collect();
    let detail = format!(
        "{abi}; paths [{}]; tcp bind {:?} connect {:?}",
        paths.join(", "),
        policy.tcp_bind,
        policy.tcp_connect
    );
    match status.ruleset {
        RulesetStatus::FullyEnforced => report.applied("landlock", detail),
        RulesetStatus::PartiallyEnforced => {
            report.unsupported("landlock", format!("partially enforced: {detail}"))
        }
        RulesetStatus::NotEnforced => {
            report.unsupported("landlock", format!("not enforced: {abi}"))
        }
    }
    Ok(())
}
