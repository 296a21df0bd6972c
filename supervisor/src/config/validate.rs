//! The checks `Config::parse` makes after deserializing: one function per section (or per
//! rule that spans sections), run in a fixed order so the first error reported for a file does
//! not depend on how the checks are grouped. Each says what is wrong and, where the TOML has
//! it, where.

use std::collections::HashSet;
use std::ops::Range;

use ipc::Role;
use ipc::config::DkimSettings;

use super::{Config, check_hostname};

/// A broken rule: the byte range in the file it points at (when known) and what is wrong.
#[derive(Debug)]
pub(super) struct Invalid {
    pub(super) span: Option<Range<usize>>,
    pub(super) message: String,
}

impl Invalid {
    fn at(span: Range<usize>, message: impl Into<String>) -> Invalid {
        Invalid {
            span: Some(span),
            message: message.into(),
        }
    }

    /// For rules about the file as a whole (or values `toml` keeps no span for).
    fn anywhere(message: impl Into<String>) -> Invalid {
        Invalid {
            span: None,
            message: message.into(),
        }
    }
}

type Checked = Result<(), Invalid>;

/// Every rule, in the order the errors are reported.
pub(super) fn check(config: &Config) -> Checked {
    server_hostname(config)?;
    debug(config)?;
    users(config)?;
    server_dirs(config)?;
    listen_room(config)?;
    server_runtime(config)?;
    smtp_message_size(config)?;
    limits_not_zero(config)?;
    dkim(config)?;
    tls(config)?;
    storage(config)?;
    listen_unique(config)
}

fn server_hostname(config: &Config) -> Checked {
    check_hostname(config.server.hostname.get_ref())
        .map_err(|why| Invalid::at(config.server.hostname.span(), why))
}

fn debug(config: &Config) -> Checked {
    for name in &config.debug.fail_at_start {
        if Role::from_name(name.get_ref()).is_none() {
            return Err(Invalid::at(
                name.span(),
                format!("unknown role `{}`", name.get_ref()),
            ));
        }
    }
    Ok(())
}

fn users(config: &Config) -> Checked {
    if let Some(base) = &config.users.uid_base
        && (*base.get_ref() == 0 || base.get_ref().checked_add(Role::ALL.len() as u32).is_none())
    {
        return Err(Invalid::at(
            base.span(),
            "uid_base must leave room for 8 non-zero uids",
        ));
    }
    Ok(())
}

/// Both directories absolute and apart: roles own parts of data_dir.
fn server_dirs(config: &Config) -> Checked {
    for (key, path) in [
        ("server.data_dir", &config.server.data_dir),
        ("server.run_dir", &config.server.run_dir),
    ] {
        if !path.is_absolute() {
            return Err(Invalid::anywhere(format!(
                "{key} must be an absolute path, not {}",
                path.display()
            )));
        }
    }
    if config.server.run_dir.starts_with(&config.server.data_dir)
        || config.server.data_dir.starts_with(&config.server.run_dir)
    {
        return Err(Invalid::anywhere(
            "server.run_dir and server.data_dir must not contain each other (roles own parts of data_dir)",
        ));
    }
    Ok(())
}

/// A role's listeners and peer links travel in one bootstrap message, whose descriptor count
/// is bounded.
fn listen_room(config: &Config) -> Checked {
    for role in Role::ALL {
        let listeners = config
            .listen
            .all()
            .iter()
            .filter(|(k, _)| k.role() == role)
            .count();
        let peers = role.peers().count();
        if listeners + peers > sandbox::fdpass::MAX_FDS {
            return Err(Invalid::anywhere(format!(
                "{role} would get {listeners} listeners: at most {} fit",
                sandbox::fdpass::MAX_FDS - peers
            )));
        }
    }
    Ok(())
}

fn server_runtime(config: &Config) -> Checked {
    if config.server.worker_threads == 0 || config.server.worker_threads > 64 {
        return Err(Invalid::anywhere(
            "server.worker_threads must be between 1 and 64",
        ));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&config.server.log) {
        return Err(Invalid::anywhere(format!("server.log: {e}")));
    }
    Ok(())
}

fn smtp_message_size(config: &Config) -> Checked {
    if let Some(size) = &config.smtp.max_message_size
        && (*size.get_ref() == 0 || *size.get_ref() > 100 * 1024 * 1024)
    {
        return Err(Invalid::at(
            size.span(),
            "smtp.max_message_size must be between 1 and 104857600 (100 MiB)",
        ));
    }
    Ok(())
}

/// Limits of `[smtp]` and `[auth]` where 0 would refuse everything: leave the key out instead.
fn limits_not_zero(config: &Config) -> Checked {
    let (smtp, auth) = (&config.smtp, &config.auth);
    for (key, value) in [
        ("smtp.max_recipients", smtp.max_recipients.map(u64::from)),
        ("smtp.max_errors", smtp.max_errors.map(u64::from)),
        ("smtp.timeout_secs", smtp.timeout_secs),
        (
            "smtp.connections_per_ip",
            smtp.connections_per_ip.map(u64::from),
        ),
        (
            "smtp.max_messages_per_day",
            smtp.max_messages_per_day.map(u64::from),
        ),
        (
            "smtp.max_first_time_recipients_per_day",
            smtp.max_first_time_recipients_per_day.map(u64::from),
        ),
        (
            "auth.host_failures_per_minute",
            auth.host_failures_per_minute.map(u64::from),
        ),
        (
            "auth.host_failures_per_day",
            auth.host_failures_per_day.map(u64::from),
        ),
        (
            "auth.account_failures_per_minute",
            auth.account_failures_per_minute.map(u64::from),
        ),
        (
            "auth.account_failures_per_day",
            auth.account_failures_per_day.map(u64::from),
        ),
        (
            "auth.link_failures_per_minute",
            auth.link_failures_per_minute.map(u64::from),
        ),
        (
            "auth.link_failures_per_day",
            auth.link_failures_per_day.map(u64::from),
        ),
    ] {
        if value == Some(0) {
            return Err(Invalid::anywhere(format!("{key} must be at least 1")));
        }
    }
    Ok(())
}

fn dkim(config: &Config) -> Checked {
    if let Some(days) = &config.dkim.signature_validity_days
        && !(1..=DkimSettings::MAX_VALIDITY_DAYS).contains(days.get_ref())
    {
        return Err(Invalid::at(
            days.span(),
            format!(
                "dkim.signature_validity_days must be between 1 and {}",
                DkimSettings::MAX_VALIDITY_DAYS
            ),
        ));
    }
    Ok(())
}

/// Certificate files by absolute path (the supervisor opens them from `/`), names that are
/// hostnames or `*.` wildcards.
fn tls(config: &Config) -> Checked {
    for entry in &config.tls.certificate {
        let e = entry.get_ref();
        for (what, path) in [("cert", &e.cert), ("key", &e.key)] {
            if !path.get_ref().is_absolute() {
                return Err(Invalid::at(
                    path.span(),
                    format!(
                        "tls.certificate {what} must be an absolute path, not {}",
                        path.get_ref().display()
                    ),
                ));
            }
        }
        for name in &e.names {
            if let Err(why) = check_hostname(name.strip_prefix("*.").unwrap_or(name)) {
                return Err(Invalid::at(
                    entry.span(),
                    format!("tls.certificate names: {why}"),
                ));
            }
        }
    }
    Ok(())
}

fn storage(config: &Config) -> Checked {
    config
        .storage
        .settings(config.smtp_settings(false).max_message_size)
        .map(|_| ())
        .map_err(|(span, why)| Invalid::at(span, why))
}

/// Port 0 (any free port, for tests) may repeat; a real address may not.
fn listen_unique(config: &Config) -> Checked {
    let mut seen = HashSet::new();
    for (kind, addr) in config.listen.all() {
        if addr.port() != 0 && !seen.insert(addr) {
            return Err(Invalid::anywhere(format!(
                "listen.{}: address {addr} is configured twice",
                kind.name()
            )));
        }
    }
    Ok(())
}
