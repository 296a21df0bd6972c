//! The async life of a role, shared by process and single-process mode: wire up listeners and
//! peer links, say `Ready`, run the role, and carry out the supervisor's control requests.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use ipc::config::ListenerSpec;
use ipc::frame::Kind;
use ipc::msg::control::{self as msg, ControlService, PeerPing, Refused, Request};
use ipc::msg::setup::{Bootstrap, FromRole, Ready};
use ipc::rpc::{Call, Incoming, Server};
use ipc::{
    AdminCall, ChannelError, GrantError, Handle, Link, Listener, PeerLinks, Plumbing, Reporter,
    Role, RoleError, RoleSpec, Side, Started,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::logs::LogControl;

/// How long a peer may take to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a role whose bootstrap has arrived on `link`, until it is told to stop, its supervisor
/// goes away, or its `run` ends.
pub async fn serve(
    spec: RoleSpec,
    boot: Bootstrap,
    link: Link,
    fds: Vec<Handle>,
    ready: Ready,
    log: LogControl,
) -> Result<(), RoleError> {
    let role = spec.role;
    let mut fds = fds.into_iter();
    let listeners: Vec<Listener> = boot
        .listeners
        .iter()
        .zip(fds.by_ref())
        .map(|(spec, fd)| Listener {
            spec: *spec,
            socket: std::net::TcpListener::from(fd),
        })
        .collect();
    let (incoming_tx, incoming) = mpsc::unbounded_channel();
    let (admin_tx, admin) = mpsc::unbounded_channel();
    let link_peers: Vec<(Role, Handle)> = boot.peers.iter().copied().zip(fds.by_ref()).collect();
    let files: Vec<Handle> = fds.collect();
    // Nothing reads the control channel until `Ready` is out.
    let ready_tx = link.tx.clone();
    let mut control = Server::<ControlService>::new(link);

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    // The role types what it is given by its grant; its `run` waits until it is spawned.
    let Started { peers, run } = (spec.run)(Plumbing {
        role,
        config: boot.config,
        listeners,
        incoming,
        admin,
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
        files,
        reporter: Reporter::new(control.events()),
    })?;
    for (peer, fd) in link_peers {
        attach(role, peer, fd, &*peers, &incoming_tx)?;
    }

    let sending_ready = |e: ChannelError| RoleError::link("sending Ready", e);
    let payload =
        ipc::codec::encode(&FromRole::Ready(ready)).map_err(|e| sending_ready(e.into()))?;
    ready_tx
        .send(Kind::Message, 0, &payload, Vec::new())
        .await
        .map_err(sending_ready)?;
    log_listeners(&boot.listeners);

    let mut run = tokio::spawn(run.in_current_span());

    loop {
        tokio::select! {
            finished = &mut run => {
                return match finished {
                    Ok(result) => result,
                    Err(e) => Err(RoleError::task(format!("{role} task failed"), e)),
                };
            }
            next = control.next() => {
                let incoming = match next {
                    Ok(Some(incoming)) => incoming,
                    Ok(None) => return Err(RoleError::SupervisorGone),
                    Err(e) => return Err(RoleError::link("control channel broken; exiting", e)),
                };
                if let Some(grace) = handle(role, incoming, &peers, &incoming_tx, &admin_tx, &log).await {
                    shutdown.cancel();
                    tasks.close();
                    let drained = tokio::time::timeout(grace, async {
                        let _ = (&mut run).await;
                        tasks.wait().await;
                    })
                    .await;
                    if drained.is_err() {
                        tracing::warn!("in-flight work not finished within {grace:?}; exiting anyway");
                    }
                    tracing::info!("stopped");
                    return Ok(());
                }
            }
        }
    }
}

/// Carries out one control request; returns the grace period when told to shut down.
async fn handle(
    role: Role,
    incoming: Incoming<ControlService>,
    peers: &Arc<dyn PeerLinks>,
    incoming_tx: &mpsc::UnboundedSender<(Role, Link)>,
    admin_tx: &mpsc::UnboundedSender<AdminCall>,
    log: &LogControl,
) -> Option<Duration> {
    let Incoming {
        request,
        mut fds,
        reply,
    } = incoming;
    if !matches!(request, Request::PeerUp(_) | Request::Admin(_)) {
        // Only PeerUp and some admin requests take descriptors.
        std::mem::take(&mut fds)
            .into_iter()
            .for_each(sandbox::fdpass::discard);
    }
    let mut shutdown = None;
    let answer = match request {
        Request::Shutdown(msg::Shutdown { grace_ms }) => {
            tracing::info!("shutting down, grace {grace_ms} ms");
            shutdown = Some(Duration::from_millis(grace_ms));
            msg::Shutdown::reply(&Ok(()), Vec::new())
        }
        Request::SetLogLevel(msg::SetLogLevel { filter }) => {
            let set = log(&filter).map_err(Refused);
            if set.is_ok() {
                tracing::info!("log filter now `{filter}`");
            }
            msg::SetLogLevel::reply(&set, Vec::new())
        }
        Request::PeerUp(msg::PeerUp { peer }) => {
            let up = match take_one(std::mem::take(&mut fds)) {
                Some(fd) => attach(role, peer, fd, &**peers, incoming_tx)
                    .map_err(|e| Refused(e.chain()))
                    .inspect(|()| tracing::debug!("link to {peer} up")),
                None => Err(Refused("PeerUp needs exactly one socket".into())),
            };
            msg::PeerUp::reply(&up, Vec::new())
        }
        Request::PeerDown(msg::PeerDown { peer }) => {
            tracing::debug!("link to {peer} down");
            let down = match role.side_towards(peer) {
                Some(Side::Client) => peers.disconnect(peer).map_err(|e| Refused(e.to_string())),
                // A link we serve ends when its client closes it.
                _ => Ok(()),
            };
            msg::PeerDown::reply(&down, Vec::new())
        }
        Request::PingPeers(_) => {
            // Answered from a task, each ping bounded: a peer that never answers must not hold
            // up this role's control loop.
            let peers = peers.clone();
            tokio::spawn(
                async move {
                    let mut pings = Vec::new();
                    for (peer, side) in role.peers() {
                        if side == Side::Client {
                            let result =
                                match tokio::time::timeout(PING_TIMEOUT, peers.ping(peer)).await {
                                    Ok(r) => r.map(|d| d.as_micros() as u64),
                                    Err(_) => Err(format!("no answer within {PING_TIMEOUT:?}")),
                                };
                            pings.push(PeerPing { peer, result });
                        }
                    }
                    if let Err(e) = reply
                        .send(msg::PingPeers::reply(&Ok(pings), Vec::new()))
                        .await
                    {
                        tracing::warn!("answering the supervisor: {e}");
                    }
                }
                .in_current_span(),
            );
            return None;
        }
        Request::Admin(msg::Admin { request }) => {
            // Carried out by the role's own code; answered from a task so that a long request
            // (verifydata) does not hold up pings or a shutdown.
            let (tx, rx) = tokio::sync::oneshot::channel();
            let call = AdminCall {
                request,
                fds,
                reply: tx,
            };
            if admin_tx.send(call).is_err() {
                let refused = Err(Refused(format!("{role} takes no administrative requests")));
                msg::Admin::reply(&refused, Vec::new())
            } else {
                tokio::spawn(
                    async move {
                        let answer = match rx.await {
                            Ok(result) => result.map_err(Refused),
                            Err(_) => Err(Refused(format!("{role} dropped the request"))),
                        };
                        if let Err(e) = reply.send(msg::Admin::reply(&answer, Vec::new())).await {
                            tracing::warn!("answering the supervisor: {e}");
                        }
                    }
                    .in_current_span(),
                );
                return None;
            }
        }
    };
    if let Err(e) = reply.send(answer).await {
        tracing::warn!("answering the supervisor: {e}");
    }
    shutdown
}

/// The single descriptor of a request that takes exactly one; any other count is discarded.
fn take_one(mut fds: Vec<Handle>) -> Option<Handle> {
    if fds.len() == 1 {
        return fds.pop();
    }
    fds.into_iter().for_each(sandbox::fdpass::discard);
    None
}

/// Wraps a peer socket as the client or the server end of its edge.
fn attach(
    role: Role,
    peer: Role,
    fd: Handle,
    peers: &dyn PeerLinks,
    incoming_tx: &mpsc::UnboundedSender<(Role, Link)>,
) -> Result<(), RoleError> {
    let side = role
        .side_towards(peer)
        .ok_or(GrantError::NotGranted { role, peer })?;
    let name = match side {
        Side::Client => format!("{role}→{peer}"),
        Side::Server => format!("{peer}→{role}"),
    };
    let link =
        Link::from_fd(fd, name).map_err(|e| RoleError::io(format!("the link to {peer}"), e))?;
    match side {
        Side::Client => peers.connect(peer, link)?,
        Side::Server => incoming_tx.send((peer, link)).map_err(|_| {
            RoleError::link(
                format!("{role} no longer accepts links"),
                ChannelError::Closed,
            )
        })?,
    }
    Ok(())
}

fn log_listeners(listeners: &[ListenerSpec]) {
    for l in listeners {
        tracing::info!("serving {} on {}", l.kind.name(), l.addr);
    }
}
