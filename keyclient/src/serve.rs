//! Implicit-TLS listeners of protocols a role does not serve yet: the TLS handshake happens
//! (through keyd), then the client is told, inside TLS, that the service is not available.

use std::sync::Arc;
use std::time::Duration;

use ipc::Listener;
use ipc::serve::Reply;
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts on `listeners`, completes TLS with `config`, writes `reply(kind)` and closes.
pub fn answer_tls_unavailable(
    listeners: Vec<Listener>,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    reply: Reply,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let ids = Arc::new(ipc::span::Ids::new());
    for listener in listeners {
        let kind = listener.spec.kind;
        let std_listener = listener.socket;
        std_listener.set_nonblocking(true)?;
        let socket = tokio::net::TcpListener::from_std(std_listener)?;
        let (shutdown, acceptor, tasks2, reply, ids) = (
            shutdown.clone(),
            acceptor.clone(),
            tasks.clone(),
            reply.clone(),
            ids.clone(),
        );
        let accept = async move {
            loop {
                let (conn, peer) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = socket.accept() => match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!("accepting on {}: {e}", kind.name());
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, reply) = (acceptor.clone(), reply.clone());
                let span = ipc::span::connection(peer, ids.next());
                tasks2.spawn(
                    async move {
                        let name = kind.name();
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
                            Ok(Ok(mut tls)) => {
                                tracing::info!("{name} TLS connection: protocol not served yet");
                                if let Some(line) = reply(kind) {
                                    let _ = tls.write_all(line.as_bytes()).await;
                                }
                                let _ = tls.shutdown().await;
                            }
                            Ok(Err(e)) => tracing::info!("{name} TLS handshake failed: {e}"),
                            Err(_) => tracing::info!("{name} TLS handshake timed out"),
                        }
                    }
                    .instrument(span),
                );
            }
        };
        tasks.spawn(accept.in_current_span());
    }
    Ok(())
}

/// Starts [`answer_tls_unavailable`] once keyd has answered with its certificates, retrying
/// while it cannot; connections wait in the listeners' backlog meanwhile.
pub fn spawn_tls_unavailable(
    keyd: ipc::context::PeerSlot<ipc::msg::key::KeyService>,
    listeners: Vec<Listener>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    reply: Reply,
) {
    if listeners.is_empty() {
        return;
    }
    let tasks2 = tasks.clone();
    tasks.spawn(
        async move {
            loop {
                let config = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    c = crate::server_config(&keyd) => c,
                };
                match config {
                    Ok(config) => {
                        if let Err(e) =
                            answer_tls_unavailable(listeners, config, shutdown, tasks2, reply)
                        {
                            tracing::error!("TLS listeners: {e}");
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("TLS not available yet: {}; retrying", e.chain());
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        }
        .in_current_span(),
    );
}

/// The whole life of a network role whose protocol is not served yet: plain listeners answer
/// `reply(hostname, kind)` at once; implicit-TLS listeners answer it inside TLS, after a
/// handshake whose signature keyd makes over `keyd`. Runs until shutdown.
pub async fn serve_unavailable(
    hostname: String,
    keyd: ipc::PeerSlot<ipc::msg::key::KeyService>,
    listeners: Vec<Listener>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    reply: fn(&str, ipc::config::ListenerKind) -> Option<String>,
) -> Result<(), ipc::RoleError> {
    let reply: Reply = std::sync::Arc::new(move |kind| reply(&hostname, kind));
    let (tls, plain): (Vec<_>, Vec<_>) = listeners
        .into_iter()
        .partition(|l| l.spec.kind.implicit_tls());
    spawn_tls_unavailable(keyd, tls, shutdown.clone(), tasks.clone(), reply.clone());
    ipc::serve::answer_unavailable(plain, shutdown.clone(), tasks, reply)
        .map_err(|e| ipc::RoleError::io("serving the plain listeners", e))?;
    shutdown.cancelled().await;
    Ok(())
}
