//! moxd's inter-process protocol.
//!
//! Roles talk over `SOCK_SEQPACKET` socketpairs created by the supervisor, one per declared edge
//! ([`topology::EDGES`]): one datagram is one frame ([`frame`]: a 16-byte header and a
//! codec-encoded payload of at most 64 KiB), and file descriptors travel with the frame they
//! belong to (`SCM_RIGHTS`, received close-on-exec, counted in the header). Malformed frames
//! close the channel. On top of links ([`transport`]) sit typed sequential channels
//! ([`Channel`], for the setup handshake) and request/response services with many requests in
//! flight ([`rpc`]). The same API runs over in-memory queues when all roles are tasks of one
//! process. The catalogue of messages lives in [`msg`], grouped by service.
//!
//! On Windows moxd runs only as one process: every link is in memory, a descriptor that travels
//! with a frame is an owned file ([`Handle`]), and the socket transport and the [`blocking`]
//! channels (Unix sockets) do not exist. `docs/windows.md` lists what else differs.

#[cfg(unix)]
pub mod blocking;
pub mod channel;
pub mod codec;
pub mod config;
pub mod context;
pub mod files;
pub mod frame;
pub mod grant;
pub mod msg;
pub mod role_error;
pub mod rpc;
pub mod secret;
pub mod serve;
pub mod slot;
pub mod space;
pub mod span;
pub mod sync;
pub mod tmpfile;
pub mod topology;
pub mod transport;

pub use channel::Channel;
pub use context::{
    AdminCall, Context, FileSize, Listener, PeerSlot, Plumbing, Reporter, RoleSpec, RunFn, Started,
};
pub use grant::{Grant, GrantError, PeerLinks};
pub use role_error::RoleError;
pub use rpc::{Client, Server, Service};
pub use secret::{Secret, SecretBytes};
pub use topology::{Role, Side};
pub use transport::{ChannelError, Handle, Link};
