//! Helpers every role uses: serving the links peers open to it, and answering on listeners whose
//! protocol the role does not serve yet (honestly: a "not available" reply, never a fake one).

use std::future::Future;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::ListenerKind;
use crate::context::{AdminCall, Listener, Reporter};
use crate::rpc::{Incoming, Named, Server, Service};
use crate::span;
use crate::topology::Role;
use crate::transport::Link;

/// Requests one link may have in flight; beyond that the link is not read until one finishes,
/// so a misbehaving peer cannot exhaust this role's memory or descriptors.
pub const MAX_IN_FLIGHT: usize = 32;

/// Serves every link peers open to this role with `handle`, one task per request (at most
/// [`MAX_IN_FLIGHT`] per link), until shutdown; `closed` hears of each link that ends (the
/// peer exited or misbehaved), `reporter` of each a peer broke. Pings are answered.
///
/// What a peer's bad frame costs (DESIGN.md §3, §15):
/// - a frame that is broken (truncated, oversize, wrong version, unknown kind, a kind a client
///   does not send, a wrong descriptor count, more descriptors than a frame carries, an
///   undecodable payload or trailing bytes, a ping with descriptors) costs the sender that one
///   link: it is logged (`link from …: …; closing it`, which the supervisor's log carries with
///   this role's name), shut down for both sides at once, `closed` is told, and so is the
///   supervisor (through `reporter`), which restarts the sender so that it comes back with
///   fresh links; the role goes on serving every other link;
/// - an empty datagram reads like the peer closing its end (on `SOCK_SEQPACKET` the two cannot
///   be told apart): the link ends for both sides, unreported, which costs nobody but the
///   sender (any client may close its own link);
/// - a well-formed request with descriptors it does not take is answered as usual, the
///   descriptors closed unread (`handle` discards them);
/// - a well-formed request the sender's link may not make is refused in an answer, and the
///   link stays open.
///
/// None of these paths may make a system call the role's seccomp filter forbids: the test of
/// each class against the running tree is tests/hostile.
pub async fn accept_links<S, F, Fut, C>(
    mut incoming: mpsc::UnboundedReceiver<(Role, Link)>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    reporter: Reporter,
    handle: F,
    closed: C,
) where
    S: Service,
    F: Fn(Role, Incoming<S>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    C: Fn(Role) + Clone + Send + 'static,
{
    loop {
        let (peer, link) = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = incoming.recv() => match next {
                Some(x) => x,
                None => return,
            },
        };
        let (shutdown, tasks2, handle) = (shutdown.clone(), tasks.clone(), handle.clone());
        let (closed, reporter) = (closed.clone(), reporter.clone());
        let link_span = span::link(link.rx.name());
        let serve_link = async move {
            let mut server = Server::<S>::new(link);
            let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = server.next() => next,
                };
                match next {
                    Ok(Some(request)) => {
                        let request_span = span::request(request.reply.id());
                        request_span
                            .record("request", tracing::field::display(request.request.name()));
                        let work = request_span.in_scope(|| handle(peer, request));
                        tasks2.spawn(
                            async move {
                                work.await;
                                drop(permit);
                            }
                            .instrument(request_span),
                        );
                    }
                    Ok(None) => {
                        // The peer closed the link, or sent an empty datagram, which reads the
                        // same on SOCK_SEQPACKET: either way the link is over for both sides.
                        server.shut_down();
                        closed(peer);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("link from {peer}: {e}; closing it");
                        server.shut_down();
                        closed(peer);
                        if e.is_peer_fault() {
                            reporter.broken_link(peer, &e.to_string()).await;
                        }
                        return;
                    }
                }
            }
        };
        tasks.spawn(serve_link.instrument(link_span));
    }
}

/// Hands each administrative request (forwarded from moxctl) to `handle`, one task each, until
/// shutdown.
pub async fn serve_admin<F, Fut>(
    mut admin: mpsc::UnboundedReceiver<AdminCall>,
    shutdown: CancellationToken,
    handle: F,
) where
    F: Fn(AdminCall) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            call = admin.recv() => match call {
                Some(call) => {
                    tokio::spawn(handle(call).in_current_span());
                }
                None => return,
            },
        }
    }
}

/// The answer a role gives on a listener it does not serve yet, by listener kind.
pub type Reply = std::sync::Arc<dyn Fn(ListenerKind) -> Option<String> + Send + Sync>;

/// Accepts connections on `listeners` and answers each with the line `reply` gives for its kind
/// (or closes it at once when there is none), until shutdown.
pub fn answer_unavailable(
    listeners: Vec<Listener>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    reply: Reply,
) -> std::io::Result<()> {
    let ids = std::sync::Arc::new(span::Ids::new());
    for listener in listeners {
        let kind = listener.spec.kind;
        let std_listener = listener.socket;
        std_listener.set_nonblocking(true)?;
        let socket = tokio::net::TcpListener::from_std(std_listener)?;
        let (shutdown, reply, ids) = (shutdown.clone(), reply.clone(), ids.clone());
        let accept = async move {
            loop {
                let (mut conn, peer) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = socket.accept() => match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!("accepting on {}: {e}", kind.name());
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                async {
                    tracing::info!("{} connection: protocol not served yet", kind.name());
                    if let Some(line) = reply(kind) {
                        let _ = conn.write_all(line.as_bytes()).await;
                    }
                    let _ = conn.shutdown().await;
                }
                .instrument(span::connection(peer, ids.next()))
                .await;
            }
        };
        tasks.spawn(accept.in_current_span());
    }
    Ok(())
}
