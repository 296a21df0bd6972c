//! keyd as a process of its own, as the supervisor runs it: this benchmark's binary started
//! again with `--keyd-child DIR`, its link to the asking role at fd 3, running `keyd::run` on a
//! runtime built as a role's (two workers). What the tree adds around it — the `Hello` →
//! `Bootstrap` handshake over fd 3 and the sandbox — is not on a handshake's path and is left
//! out; the link here is the role's link (imapd → keyd), not a control channel.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ipc::config::KeydConfig;
use ipc::{Context, Link, Role, grant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The argument that makes this binary the keyd child.
pub const ARG: &str = "--keyd-child";

/// Starts keyd in a child process on the key directory `dir`, serving the link whose other end
/// is `link`. The child ends when its stdin closes (when the returned `Child` is waited for
/// after `stdin` was dropped, or when this process dies).
pub fn spawn(dir: &Path, link: OwnedFd) -> Child {
    let exe = std::env::current_exe().expect("this benchmark's executable");
    let mut cmd = Command::new(exe);
    cmd.arg(ARG).arg(dir).stdin(Stdio::piped());
    sandbox::spawn::pass_as_fd3(&mut cmd, link);
    cmd.spawn().expect("starting the keyd child")
}

/// The child's `main`: serves keyd on the link at fd 3 until stdin closes.
pub fn run(dir: &Path) {
    let fd = sandbox::fds::take_channel_fd().expect("the link at fd 3");
    let workers = 2;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(8)
        .thread_name("moxd-keyd")
        .enable_io()
        .enable_time()
        .build()
        .expect("keyd's runtime");
    runtime.block_on(async move {
        let (incoming_tx, incoming) = tokio::sync::mpsc::unbounded_channel();
        let link = Link::from_fd(fd, "keyd←imapd").expect("keyd's link");
        incoming_tx
            .send((Role::Imapd, link))
            .expect("queueing the link");
        let (_admin_tx, admin) = tokio::sync::mpsc::unbounded_channel();
        let ctx = Context::<grant::Keyd> {
            config: KeydConfig {
                hostname: "bench.example".into(),
                dir: dir.to_path_buf(),
                certificates: Vec::new(),
                dkim: Default::default(),
            },
            listeners: Vec::new(),
            peers: Default::default(),
            incoming,
            admin,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            files: Vec::new(),
            reporter: ipc::Reporter::detached(),
        };
        let keyd = tokio::spawn(keyd::run(ctx));
        // Until the parent closes our stdin (or dies).
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0u8; 1])).await;
        drop(incoming_tx);
        keyd.abort();
    });
}
