//! `moxctl`: connects to the admin socket, says hello, sends one request, prints the answer.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ipc::msg::admin::{
    AdminService, ClientHello, Request, Response, RoleState, ServerHello, Status,
};
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
    match runtime.block_on(call(&socket, &request)) {
        Ok(Response::Error(e)) => {
            eprintln!("moxctl: {e}");
            ExitCode::FAILURE
        }
        Ok(response) => {
            print(&cli.command, response);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("moxctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn request_for(command: &Command) -> Result<Request, String> {
    let role = |name: &str| Role::from_name(name).ok_or_else(|| format!("unknown role `{name}`"));
    Ok(match command {
        Command::Status { .. } => Request::Status,
        Command::Stop => Request::Stop,
        Command::Restart { role: name } => Request::Restart { role: role(name)? },
        Command::Loglevel { args } => match args.as_slice() {
            [level] => Request::LogLevel {
                role: None,
                filter: level.clone(),
            },
            [name, level] => Request::LogLevel {
                role: Some(role(name)?),
                filter: level.clone(),
            },
            _ => return Err("usage: moxctl loglevel [ROLE] LEVEL".into()),
        },
        Command::Ping => Request::Ping,
    })
}

/// Sends one request to the admin socket at `path` and waits for the answer (blocking).
pub fn request(path: &std::path::Path, request: &Request) -> Result<Response, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(call(path, request))
}

async fn call(path: &std::path::Path, request: &Request) -> Result<Response, String> {
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
    match tokio::time::timeout(timeout, client.call(request, Vec::new())).await {
        Err(_) => Err("no answer within 30 s".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok((response, _))) => Ok(response),
    }
}

fn print(command: &Command, response: Response) {
    match response {
        Response::Status(status) => {
            let verbose = matches!(command, Command::Status { verbose: true });
            print_status(&status, verbose);
        }
        Response::Done(line) => println!("{line}"),
        Response::Pings(roles) => {
            for r in roles {
                match r.control {
                    Ok(us) => println!("{:<9} control {us} µs", r.role.name()),
                    Err(e) => println!("{:<9} control FAILED: {e}", r.role.name()),
                }
                for p in r.peers {
                    match p.result {
                        Ok(us) => println!("  → {:<9} {us} µs", p.peer.name()),
                        Err(e) => println!("  → {:<9} FAILED: {e}", p.peer.name()),
                    }
                }
            }
        }
        Response::Error(e) => eprintln!("moxctl: {e}"),
    }
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
        "{:<9} {:<8} {:>7} {:>6} {:>8} {:>9}  note",
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
            "{:<9} {:<8} {:>7} {:>6} {:>8} {:>9}  {note}",
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
