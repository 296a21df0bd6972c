//! `moxctl`: connects to the admin socket, says hello, sends one request, prints the answer.

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ipc::msg::admin::{
    self, AdminService, ClientHello, Request, RolePings, RoleState, ServerHello, Status,
};
use ipc::msg::control::{AdminReply, RoleAdmin};
use ipc::msg::store::{self as store_msg, Admin as StoreAdmin};
use ipc::rpc::Call;
use ipc::{Channel, Client, Link, Role};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};

#[derive(Parser)]
#[command(name = "moxctl", version = crate::BUILD_ID, about = "Administer a running moxd")]
struct Cli {
    /// The admin socket [default: /run/moxd/admin.sock, or $MOXCTL_SOCKET].
    #[arg(short, long, global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Each role: state, pid, uid, restarts, uptime.
    Status {
        /// Also show each role's sandbox steps and the listeners.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Stop the server gracefully.
    Stop,
    /// Restart one role.
    Restart { role: String },
    /// Set the log level (or filter) of one role, or of all: `loglevel debug`, `loglevel smtpd debug`.
    Loglevel {
        #[arg(num_args = 1..=2, value_names = ["ROLE", "LEVEL"])]
        args: Vec<String>,
    },
    /// Ping every role and, through each, every peer it calls.
    Ping,
    /// Mail domains: add, remove, list.
    Domain {
        #[command(subcommand)]
        op: DomainOp,
    },
    /// Accounts: add (with a first address and the default mailboxes), remove, list.
    Account {
        #[command(subcommand)]
        op: AccountOp,
    },
    /// Addresses of accounts (`@domain` is a catch-all): add, remove.
    Address {
        #[command(subcommand)]
        op: AddressOp,
    },
    /// Deliver the message on standard input to local recipients.
    Deliver {
        #[arg(required = true)]
        recipients: Vec<String>,
    },
    /// Check the database against the message files.
    Verifydata,
    /// Write a consistent backup (database and message files) into a new directory DIR, while
    /// the server runs; check it with `moxd verifydata DIR`.
    Backup { dir: PathBuf },
    /// Set an account's password (asked twice without echo, or read from stdin with --stdin).
    Password {
        #[command(subcommand)]
        op: PasswordOp,
    },
    /// DKIM keys (kept in keyd): generate, list with the DNS TXT records to publish.
    Dkim {
        #[command(subcommand)]
        op: DkimOp,
    },
    /// Mailboxes of an account with their message counts.
    Mailbox {
        #[command(subcommand)]
        op: MailboxOp,
    },
    /// The outbound queue.
    Queue {
        #[command(subcommand)]
        op: QueueOp,
    },
    /// Read the configuration again: certificate files are reloaded and served at once.
    Reload,
    /// TLS certificates being served.
    Tls {
        #[command(subcommand)]
        op: TlsOp,
    },
}

#[derive(Subcommand)]
enum QueueOp {
    /// Every queued message: id, age, size, sender, recipients, attempts, last error.
    List,
}

#[derive(Subcommand)]
enum TlsOp {
    /// Each certificate: names, key type, source, validity, fingerprint.
    Status,
}

#[derive(Subcommand)]
enum PasswordOp {
    Set {
        account: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        stdin: bool,
    },
}

#[derive(Subcommand)]
enum DkimOp {
    Genkey {
        domain: String,
        #[arg(long, default_value = "mail")]
        selector: String,
        /// `rsa` (2048 bits, what every verifier knows) or `ed25519` (RFC 8463).
        #[arg(long, default_value = "rsa")]
        alg: String,
    },
    List,
}

#[derive(Subcommand)]
enum MailboxOp {
    List { account: String },
}

#[derive(Subcommand)]
enum DomainOp {
    Add {
        domain: String,
        /// Local-part separator: with `+`, user+tag@domain reaches user@domain.
        #[arg(long)]
        separator: Option<char>,
    },
    Remove {
        domain: String,
    },
    List,
}

#[derive(Subcommand)]
enum AccountOp {
    Add { name: String, address: String },
    Remove { name: String },
    List,
}

#[derive(Subcommand)]
enum AddressOp {
    Add { address: String, account: String },
    Remove { address: String },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = cli
        .socket
        .or_else(|| std::env::var_os("MOXCTL_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/run/moxd/admin.sock"));
    let request = match request_for(&cli.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("moxctl: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("moxctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fds = match &cli.command {
        Command::Deliver { .. } => match std::io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) => vec![fd],
            Err(e) => {
                eprintln!("moxctl: standard input: {e}");
                return ExitCode::FAILURE;
            }
        },
        Command::Password {
            op: PasswordOp::Set { stdin, .. },
        } => match crate::password::read(*stdin).and_then(|p| crate::password::into_pipe(&p)) {
            Ok(fd) => vec![fd],
            Err(e) => {
                eprintln!("moxctl: {e}");
                return ExitCode::FAILURE;
            }
        },
        Command::Backup { dir } => match crate::backup::start(dir) {
            Ok((fd, tar)) => {
                let result = runtime
                    .block_on(call_with(&socket, &request, vec![fd]))
                    .and_then(|r| match r {
                        Response::Error(e) => Err(e),
                        r => Ok(r),
                    });
                return crate::backup::finish(tar, dir, result, |r| print(&cli.command, r));
            }
            Err(e) => {
                eprintln!("moxctl: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => Vec::new(),
    };
    match runtime.block_on(call_with(&socket, &request, fds)) {
        Ok(Response::Error(e)) => {
            eprintln!("moxctl: {e}");
            ExitCode::FAILURE
        }
        Ok(response) => print(&cli.command, response),
        Err(e) => {
            eprintln!("moxctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn request_for(command: &Command) -> Result<Request, String> {
    let role = |name: &str| Role::from_name(name).ok_or_else(|| format!("unknown role `{name}`"));
    Ok(match command {
        Command::Status { .. } => admin::GetStatus {}.into(),
        Command::Stop => admin::Stop {}.into(),
        Command::Restart { role: name } => admin::Restart { role: role(name)? }.into(),
        Command::Loglevel { args } => match args.as_slice() {
            [level] => admin::LogLevel {
                role: None,
                filter: level.clone(),
            }
            .into(),
            [name, level] => admin::LogLevel {
                role: Some(role(name)?),
                filter: level.clone(),
            }
            .into(),
            _ => return Err("usage: moxctl loglevel [ROLE] LEVEL".into()),
        },
        Command::Ping => admin::Ping {}.into(),
        Command::Domain { op } => store(match op {
            DomainOp::Add { domain, separator } => StoreAdmin::AddDomain {
                domain: domain.clone(),
                separator: *separator,
            },
            DomainOp::Remove { domain } => StoreAdmin::RemoveDomain {
                domain: domain.clone(),
            },
            DomainOp::List => StoreAdmin::ListDomains,
        }),
        Command::Account { op } => store(match op {
            AccountOp::Add { name, address } => StoreAdmin::AddAccount {
                name: name.as_str().into(),
                address: address.clone(),
            },
            AccountOp::Remove { name } => StoreAdmin::RemoveAccount {
                name: name.as_str().into(),
            },
            AccountOp::List => StoreAdmin::ListAccounts,
        }),
        Command::Address { op } => store(match op {
            AddressOp::Add { address, account } => StoreAdmin::AddAddress {
                address: address.clone(),
                account: account.as_str().into(),
            },
            AddressOp::Remove { address } => StoreAdmin::RemoveAddress {
                address: address.clone(),
            },
        }),
        Command::Deliver { recipients } => store(StoreAdmin::Deliver {
            recipients: recipients.clone(),
        }),
        Command::Verifydata => store(StoreAdmin::VerifyData),
        Command::Dkim { op } => for_role(RoleAdmin::Key(match op {
            DkimOp::Genkey {
                domain,
                selector,
                alg,
            } => ipc::msg::key::Admin::DkimGenKey {
                domain: domain.clone(),
                selector: selector.clone(),
                algorithm: alg.clone(),
            },
            DkimOp::List => ipc::msg::key::Admin::DkimList,
        })),
        Command::Backup { .. } => store(StoreAdmin::Backup),
        Command::Reload => admin::Reload {}.into(),
        Command::Queue { op: QueueOp::List } => {
            for_role(RoleAdmin::Queue(ipc::msg::queue::Admin::List))
        }
        Command::Tls { op: TlsOp::Status } => {
            for_role(RoleAdmin::Key(ipc::msg::key::Admin::TlsStatus))
        }
        Command::Password {
            op: PasswordOp::Set { account, .. },
        } => for_role(RoleAdmin::Auth(ipc::msg::auth::Admin::SetPassword {
            account: account.as_str().into(),
        })),
        Command::Mailbox {
            op: MailboxOp::List { account },
        } => store(StoreAdmin::ListMailboxes {
            account: account.as_str().into(),
        }),
    })
}

fn store(op: StoreAdmin) -> Request {
    for_role(RoleAdmin::Store(op))
}

fn for_role(request: RoleAdmin) -> Request {
    admin::ForRole { request }.into()
}

/// The supervisor's answer to any request, as moxctl shows it. On the wire each request has
/// its own answer type; this gathers them for printing, with the supervisor's refusal as
/// `Error` (a failure to reach it is the `Err` beside it).
#[derive(Debug)]
pub enum Response {
    Status(Status),
    Done(String),
    Pings(Vec<RolePings>),
    Role(AdminReply),
    Error(String),
}

/// Sends `request` with `fds` on `client` and turns its typed answer into a [`Response`].
async fn ask_any(
    client: &Client<AdminService>,
    request: Request,
    fds: Vec<std::os::fd::OwnedFd>,
) -> Result<Response, ipc::ChannelError> {
    fn shown<T>(answer: Result<T, admin::Error>, f: impl FnOnce(T) -> Response) -> Response {
        answer.map_or_else(|e| Response::Error(e.0), f)
    }
    // No answer to moxctl carries descriptors; any that come are closed.
    Ok(match request {
        Request::GetStatus(r) => shown(client.call(r, fds).await?.0, Response::Status),
        Request::Stop(r) => shown(client.call(r, fds).await?.0, Response::Done),
        Request::Restart(r) => shown(client.call(r, fds).await?.0, Response::Done),
        Request::LogLevel(r) => shown(client.call(r, fds).await?.0, Response::Done),
        Request::Ping(r) => shown(client.call(r, fds).await?.0, Response::Pings),
        Request::ForRole(r) => shown(client.call(r, fds).await?.0, Response::Role),
        Request::Reload(r) => shown(client.call(r, fds).await?.0, Response::Done),
    })
}

/// Sends one request to the admin socket at `path` and waits for the answer (blocking).
pub fn request(path: &std::path::Path, request: &Request) -> Result<Response, String> {
    request_with(path, request, Vec::new())
}

/// Like [`request`], with descriptors attached (e.g. a message to deliver).
pub fn request_with(
    path: &std::path::Path,
    request: &Request,
    fds: Vec<std::os::fd::OwnedFd>,
) -> Result<Response, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(call_with(path, request, fds))
}

async fn call_with(
    path: &std::path::Path,
    request: &Request,
    fds: Vec<std::os::fd::OwnedFd>,
) -> Result<Response, String> {
    let backup = admin::ForRole {
        request: RoleAdmin::Store(StoreAdmin::Backup),
    };
    // A backup takes as long as the data takes to stream; everything else answers promptly.
    let timeout = if *request == Request::ForRole(backup) {
        Duration::from_secs(24 * 3600)
    } else {
        Duration::from_secs(30)
    };
    let client = connect_admin(path).await?;
    match tokio::time::timeout(timeout, ask_any(&client, request.clone(), fds)).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(response)) => Ok(response),
    }
}

/// Sends one request of a known type to the admin socket at `path` and waits (at most 30 s)
/// for its typed answer; `Err` when the supervisor could not be asked.
pub async fn ask<C: Call<Service = AdminService>>(
    path: &std::path::Path,
    request: C,
    fds: Vec<std::os::fd::OwnedFd>,
) -> Result<C::Answer, String> {
    let client = connect_admin(path).await?;
    let timeout = Duration::from_secs(30);
    match tokio::time::timeout(timeout, client.call(request, fds)).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok((answer, _))) => Ok(answer),
    }
}

/// Connects to the admin socket at `path` and says hello.
async fn connect_admin(path: &std::path::Path) -> Result<Client<AdminService>, String> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| e.to_string())?;
    let addr = UnixAddr::new(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Err(e) = connect(fd.as_raw_fd(), &addr) {
        return Err(match e {
            nix::Error::ENOENT => format!(
                "no admin socket at {} (is moxd running? use --socket to name another)",
                path.display()
            ),
            nix::Error::EACCES | nix::Error::EPERM => format!(
                "access denied to {}: run moxctl as root or as a user listed in admin.uids",
                path.display()
            ),
            nix::Error::ECONNREFUSED => format!(
                "{} refuses connections: moxd is not running (stale socket)",
                path.display()
            ),
            e => format!("connecting to {}: {e}", path.display()),
        });
    }
    let link = Link::from_fd(fd, "moxctl").map_err(|e| e.to_string())?;
    let mut channel = Channel::<ClientHello, ServerHello>::new(link);
    let hello = ClientHello {
        protocol: ipc::frame::PROTOCOL_VERSION,
        client: format!("moxctl {}", crate::BUILD_ID),
    };
    let timeout = Duration::from_secs(30);
    channel
        .send(&hello, Vec::new())
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, channel.recv()).await {
        Err(_) => return Err("the server did not answer the hello".into()),
        Ok(Err(e)) => return Err(format!("handshake: {e}")),
        Ok(Ok((ServerHello::Denied { reason }, _))) => {
            return Err(format!("access denied: {reason}"));
        }
        Ok(Ok((ServerHello::Welcome { .. }, _))) => {}
    }
    let (client, _events) = Client::<AdminService>::new(channel.into_link());
    Ok(client)
}

fn print(command: &Command, response: Response) -> ExitCode {
    match response {
        Response::Status(status) => {
            let verbose = matches!(command, Command::Status { verbose: true });
            print_status(&status, verbose);
        }
        Response::Done(line) => println!("{line}"),
        Response::Pings(roles) => {
            let mut failed = false;
            for r in roles {
                match r.control {
                    Ok(us) => println!("{:<10} control {us} µs", r.role.name()),
                    Err(e) => {
                        failed = true;
                        println!("{:<10} control FAILED: {e}", r.role.name());
                    }
                }
                for p in r.peers {
                    match p.result {
                        Ok(us) => println!("  → {:<10} {us} µs", p.peer.name()),
                        Err(e) => {
                            failed = true;
                            println!("  → {:<10} FAILED: {e}", p.peer.name());
                        }
                    }
                }
            }
            if failed {
                return ExitCode::FAILURE;
            }
        }
        Response::Role(AdminReply::Store(reply)) => return print_store(reply),
        Response::Role(AdminReply::Key(ipc::msg::key::AdminReply::Dkim(keys))) => {
            for k in keys {
                // Zone-file form; TXT strings hold at most 255 characters each.
                let chunks: Vec<String> = k
                    .record
                    .as_bytes()
                    .chunks(255)
                    .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
                    .collect();
                println!("{}. IN TXT ( {} )", k.name, chunks.join(" "));
            }
        }
        Response::Role(AdminReply::Key(ipc::msg::key::AdminReply::Tls(certs))) => print_tls(&certs),
        Response::Role(AdminReply::Queue(ipc::msg::queue::AdminReply::List(list))) => {
            print_queue(&list)
        }
        Response::Role(AdminReply::Auth(ipc::msg::auth::AdminReply::Done(line))) => {
            println!("{line}")
        }
        Response::Error(e) => {
            eprintln!("moxctl: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn print_store(reply: store_msg::AdminReply) -> ExitCode {
    match reply {
        store_msg::AdminReply::Done(line) => println!("{line}"),
        store_msg::AdminReply::Domains(list) => {
            for d in list {
                match d.separator {
                    Some(sep) => println!("{} (separator {sep})", d.domain),
                    None => println!("{}", d.domain),
                }
            }
        }
        store_msg::AdminReply::Accounts(list) => {
            for a in list {
                println!("{}: {}", a.name, a.addresses.join(", "));
            }
        }
        store_msg::AdminReply::Delivered(results) => {
            let mut failed = false;
            for (rcpt, result) in results {
                match result {
                    store_msg::RecipientResult::Delivered => println!("{rcpt}: delivered"),
                    store_msg::RecipientResult::UnknownAddress => {
                        failed = true;
                        println!("{rcpt}: unknown address");
                    }
                }
            }
            if failed {
                return ExitCode::FAILURE;
            }
        }
        store_msg::AdminReply::Mailboxes(list) => {
            println!(
                "{:<20} {:>8} {:>10} {:>8} {:>7} {:>7} {:>10}",
                "MAILBOX", "SPECIAL", "UIDVALID", "UIDNEXT", "TOTAL", "UNSEEN", "SIZE"
            );
            for m in list {
                println!(
                    "{:<20} {:>8} {:>10} {:>8} {:>7} {:>7} {:>10}",
                    m.name,
                    m.special_use.as_deref().unwrap_or("-"),
                    m.uidvalidity,
                    m.uidnext,
                    m.total,
                    m.unseen,
                    m.size
                );
            }
        }
        store_msg::AdminReply::Problems(problems) => {
            if problems.is_empty() {
                println!("data is consistent");
            } else {
                for p in &problems {
                    println!("{p}");
                }
                eprintln!("moxctl: {} problems found", problems.len());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn print_status(s: &Status, verbose: bool) {
    println!(
        "supervisor pid {}, up {}{}",
        s.supervisor_pid,
        duration(s.uptime_ms),
        if s.single_process {
            ", single-process mode"
        } else {
            ""
        }
    );
    println!(
        "{:<10} {:<8} {:>7} {:>6} {:>8} {:>9}  note",
        "ROLE", "STATE", "PID", "UID", "RESTARTS", "UPTIME"
    );
    for r in &s.roles {
        let state = match r.state {
            RoleState::Starting => "starting",
            RoleState::Ready => "ready",
            RoleState::Backoff => "backoff",
            RoleState::Stopping => "stopping",
            RoleState::Stopped => "stopped",
        };
        let note = match (r.state, &r.last_error) {
            (RoleState::Backoff, Some(e)) => format!("retry after {}: {e}", duration(r.backoff_ms)),
            (RoleState::Backoff, None) => format!("retry after {}", duration(r.backoff_ms)),
            (_, Some(e)) => format!("last error: {e}"),
            _ => String::new(),
        };
        println!(
            "{:<10} {:<8} {:>7} {:>6} {:>8} {:>9}  {note}",
            r.role.name(),
            state,
            r.pid.map_or("-".into(), |p| p.to_string()),
            r.uid.map_or("-".into(), |u| u.to_string()),
            r.restarts,
            r.uptime_ms.map_or("-".into(), duration),
        );
        if verbose {
            for step in &r.sandbox {
                println!("            {step}");
            }
        }
    }
    if verbose {
        for l in &s.listeners {
            println!("listener {:<12} {}", l.kind.name(), l.addr);
        }
    }
}

fn duration(ms: u64) -> String {
    match ms {
        ms if ms < 1_000 => format!("{ms}ms"),
        ms if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{}m{}s", ms / 60_000, ms / 1000 % 60),
        ms => format!("{}h{}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

fn print_queue(list: &[ipc::msg::queue::QueueEntry]) {
    if list.is_empty() {
        println!("the queue is empty");
        return;
    }
    println!(
        "{:<8} {:<23} {:>9} {:>8}  from → to",
        "id", "queued", "octets", "attempts"
    );
    for e in list {
        println!(
            "{:<8} {:<23} {:>9} {:>8}  <{}> → {}",
            e.id,
            utc(e.queued_at),
            e.size,
            e.attempts,
            e.envelope.from,
            e.envelope.recipients.join(", ")
        );
        if e.held {
            println!("         held: its submission is still delivering locally");
        }
        if let Some(err) = &e.last_error {
            println!("         last error: {err}");
        }
    }
}

fn print_tls(certs: &[ipc::msg::key::CertificateStatus]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for c in certs {
        let days = (c.not_after - now).div_euclid(86_400);
        let state = if c.not_after < now {
            "EXPIRED".to_string()
        } else if c.not_before > now {
            "NOT YET VALID".to_string()
        } else {
            format!("{days} days left")
        };
        println!("{}", c.names.join(", "));
        println!("  key         {}", c.algorithm);
        println!("  source      {}", c.source);
        println!("  subject     {}", c.subject);
        println!("  issuer      {}", c.issuer);
        println!(
            "  valid       {} to {} ({state})",
            utc(c.not_before),
            utc(c.not_after)
        );
        println!("  sha256      {}", c.fingerprint);
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the epoch (civil-from-days, proleptic Gregorian).
fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(super::utc(-1), "1969-12-31 23:59:59 UTC");
    }
}
