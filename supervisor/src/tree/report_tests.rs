//! Reports through the real path: stand-in roles run as tasks (single-process mode), send
//! reports with their `Context`'s reporter over their control channels, and the running tree
//! decides. Only the report a server makes about its own client restarts anything.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipc::config::{
    AuthdConfig, HttpdConfig, ImapdConfig, KeydConfig, ProcessConfig, QueuedConfig, RoleConfig,
    SandboxConfig, SeccompSetting, SmtpdConfig, StoragedConfig,
};
use ipc::msg::admin::{self, RoleState, RoleStatus};
use ipc::{Context, Grant, Role, RoleError, RoleSpec, RunFn, grant};
use tokio::sync::{Notify, oneshot};

use crate::launch::Launcher;
use crate::tree::{Event, Settings, Tree};

/// Reports still to send, as (reporter, the peer it names); each is sent once, when `GO` fires.
static SCRIPT: Mutex<Vec<(Role, Role)>> = Mutex::new(Vec::new());
static GO: Notify = Notify::const_new();

/// A role that does nothing but send its scripted reports when told to.
async fn stand_in<G: Grant>(ctx: Context<G>) -> Result<(), RoleError> {
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return Ok(()),
            () = GO.notified() => {}
        }
        let mine: Vec<Role> = {
            let mut script = SCRIPT.lock().expect("script");
            let (mine, rest) = script.drain(..).partition(|(r, _)| *r == ctx.role());
            *script = rest;
            mine.into_iter().map(|(_, peer)| peer).collect()
        };
        for peer in mine {
            ctx.reporter
                .broken_link(peer, "a scripted report\nwith a forged line")
                .await;
        }
    }
}

/// The stand-in, typed by `role`'s grant.
fn stand_in_for(role: Role) -> RunFn {
    match role {
        Role::Keyd => |p| ipc::context::start(p, stand_in::<grant::Keyd>),
        Role::Storaged => |p| ipc::context::start(p, stand_in::<grant::Storaged>),
        Role::Authd => |p| ipc::context::start(p, stand_in::<grant::Authd>),
        Role::Queued => |p| ipc::context::start(p, stand_in::<grant::Queued>),
        Role::Smtpd => |p| ipc::context::start(p, stand_in::<grant::Smtpd>),
        Role::Submission => |p| ipc::context::start(p, stand_in::<grant::Submission>),
        Role::Imapd => |p| ipc::context::start(p, stand_in::<grant::Imapd>),
        Role::Httpd => |p| ipc::context::start(p, stand_in::<grant::Httpd>),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_server_reporting_its_own_client_restarts_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = Tree::new(settings(dir.path()), Arc::new(|_: &str| Ok(())));
    let events = tree.events();
    let running = tokio::spawn(tree.run());
    wait_for(&events, "every role ready", |roles| {
        roles.iter().all(|r| r.state == RoleState::Ready)
    })
    .await;

    *SCRIPT.lock().expect("script") = vec![
        // Clients about their servers, one of them a core role: ignored.
        (Role::Imapd, Role::Keyd),
        (Role::Submission, Role::Authd),
        (Role::Queued, Role::Storaged),
        // Roles that share no edge: ignored.
        (Role::Smtpd, Role::Authd),
        (Role::Httpd, Role::Smtpd),
        // About itself: ignored.
        (Role::Keyd, Role::Keyd),
        // A server about its client, twice for the same breakage: one restart.
        (Role::Keyd, Role::Imapd),
        (Role::Keyd, Role::Imapd),
    ];
    // A stand-in listens once its role is ready and its run polled: tell them until every
    // scripted report is taken.
    let until = Instant::now() + Duration::from_secs(10);
    while !SCRIPT.lock().expect("script").is_empty() {
        assert!(Instant::now() < until, "reports not sent within 10 s");
        GO.notify_waiters();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let roles = wait_for(&events, "imapd restarted and ready", |roles| {
        roles
            .iter()
            .all(|r| r.state == RoleState::Ready && r.restarts == u32::from(r.role == Role::Imapd))
    })
    .await;
    let imapd = roles.iter().find(|r| r.role == Role::Imapd).expect("imapd");
    let why = imapd.last_error.as_deref().unwrap_or_default();
    assert!(
        why.starts_with("keyd closed its link: a scripted report\\nwith"),
        "{why}"
    );
    // Long past the crash backoff: the ignored reports restarted nothing, the duplicate did
    // not restart imapd a second time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let roles = status(&events).await;
    for r in &roles {
        assert_eq!(
            (r.restarts, r.state),
            (u32::from(r.role == Role::Imapd), RoleState::Ready),
            "{r:?}"
        );
    }

    let _ = events.send(Event::Shutdown {
        reason: "test over".into(),
    });
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the tree stops")
        .expect("join")
        .expect("a clean stop");
}

async fn status(events: &tokio::sync::mpsc::UnboundedSender<Event>) -> Vec<RoleStatus> {
    let (reply, answer) = oneshot::channel();
    events
        .send(Event::Admin {
            request: admin::GetStatus {}.into(),
            fds: Vec::new(),
            uid: 0,
            reply,
        })
        .expect("the tree runs");
    let (payload, _) = answer.await.expect("an answer").into_parts();
    let status: <admin::GetStatus as ipc::rpc::Call>::Answer =
        ipc::codec::decode(&payload.expect("encoded")).expect("decodes as a status");
    status.expect("a status").roles
}

async fn wait_for(
    events: &tokio::sync::mpsc::UnboundedSender<Event>,
    what: &str,
    cond: impl Fn(&[RoleStatus]) -> bool,
) -> Vec<RoleStatus> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let roles = status(events).await;
        if cond(&roles) {
            return roles;
        }
        assert!(Instant::now() < until, "not {what} within 10 s: {roles:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn settings(dir: &std::path::Path) -> Settings {
    let text = format!(
        "[server]\nhostname = \"mx.test.example\"\ndata_dir = \"{}\"\nrun_dir = \"{}\"\nshutdown_grace_secs = 2\n",
        dir.join("data").display(),
        dir.join("run").display()
    );
    let config = crate::Config::parse("test.toml", &text).expect("config");
    let specs: Arc<[RoleSpec]> = Role::ALL
        .into_iter()
        .map(|role| RoleSpec {
            role,
            syscalls: sandbox::Syscalls::default(),
            tcp_connect: &[],
            file_size: ipc::FileSize::Nothing,
            run: stand_in_for(role),
        })
        .collect();
    let role_configs: BTreeMap<Role, RoleConfig> = Role::ALL
        .into_iter()
        .map(|role| {
            let hostname = "mx.test.example".to_string();
            let dir = dir.join("data").join(role.name());
            let smtpd = SmtpdConfig {
                hostname: hostname.clone(),
                smtp: Default::default(),
                dns: Vec::new(),
            };
            let config = match role {
                Role::Keyd => RoleConfig::Keyd(KeydConfig {
                    hostname,
                    dir,
                    certificates: Vec::new(),
                    dkim: Default::default(),
                }),
                Role::Storaged => RoleConfig::Storaged(StoragedConfig {
                    dir,
                    storage: Default::default(),
                }),
                Role::Authd => RoleConfig::Authd(AuthdConfig {
                    hostname,
                    dir,
                    auth: Default::default(),
                }),
                Role::Queued => RoleConfig::Queued(QueuedConfig {
                    dir,
                    smtp: Default::default(),
                    storage: Default::default(),
                    dns: Vec::new(),
                }),
                Role::Smtpd => RoleConfig::Smtpd(smtpd),
                Role::Submission => RoleConfig::Submission(smtpd),
                Role::Imapd => RoleConfig::Imapd(ImapdConfig { hostname }),
                Role::Httpd => RoleConfig::Httpd(HttpdConfig {
                    hostname,
                    dns: Vec::new(),
                }),
            };
            (role, config)
        })
        .collect();
    let processes = Role::ALL
        .into_iter()
        .map(|role| {
            let process = ProcessConfig {
                worker_threads: 1,
                fail_at_start: false,
            };
            (role, process)
        })
        .collect();
    let sandbox = Role::ALL
        .into_iter()
        .map(|role| {
            let config = SandboxConfig {
                ids: None,
                seccomp: SeccompSetting::Off,
            };
            (role, config)
        })
        .collect();
    Settings {
        launcher: Launcher::InProcess {
            specs,
            log: Arc::new(|_: &str| Ok(())),
        },
        build_id: "test".into(),
        listeners: Vec::new(),
        role_configs,
        processes,
        sandbox,
        log_filter: "info".into(),
        grace: Duration::from_secs(2),
        single_process: true,
        localserve: false,
        config_path: dir.join("test.toml"),
        config,
    }
}
