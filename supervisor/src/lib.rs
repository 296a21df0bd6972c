//! The supervisor: moxd's root process (`moxd serve`), and the role side of start-up.
//!
//! Runs as root (or as the invoking user for `localserve`). It parses and validates the config,
//! resolves or creates one system user per role, fixes the role directories, binds every
//! listening socket, owns the admin socket, re-execs its own binary once per role with a
//! socketpair at fd 3, sends each role its bootstrap (config slice, listener fds, peer links),
//! restarts roles that die, and shuts the tree down in order. It never reads key files, decodes
//! private keys, checks passwords or touches message data. Its peers: every role, over fd 3.

mod admin;
mod certfiles;
mod clip;
pub mod config;
mod dirs;
mod error;
mod launch;
pub mod listeners;
pub mod localserve;
pub mod logs;
mod reports;
pub mod role;
mod tree;
mod users;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ipc::config::{
    AuthdConfig, HttpdConfig, ImapdConfig, KeydConfig, ProcessConfig, QueuedConfig, RoleConfig,
    SandboxConfig, SmtpdConfig, StoragedConfig,
};
use ipc::{Role, RoleSpec};

pub use admin::AdminPolicy;
pub use config::{Config, ConfigError};
pub use error::Error;

/// How `moxd serve` / `moxd localserve` was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    /// Every role as a task of this process (the only mode on Windows).
    pub single_process: bool,
    /// Print the localserve banner.
    pub localserve: bool,
    /// Every role's entry point (used in single-process mode).
    pub specs: Arc<[RoleSpec]>,
    pub build_id: String,
}

/// Runs the supervisor until the tree stops.
pub fn serve(opts: Options) -> ExitCode {
    if let Err(e) = sandbox::fds::ensure_stdio_open() {
        eprintln!("moxd: {e}");
        return ExitCode::FAILURE;
    }
    let config = match Config::load(&opts.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("moxd: configuration error: {e}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    let log = logs::init_supervisor(&config.server.log);
    match prepare_and_run(opts, config, log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("moxd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn prepare_and_run(opts: Options, config: Config, log: logs::LogControl) -> Result<(), Error> {
    let as_root = sandbox::is_root();
    let ids = if as_root && !opts.single_process {
        users::resolve_all(&config)?
    } else {
        if !as_root {
            tracing::info!(
                "not started as root: every role runs as uid {} and skips the uid drop; the rest of the sandbox applies",
                nix::unistd::getuid()
            );
        }
        Vec::new()
    };
    let admin_gid = match &config.admin.group {
        Some(name) => users::group_id(name)?,
        None => 0,
    };
    users::check_admin_group(&ids, admin_gid)?;
    dirs::prepare(&config, &ids, admin_gid)?;
    // A certificate file that cannot be opened is a configuration error, found now.
    certfiles::open_all(&config.certificate_files()).map_err(Error::Fatal)?;
    let bound = listeners::bind_all(&config.listen.all())?;
    let admin_socket = admin::bind_socket(&config.admin_socket(), as_root.then_some(admin_gid))?;
    let mut admins = config.admin.uids.clone();
    if !as_root {
        // Everything runs as this user; the roles cannot reach the socket (no AF_UNIX sockets
        // under seccomp), so the user is the administrator.
        admins.push(nix::unistd::getuid().as_raw());
    }
    let policy = AdminPolicy {
        admins,
        roles: ids.iter().map(|(_, i)| i.uid).collect(),
    };

    let dns = config.dns_resolvers();
    tracing::info!(
        "DNS resolvers: {}",
        dns.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut role_configs = BTreeMap::new();
    let mut processes = BTreeMap::new();
    let mut sandboxes = BTreeMap::new();
    for role in Role::ALL {
        role_configs.insert(role, role_config(&config, role, opts.localserve, &dns)?);
        processes.insert(
            role,
            ProcessConfig {
                worker_threads: config.server.worker_threads,
                fail_at_start: config.fails_at_start(role),
            },
        );
        sandboxes.insert(
            role,
            SandboxConfig {
                ids: ids
                    .iter()
                    .find(|(r, _)| *r == role)
                    .map(|(_, i)| (i.uid, i.gid)),
                seccomp: config.sandbox.seccomp,
            },
        );
    }
    if opts.localserve {
        print_banner(&opts, &config, &bound);
    }
    let build_id: Arc<str> = opts.build_id.clone().into();
    let launcher = if opts.single_process {
        launch::Launcher::InProcess {
            specs: opts.specs.clone(),
            log: log.clone(),
        }
    } else {
        launch::Launcher::Process
    };
    let settings = tree::Settings {
        launcher,
        build_id: build_id.clone(),
        listeners: bound,
        role_configs,
        processes,
        sandbox: sandboxes,
        log_filter: config.server.log.clone(),
        grace: Duration::from_secs(config.server.shutdown_grace_secs),
        single_process: opts.single_process,
        localserve: opts.localserve,
        config_path: opts.config.clone(),
        config: config.clone(),
    };
    // Process mode runs on this thread alone: children are spawned from the thread that lives
    // as long as the process, so their parent-death signal fires only when the supervisor dies.
    let runtime = if opts.single_process {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(config.server.worker_threads).max(2))
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }?;
    let outcome = runtime.block_on(async move {
        let tree = tree::Tree::new(settings, log);
        let events = tree.events();
        tokio::spawn(admin::serve(admin_socket, policy, build_id, events.clone()));
        tokio::spawn(watch_signals(events));
        tree.run().await
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    outcome.map_err(Error::Fatal)
}

/// `role`'s own settings, and no other role's.
fn role_config(
    config: &Config,
    role: Role,
    localserve: bool,
    dns: &[std::net::SocketAddr],
) -> Result<RoleConfig, Error> {
    let hostname = config.server.hostname.get_ref().clone();
    let dir = || {
        config
            .role_dir(role)
            .ok_or_else(|| Error::Dirs(format!("{role} has no directory")))
    };
    let smtpd = || SmtpdConfig {
        hostname: hostname.clone(),
        smtp: config.smtp_settings(localserve),
        dns: dns.to_vec(),
    };
    Ok(match role {
        Role::Keyd => RoleConfig::Keyd(KeydConfig {
            hostname,
            dir: dir()?,
            certificates: config.certificate_files(),
            dkim: config.dkim_settings(),
        }),
        Role::Storaged => RoleConfig::Storaged(StoragedConfig {
            dir: dir()?,
            storage: config.storage_settings(),
        }),
        Role::Authd => RoleConfig::Authd(AuthdConfig {
            hostname,
            dir: dir()?,
            auth: config.auth_settings(),
        }),
        Role::Queued => RoleConfig::Queued(QueuedConfig {
            dir: dir()?,
            smtp: config.smtp_settings(localserve),
            storage: config.storage_settings(),
            dns: dns.to_vec(),
        }),
        Role::Smtpd => RoleConfig::Smtpd(smtpd()),
        Role::Submission => RoleConfig::Submission(smtpd()),
        Role::Imapd => RoleConfig::Imapd(ImapdConfig { hostname }),
        Role::Httpd => RoleConfig::Httpd(HttpdConfig {
            hostname,
            dns: dns.to_vec(),
        }),
    })
}

async fn watch_signals(events: tokio::sync::mpsc::UnboundedSender<tree::Event>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot watch SIGTERM/SIGINT");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        let _ = events.send(tree::Event::Shutdown {
            reason: format!("{name} received"),
        });
    }
}

fn print_banner(opts: &Options, config: &Config, bound: &[listeners::Bound]) {
    use std::io::Write;
    let dir = opts
        .config
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut text = format!("moxd localserve: configuration and data in {dir}\n");
    for b in bound {
        text += &format!("  {:<12} {}\n", b.spec.kind.name(), b.spec.addr);
    }
    text += &format!(
        "  admin        moxctl --socket {} status\n",
        config.admin_socket().display()
    );
    text += "Stop with Ctrl-C.\n";
    // A closed stdout must not stop the server.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    let _ = std::io::stdout().lock().flush();
}
