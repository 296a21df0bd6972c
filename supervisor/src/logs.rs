//! Logging: roles write plain lines to stderr (a pipe the supervisor reads); the supervisor
//! stamps each line with the time and the role's name and pid. One line per event, greppable.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, reload};

use crate::role::LogControl;

/// Installs the role's logger: `LEVEL target: message`, no time (the supervisor adds it).
pub fn init_role(filter: &str) -> LogControl {
    install(filter, false)
}

/// Installs the supervisor's logger (also used by single-process mode for every role).
pub fn init_supervisor(filter: &str) -> LogControl {
    install(filter, true)
}

fn install(filter: &str, with_time: bool) -> LogControl {
    let initial = EnvFilter::builder()
        .parse(filter)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter_layer, handle) = reload::Layer::new(initial);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(true);
    let registry = tracing_subscriber::registry().with(filter_layer);
    let installed = if with_time {
        registry.with(fmt).try_init()
    } else {
        registry.with(fmt.without_time()).try_init()
    };
    if let Err(e) = installed {
        eprintln!("logging already initialised: {e}");
    }
    Arc::new(move |filter: &str| {
        let parsed = EnvFilter::builder()
            .parse(filter)
            .map_err(|e| format!("invalid log filter `{filter}`: {e}"))?;
        handle.reload(parsed).map_err(|e| e.to_string())
    })
}

/// The current time as the logger prints it.
pub fn timestamp() -> String {
    let mut s = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut s));
    s
}

/// Copies a role's output to our stderr, a line at a time, prefixed with time, role and pid.
pub async fn relay(role: ipc::Role, pid: u32, stream: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => eprintln!("{} {role}[{pid}]: {}", timestamp(), line.trim_start()),
            Ok(None) => break,
            Err(e) => {
                eprintln!("{} {role}[{pid}]: (unreadable output: {e})", timestamp());
                break;
            }
        }
    }
}
