//! The peers each role may reach are written once, in `ipc::topology::EDGES` (the supervisor
//! creates a socketpair for exactly those). Every other place that names them is checked against
//! it here, so that a stale line fails the build instead of misleading a reader:
//!
//! - each role crate's `lib.rs` has one line per role it runs (its `RoleSpec`s), in its `//!`
//!   block, of exactly this shape (`grep -r '^//! Peers of'` lists them all):
//!
//!   ```text
//!   //! Peers of smtpd: calls keyd, storaged; called by none.
//!   ```
//!
//!   and its `May reach:` line names no role (links to roles are peers, said once);
//! - ARCHITECTURE.md's edge table: the rows after the line holding [`EDGES_MARKER`], one
//!   `| client | server | … |` row per edge, up to the first line that is not a table row.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use ipc::Role;
use ipc::topology::EDGES;

/// The line above ARCHITECTURE.md's edge table.
const EDGES_MARKER: &str = "<!-- edges: checked against ipc::topology::EDGES";

#[test]
fn every_role_crate_names_exactly_the_peers_of_the_topology() {
    let crates = role_crates();
    let mut run: Vec<Role> = crates.iter().flat_map(|c| c.roles.clone()).collect();
    run.sort();
    // Guards the scan itself: were a RoleSpec missed, its role's line would go unchecked.
    assert_eq!(
        run,
        Role::ALL,
        "each role is run by exactly one crate's RoleSpec"
    );
    let mut problems = Vec::new();
    for krate in &crates {
        problems.extend(
            check_lib_rs(&krate.text, &krate.roles)
                .into_iter()
                .map(|p| format!("{}: {p}", krate.path.display())),
        );
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn the_architecture_edge_table_is_the_topology() {
    let path = workspace().join("ARCHITECTURE.md");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Err(problem) = check_edge_table(&text) {
        panic!("{}: {problem}", path.display());
    }
}

#[test]
fn a_peers_line_claiming_a_link_the_topology_lacks_fails() {
    // What smtpd/src/lib.rs said before: the MX process reaching authd and queued.
    let stale = "//! smtpd\n//! Peers of smtpd: calls keyd, authd, storaged, queued; called by none.\n//! Peers of submission: calls keyd, authd, storaged, queued; called by none.\n";
    let problems = check_lib_rs(stale, &[Role::Smtpd, Role::Submission]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("calls authd, queued, which it may not"),
        "{problems:?}"
    );
}

#[test]
fn a_missing_peer_a_duplicate_a_missing_line_and_a_peer_in_may_reach_fail() {
    let cases = [
        // keyd's storaged left out.
        "//! Peers of keyd: calls none; called by storaged.\n",
        // storaged named twice.
        "//! Peers of authd: calls storaged, storaged; called by submission, imapd, httpd.\n",
        // No line at all.
        "//! authd — the only checker of passwords.\n",
        // Not the shape (a reader's grep would miss it).
        "//! Peers: storaged (authd calls it); submission, imapd, httpd call authd.\n",
        // A peer said a second time, where nothing checks it.
        "//! May reach: its credential directory; storaged.\n//! Peers of authd: calls storaged; called by submission, imapd, httpd.\n",
    ];
    let roles = [
        [Role::Keyd],
        [Role::Authd],
        [Role::Authd],
        [Role::Authd],
        [Role::Authd],
    ];
    for (text, roles) in cases.iter().zip(roles) {
        assert!(!check_lib_rs(text, &roles).is_empty(), "passed: {text}");
    }
    let right = "//! May reach: its credential directory.\n//! Peers of authd: calls storaged; called by submission, imapd, httpd.\n";
    assert_eq!(check_lib_rs(right, &[Role::Authd]), Vec::<String>::new());
}

#[test]
fn an_edge_table_with_a_wrong_missing_or_extra_row_fails() {
    let right = expected_edge_rows();
    assert_eq!(check_edge_table(&table(&right)), Ok(()));
    let mut wrong = right.clone();
    wrong[0] = "| smtpd | authd | |".into();
    assert!(check_edge_table(&table(&wrong)).is_err());
    let mut missing = right.clone();
    missing.pop();
    assert!(check_edge_table(&table(&missing)).is_err());
    let mut extra = right.clone();
    extra.push(right[0].clone());
    assert!(check_edge_table(&table(&extra)).is_err());
    assert!(check_edge_table("no table here").is_err());
}

/// A crate that runs roles: its `lib.rs` and the roles of its `RoleSpec`s.
struct RoleCrate {
    path: PathBuf,
    text: String,
    roles: Vec<Role>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("invariant: ipc lives in the workspace")
        .to_path_buf()
}

/// Every `*/src/lib.rs` of the workspace that declares a `RoleSpec` (`role: ipc::Role::X`).
fn role_crates() -> Vec<RoleCrate> {
    let mut crates = Vec::new();
    for entry in fs::read_dir(workspace()).expect("reading the workspace") {
        let path = entry
            .expect("reading the workspace")
            .path()
            .join("src/lib.rs");
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let roles: Vec<Role> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("role: ipc::Role::"))
            .map(|rest| {
                let ident = rest.trim_end_matches(',');
                Role::ALL
                    .into_iter()
                    .find(|r| format!("{r:?}") == ident)
                    .unwrap_or_else(|| panic!("{}: unknown role {ident}", path.display()))
            })
            .collect();
        if !roles.is_empty() || text.contains("//! Peers of") {
            crates.push(RoleCrate { path, text, roles });
        }
    }
    crates
}

/// What is wrong with the `//!` block of a lib.rs that runs `roles`; empty when nothing is.
fn check_lib_rs(text: &str, roles: &[Role]) -> Vec<String> {
    let block: Vec<&str> = text
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .collect();
    let mut problems = Vec::new();
    let mut named = Vec::new();
    for line in &block {
        if let Some(reach) = line.strip_prefix("May reach:") {
            let roles: Vec<&str> = words(reach)
                .filter(|w| Role::from_name(w).is_some())
                .collect();
            if !roles.is_empty() {
                problems.push(format!(
                    "`May reach:` names {}: peers belong on the `Peers of` line",
                    roles.join(", ")
                ));
            }
        }
        if line.starts_with("Peers") {
            match parse_peers_line(line) {
                Ok((role, calls, called_by)) => {
                    named.push(role);
                    problems.extend(compare(role, "calls", &calls, &servers_of(role)));
                    problems.extend(compare(role, "is called by", &called_by, &clients_of(role)));
                }
                Err(e) => problems.push(format!("`{line}`: {e}")),
            }
        }
    }
    for role in roles {
        match named.iter().filter(|r| *r == role).count() {
            1 => {}
            0 => problems.push(format!("no line `{}`", expected_line(*role))),
            _ => problems.push(format!("more than one `Peers of {role}` line")),
        }
    }
    for role in named.iter().filter(|r| !roles.contains(r)) {
        problems.push(format!(
            "names the peers of {role}, which this crate does not run"
        ));
    }
    problems
}

/// `Peers of ROLE: calls A, B; called by C.` → (ROLE, {A, B}, {C}); `none` for an empty list.
fn parse_peers_line(line: &str) -> Result<(Role, Vec<Role>, Vec<Role>), String> {
    let shape = || format!("not of the shape `{}`", expected_line(Role::Smtpd));
    let rest = line.strip_prefix("Peers of ").ok_or_else(shape)?;
    let (role, rest) = rest.split_once(": calls ").ok_or_else(shape)?;
    let (calls, called_by) = rest.split_once("; called by ").ok_or_else(shape)?;
    let called_by = called_by.strip_suffix('.').ok_or_else(shape)?;
    let role = Role::from_name(role).ok_or_else(|| format!("unknown role {role}"))?;
    Ok((role, role_list(calls)?, role_list(called_by)?))
}

fn role_list(list: &str) -> Result<Vec<Role>, String> {
    if list == "none" {
        return Ok(Vec::new());
    }
    list.split(", ")
        .map(|name| Role::from_name(name).ok_or_else(|| format!("unknown role `{name}`")))
        .collect()
}

/// The difference between the peers a line names and the topology's, as problems.
fn compare(role: Role, verb: &str, named: &[Role], actual: &BTreeSet<Role>) -> Vec<String> {
    let mut problems = Vec::new();
    let set: BTreeSet<Role> = named.iter().copied().collect();
    if set.len() != named.len() {
        problems.push(format!("{role} {verb}: a role named twice"));
    }
    let extra: Vec<&str> = set.difference(actual).map(|r| r.name()).collect();
    if !extra.is_empty() {
        problems.push(format!(
            "says {role} {verb} {}, which it may not (ipc::topology::EDGES); the line is `{}`",
            extra.join(", "),
            expected_line(role)
        ));
    }
    let missing: Vec<&str> = actual.difference(&set).map(|r| r.name()).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "leaves out that {role} {verb} {} (ipc::topology::EDGES); the line is `{}`",
            missing.join(", "),
            expected_line(role)
        ));
    }
    problems
}

/// The roles `role` calls.
fn servers_of(role: Role) -> BTreeSet<Role> {
    EDGES
        .iter()
        .filter(|e| e.client == role)
        .map(|e| e.server)
        .collect()
}

/// The roles that call `role`.
fn clients_of(role: Role) -> BTreeSet<Role> {
    EDGES
        .iter()
        .filter(|e| e.server == role)
        .map(|e| e.client)
        .collect()
}

/// The `Peers of` line `role`'s crate should have (roles in start order), for error messages.
fn expected_line(role: Role) -> String {
    let list = |set: BTreeSet<Role>| {
        if set.is_empty() {
            "none".to_string()
        } else {
            set.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
        }
    };
    format!(
        "//! Peers of {role}: calls {}; called by {}.",
        list(servers_of(role)),
        list(clients_of(role))
    )
}

/// Whether the table after [`EDGES_MARKER`] holds every edge of the topology once, and no other.
fn check_edge_table(text: &str) -> Result<(), String> {
    let mut lines = text.lines().skip_while(|l| !l.contains(EDGES_MARKER));
    if lines.next().is_none() {
        return Err(format!(
            "no line with `{EDGES_MARKER}` above the edge table"
        ));
    }
    let rows: Vec<&str> = lines.take_while(|l| l.starts_with('|')).collect();
    let expected = || {
        format!(
            "its rows (any order, any third column):\n{}",
            expected_edge_rows().join("\n")
        )
    };
    let mut edges = Vec::new();
    // The header and the separator first.
    for row in rows.iter().skip(2) {
        let cells: Vec<&str> = row.split('|').map(|c| c.trim().trim_matches('`')).collect();
        let (Some(client), Some(server)) = (
            cells.get(1).and_then(|c| Role::from_name(c)),
            cells.get(2).and_then(|c| Role::from_name(c)),
        ) else {
            return Err(format!(
                "`{row}` does not name a client and a server role; {}",
                expected()
            ));
        };
        edges.push((client, server));
    }
    let mut declared: Vec<(Role, Role)> = EDGES.iter().map(|e| (e.client, e.server)).collect();
    declared.sort();
    edges.sort();
    if edges != declared {
        return Err(format!(
            "the edge table is not ipc::topology::EDGES; {}",
            expected()
        ));
    }
    Ok(())
}

/// One table row per edge, for error messages and the test of the check itself.
fn expected_edge_rows() -> Vec<String> {
    EDGES
        .iter()
        .map(|e| format!("| {} | {} | |", e.client, e.server))
        .collect()
}

/// A document holding `rows` as its edge table.
fn table(rows: &[String]) -> String {
    format!(
        "# Doc\n\n{EDGES_MARKER} -->\n| client | server | why |\n|---|---|---|\n{}\n\nafter\n",
        rows.join("\n")
    )
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
}
