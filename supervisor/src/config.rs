//! The configuration file: parsed and validated once, by the supervisor only. Every error names
//! the file, the line and the key; unknown keys are errors. Roles get typed slices of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipc::Role;
use ipc::config::{ListenerKind, SeccompSetting};
use serde::Deserialize;
use toml::Spanned;

mod storage;
mod validate;
pub use storage::{Quantity, Storage};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub users: Users,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub sandbox: Sandbox,
    #[serde(default)]
    pub tls: Tls,
    #[serde(default)]
    pub smtp: Smtp,
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub dns: Dns,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub dkim: Dkim,
    #[serde(default)]
    pub debug: Debug,
}

/// keyd's bounds on DKIM signatures; every key is optional (see `ipc::config::DkimSettings`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dkim {
    /// Days a signature stays valid (`x=`), 1 to 366; 7 by default.
    pub signature_validity_days: Option<Spanned<u32>>,
}

/// Where names are looked up.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Resolver addresses (`"127.0.0.1:53"`); by default the nameservers of /etc/resolv.conf.
    #[serde(default)]
    pub resolvers: Vec<SocketAddr>,
}

/// smtpd's limits; every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    /// Largest message accepted, in octets (at most 100 MiB).
    pub max_message_size: Option<Spanned<u64>>,
    /// Recipients per message.
    pub max_recipients: Option<u32>,
    /// Errors after which a connection is closed.
    pub max_errors: Option<u32>,
    /// How long a client may be silent, in seconds.
    pub timeout_secs: Option<u64>,
    /// Connections at once from one IPv4 address or IPv6 /64.
    pub connections_per_ip: Option<u32>,
    /// Messages to other domains one account may send in 24 hours.
    pub max_messages_per_day: Option<u32>,
    /// Recipients an account never sent to before, per 24 hours.
    pub max_first_time_recipients_per_day: Option<u32>,
}

/// authd's limits on failed logins; every key is optional (see `ipc::config::AuthSettings`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub host_failures_per_minute: Option<u32>,
    pub host_failures_per_day: Option<u32>,
    pub account_failures_per_minute: Option<u32>,
    pub account_failures_per_day: Option<u32>,
    pub link_failures_per_minute: Option<u32>,
    pub link_failures_per_day: Option<u32>,
}

/// Certificates from files (`[[tls.certificate]]`). Without any, keyd serves ACME or
/// self-signed certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    #[serde(default)]
    pub certificate: Vec<Spanned<CertificateEntry>>,
}

/// One certificate chain and its key, both PEM. The supervisor opens the files (they may be
/// readable by root only) and passes them to keyd; `moxctl reload` reads them again.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateEntry {
    /// Host names to serve it for (`*.example.org` allowed); by default those in the certificate.
    #[serde(default)]
    pub names: Vec<String>,
    pub cert: Spanned<PathBuf>,
    pub key: Spanned<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// The host name of this mail server (greetings, certificates).
    pub hostname: Spanned<String>,
    /// Holds one directory per role that keeps state (keyd, authd, storaged, queued).
    pub data_dir: PathBuf,
    /// Holds the admin socket; root-owned, 0750.
    #[serde(default = "default_run_dir")]
    pub run_dir: PathBuf,
    /// Log filter for the supervisor and every role (`info`, `debug`, `smtpd=debug,info`, …).
    #[serde(default = "default_log")]
    pub log: String,
    /// How long roles may take to finish in-flight work on shutdown before they are killed.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Async worker threads per role.
    #[serde(default = "default_workers")]
    pub worker_threads: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Users besides root allowed on the admin socket. Role users are always refused.
    #[serde(default)]
    pub uids: Vec<u32>,
    /// Group owning the admin socket's directory (mode 0750), so its members can reach it.
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// Role users are named prefix + role, e.g. `_moxd_smtpd`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Create missing role users with `useradd --system` when started as root.
    #[serde(default = "yes")]
    pub create: bool,
    /// Instead of named users, run role number i (in start order) as uid and gid `uid_base + i`.
    pub uid_base: Option<Spanned<u32>>,
}

impl Default for Users {
    fn default() -> Self {
        Users {
            prefix: default_prefix(),
            create: true,
            uid_base: None,
        }
    }
}

/// The listening addresses per protocol; each list may be empty.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    #[serde(default)]
    pub smtp: Vec<SocketAddr>,
    #[serde(default)]
    pub submission: Vec<SocketAddr>,
    #[serde(default)]
    pub submissions: Vec<SocketAddr>,
    #[serde(default)]
    pub imap: Vec<SocketAddr>,
    #[serde(default)]
    pub imaps: Vec<SocketAddr>,
    #[serde(default)]
    pub http: Vec<SocketAddr>,
    #[serde(default)]
    pub https: Vec<SocketAddr>,
}

impl Listen {
    /// Every configured listener, in a stable order.
    pub fn all(&self) -> Vec<(ListenerKind, SocketAddr)> {
        ListenerKind::ALL
            .into_iter()
            .flat_map(|kind| self.of(kind).iter().map(move |a| (kind, *a)))
            .collect()
    }

    pub fn of(&self, kind: ListenerKind) -> &[SocketAddr] {
        match kind {
            ListenerKind::Smtp => &self.smtp,
            ListenerKind::Submission => &self.submission,
            ListenerKind::Submissions => &self.submissions,
            ListenerKind::Imap => &self.imap,
            ListenerKind::Imaps => &self.imaps,
            ListenerKind::Http => &self.http,
            ListenerKind::Https => &self.https,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// `kill` (default), `log` (allow and audit-log violations, to find a missing call), `off`.
    #[serde(default, with = "seccomp_setting")]
    pub seccomp: SeccompSetting,
    /// Fix owners and modes of the role directories at start.
    #[serde(default = "yes")]
    pub fix_permissions: bool,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            seccomp: SeccompSetting::Kill,
            fix_permissions: true,
        }
    }
}

/// Knobs for tests of the supervisor itself.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debug {
    /// These roles exit with an error before `Ready` (exercises the restart backoff).
    #[serde(default)]
    pub fail_at_start: Vec<Spanned<String>>,
}

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}{}", context.as_deref().map(|c| format!(" (in {c})")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The table and key at that place, e.g. `[server] hostname`.
    pub context: Option<String>,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
            context: None,
        })?;
        Config::parse(&path.display().to_string(), &text)
    }

    /// Parses and validates `text`, naming it `file` in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let located = |span: Option<std::ops::Range<usize>>, message: String| {
            locate(file, text, span.map(|s| s.start), message)
        };
        let config: Config =
            toml::from_str(text).map_err(|e| located(e.span(), e.message().into()))?;

        validate::check(&config).map_err(|bad| located(bad.span, bad.message))?;
        Ok(config)
    }

    /// The roles told to fail at start (tests).
    pub fn fails_at_start(&self, role: Role) -> bool {
        self.debug
            .fail_at_start
            .iter()
            .any(|n| n.get_ref() == role.name())
    }

    /// The directory of a role that keeps state.
    pub fn role_dir(&self, role: Role) -> Option<PathBuf> {
        match role {
            Role::Keyd | Role::Authd | Role::Storaged | Role::Queued => {
                Some(self.server.data_dir.join(role.name()))
            }
            _ => None,
        }
    }

    /// The sections of `self` that differ from `other`, apart from `[tls]` (which a reload
    /// applies): those need a restart.
    pub fn needs_restart(&self, other: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        for (name, same) in [
            ("[server]", self.server == other.server),
            ("[admin]", self.admin == other.admin),
            ("[users]", self.users == other.users),
            ("[listen]", self.listen == other.listen),
            ("[sandbox]", self.sandbox == other.sandbox),
            ("[smtp]", self.smtp == other.smtp),
            ("[auth]", self.auth == other.auth),
            ("[dns]", self.dns == other.dns),
            ("[storage]", self.storage == other.storage),
            ("[dkim]", self.dkim == other.dkim),
            ("[debug]", self.debug == other.debug),
        ] {
            if !same {
                changed.push(name);
            }
        }
        changed
    }

    /// The DNS resolvers: configured, else /etc/resolv.conf's nameservers, else 127.0.0.1:53.
    pub fn dns_resolvers(&self) -> Vec<SocketAddr> {
        if !self.dns.resolvers.is_empty() {
            return self.dns.resolvers.clone();
        }
        let from_file = std::fs::read_to_string("/etc/resolv.conf")
            .map(|text| resolv_conf_nameservers(&text))
            .unwrap_or_default();
        if from_file.is_empty() {
            vec![SocketAddr::from(([127, 0, 0, 1], 53))]
        } else {
            from_file
        }
    }

    /// smtpd's settings: the configured values over the defaults.
    pub fn smtp_settings(&self, localserve: bool) -> ipc::config::SmtpSettings {
        let d = ipc::config::SmtpSettings::default();
        ipc::config::SmtpSettings {
            max_message_size: self
                .smtp
                .max_message_size
                .as_ref()
                .map_or(d.max_message_size, |s| *s.get_ref()),
            max_recipients: self.smtp.max_recipients.unwrap_or(d.max_recipients),
            max_errors: self.smtp.max_errors.unwrap_or(d.max_errors),
            timeout_secs: self.smtp.timeout_secs.unwrap_or(d.timeout_secs),
            connections_per_ip: self.smtp.connections_per_ip.unwrap_or(d.connections_per_ip),
            localserve,
            max_messages_per_day: self
                .smtp
                .max_messages_per_day
                .unwrap_or(d.max_messages_per_day),
            max_first_time_recipients_per_day: self
                .smtp
                .max_first_time_recipients_per_day
                .unwrap_or(d.max_first_time_recipients_per_day),
        }
    }

    /// authd's limits: the configured values over the defaults.
    pub fn auth_settings(&self) -> ipc::config::AuthSettings {
        let d = ipc::config::AuthSettings::default();
        let a = &self.auth;
        ipc::config::AuthSettings {
            host_failures_per_minute: a
                .host_failures_per_minute
                .unwrap_or(d.host_failures_per_minute),
            host_failures_per_day: a.host_failures_per_day.unwrap_or(d.host_failures_per_day),
            account_failures_per_minute: a
                .account_failures_per_minute
                .unwrap_or(d.account_failures_per_minute),
            account_failures_per_day: a
                .account_failures_per_day
                .unwrap_or(d.account_failures_per_day),
            link_failures_per_minute: a
                .link_failures_per_minute
                .unwrap_or(d.link_failures_per_minute),
            link_failures_per_day: a.link_failures_per_day.unwrap_or(d.link_failures_per_day),
        }
    }

    /// storaged's and queued's guards of their file systems (validated by [`Config::parse`]).
    pub fn storage_settings(&self) -> ipc::config::StorageSettings {
        self.storage
            .settings(self.smtp_settings(false).max_message_size)
            .unwrap_or_default()
    }

    /// keyd's bounds on DKIM signatures: the configured values over the defaults.
    pub fn dkim_settings(&self) -> ipc::config::DkimSettings {
        let d = ipc::config::DkimSettings::default();
        ipc::config::DkimSettings {
            signature_validity_days: self
                .dkim
                .signature_validity_days
                .as_ref()
                .map_or(d.signature_validity_days, |v| *v.get_ref()),
        }
    }

    /// The certificate files keyd is to serve, in the order their fds are passed.
    pub fn certificate_files(&self) -> Vec<ipc::config::CertificateFiles> {
        self.tls
            .certificate
            .iter()
            .map(|c| {
                let c = c.get_ref();
                ipc::config::CertificateFiles {
                    names: c.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                    cert: c.cert.get_ref().clone(),
                    key: c.key.get_ref().clone(),
                }
            })
            .collect()
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.server.run_dir.join("admin.sock")
    }
}

/// The `nameserver` lines of a resolv.conf, as addresses on port 53.
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| {
            // A scoped IPv6 address (fe80::1%eth0) keeps only its address.
            let ip = rest.trim().split('%').next()?;
            ip.parse::<std::net::IpAddr>().ok()
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

fn check_hostname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid host name"))
    }
}

/// Turns a byte offset into line, column and the enclosing `[table] key`.
fn locate(file: &str, text: &str, offset: Option<usize>, message: String) -> ConfigError {
    let Some(offset) = offset.map(|o| o.min(text.len())) else {
        return ConfigError {
            file: file.into(),
            line: 0,
            column: 0,
            message,
            context: None,
        };
    };
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("").trim();
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.split(']').next().unwrap_or(l).to_string() + "]");
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.starts_with('['));
    let context = match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t} {k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    };
    ConfigError {
        file: file.into(),
        line,
        column,
        message,
        context,
    }
}

fn default_run_dir() -> PathBuf {
    PathBuf::from("/run/moxd")
}
fn default_log() -> String {
    "info".into()
}
fn default_grace() -> u64 {
    10
}
fn default_workers() -> u16 {
    2
}
fn default_prefix() -> String {
    "_moxd_".into()
}
fn yes() -> bool {
    true
}

mod seccomp_setting {
    use ipc::config::SeccompSetting;
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SeccompSetting, D::Error> {
        match String::deserialize(d)?.as_str() {
            "kill" => Ok(SeccompSetting::Kill),
            "log" => Ok(SeccompSetting::Log),
            "off" => Ok(SeccompSetting::Off),
            other => Err(serde::de::Error::custom(format!(
                "seccomp must be `kill`, `log` or `off`, not `{other}`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "[server]\nhostname = \"mail.example.org\"\ndata_dir = \"/var/lib/moxd\"\n";

    #[test]
    fn accepts_a_minimal_config_with_defaults() {
        let c = Config::parse("moxd.toml", MINIMAL).unwrap();
        assert_eq!(c.server.hostname.get_ref(), "mail.example.org");
        assert_eq!(c.server.run_dir, PathBuf::from("/run/moxd"));
        assert_eq!(c.users.prefix, "_moxd_");
        assert_eq!(c.sandbox.seccomp, SeccompSetting::Kill);
        assert!(c.listen.all().is_empty());
    }

    #[test]
    fn storage_settings_default_and_parse() {
        let c = Config::parse("moxd.toml", MINIMAL).unwrap();
        assert_eq!(
            c.storage_settings(),
            ipc::config::StorageSettings::default()
        );
        let text = format!("{MINIMAL}\n[storage]\nmin_free = \"2%\"\nmax_open_per_peer = \"1G\"\n");
        let s = Config::parse("moxd.toml", &text)
            .unwrap()
            .storage_settings();
        assert_eq!(s.min_free, ipc::config::MinFree::Percent(2));
        assert_eq!(s.max_open_bytes_per_peer, 1 << 30);
    }

    #[test]
    fn bad_storage_values_name_their_line_and_why() {
        let text = format!("{MINIMAL}\n[storage]\nmin_free = \"lots\"\n");
        let e = Config::parse("moxd.toml", &text).unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.starts_with("storage.min_free: `lots`"), "{e}");
        let text = format!("{MINIMAL}\n[storage]\nmax_open_per_peer = \"10M\"\n");
        let e = Config::parse("moxd.toml", &text).unwrap_err();
        assert!(e.message.contains("at least 104857600"), "{e}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = format!("{MINIMAL}\n[listen]\nsmpt = [\"127.0.0.1:25\"]\n");
        let e = Config::parse("moxd.toml", &text).unwrap_err();
        assert_eq!((e.file.as_str(), e.line, e.column), ("moxd.toml", 6, 1));
        assert!(e.message.contains("unknown field `smpt`"), "{e}");
        assert_eq!(e.context.as_deref(), Some("[listen] smpt"));
        assert!(
            e.to_string()
                .starts_with("moxd.toml:6:1: unknown field `smpt`"),
            "{e}"
        );
    }

    #[test]
    fn bad_value_names_its_key() {
        let text = format!("{MINIMAL}\n[listen]\nsmtp = [\"localhost:25\"]\n");
        let e = Config::parse("c.toml", &text).unwrap_err();
        assert_eq!(e.line, 6);
        assert_eq!(e.context.as_deref(), Some("[listen] smtp"));
    }

    #[test]
    fn rejects_bad_hostname_at_its_line() {
        let e = Config::parse(
            "c.toml",
            "[server]\nhostname = \"bad host\"\ndata_dir = \"/x\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("not a valid host name"), "{e}");
    }

    #[test]
    fn rejects_unknown_role_and_bad_seccomp_and_missing_server() {
        let e = Config::parse(
            "c.toml",
            &format!("{MINIMAL}[debug]\nfail_at_start = [\"smptd\"]\n"),
        )
        .unwrap_err();
        assert!(
            e.message.contains("unknown role `smptd`") && e.line == 5,
            "{e}"
        );
        let e = Config::parse(
            "c.toml",
            &format!("{MINIMAL}[sandbox]\nseccomp = \"maybe\"\n"),
        )
        .unwrap_err();
        assert!(e.message.contains("seccomp must be"), "{e}");
        let e = Config::parse("c.toml", "").unwrap_err();
        assert!(e.message.contains("missing field `server`"), "{e}");
    }

    #[test]
    fn reads_certificate_files_and_refuses_relative_paths() {
        let text = format!(
            "{MINIMAL}[[tls.certificate]]\ncert = \"/etc/ssl/a.pem\"\nkey = \"/etc/ssl/a.key\"\n\n[[tls.certificate]]\nnames = [\"Mail.Example.org\", \"*.example.org\"]\ncert = \"/b.pem\"\nkey = \"/b.key\"\n"
        );
        let files = Config::parse("c.toml", &text).unwrap().certificate_files();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].key, PathBuf::from("/etc/ssl/a.key"));
        assert!(files[0].names.is_empty());
        assert_eq!(files[1].names, ["mail.example.org", "*.example.org"]);
        let e = Config::parse(
            "c.toml",
            &format!("{MINIMAL}[[tls.certificate]]\ncert = \"a.pem\"\nkey = \"/a.key\"\n"),
        )
        .unwrap_err();
        assert!(e.message.contains("cert must be an absolute path"), "{e}");
        assert_eq!(e.line, 5, "{e}");
        let e = Config::parse(
            "c.toml",
            &format!("{MINIMAL}[[tls.certificate]]\nnames = [\"bad name\"]\ncert = \"/a\"\nkey = \"/b\"\n"),
        )
        .unwrap_err();
        assert!(e.message.contains("not a valid host name"), "{e}");
        let e = Config::parse(
            "c.toml",
            &format!("{MINIMAL}[[tls.certificate]]\ncert = \"/a\"\n"),
        )
        .unwrap_err();
        assert!(e.message.contains("missing field `key`"), "{e}");
    }

    #[test]
    fn auth_limits_default_and_refuse_zero() {
        let c = Config::parse("c.toml", MINIMAL).unwrap();
        assert_eq!(c.auth_settings(), ipc::config::AuthSettings::default());
        let text = format!("{MINIMAL}[auth]\nhost_failures_per_minute = 3\n");
        let c = Config::parse("c.toml", &text).unwrap();
        assert_eq!(c.auth_settings().host_failures_per_minute, 3);
        assert_eq!(c.auth_settings().host_failures_per_day, 50);
        let text = format!("{MINIMAL}[auth]\naccount_failures_per_day = 0\n");
        let e = Config::parse("c.toml", &text).unwrap_err().to_string();
        assert!(
            e.contains("auth.account_failures_per_day must be at least 1"),
            "{e}"
        );
        let text = format!("{MINIMAL}[auth]\nfailures = 3\n");
        assert!(Config::parse("c.toml", &text).is_err(), "unknown key");
    }

    #[test]
    fn dkim_validity_defaults_to_a_week_and_refuses_out_of_range_values_at_their_line() {
        let c = Config::parse("c.toml", MINIMAL).unwrap();
        assert_eq!(c.dkim_settings().signature_validity_days, 7);
        assert_eq!(c.dkim_settings().validity_secs(), 7 * 24 * 3600);
        let text = format!("{MINIMAL}[dkim]\nsignature_validity_days = 2\n");
        let c = Config::parse("c.toml", &text).unwrap();
        assert_eq!(c.dkim_settings().signature_validity_days, 2);
        for bad in ["0", "367"] {
            let text = format!("{MINIMAL}[dkim]\nsignature_validity_days = {bad}\n");
            let e = Config::parse("c.toml", &text).unwrap_err();
            assert!(e.message.contains("between 1 and 366"), "{e}");
            assert_eq!(e.line, 5, "{e}");
        }
        let text = format!("{MINIMAL}[dkim]\nvalidity = 2\n");
        assert!(Config::parse("c.toml", &text).is_err(), "unknown key");
    }

    #[test]
    fn reads_nameservers_from_resolv_conf() {
        let text = "# comment\nnameserver 192.0.2.53\nsearch example.org\nnameserver fe80::1%eth0\nnameserver bogus\n";
        assert_eq!(
            resolv_conf_nameservers(text),
            [
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
        let c = Config::parse(
            "c.toml",
            &format!("{MINIMAL}[dns]\nresolvers = [\"127.0.0.1:5353\"]\n"),
        )
        .unwrap();
        assert_eq!(
            c.dns_resolvers(),
            ["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn rejects_duplicate_listeners() {
        let text =
            format!("{MINIMAL}[listen]\nsmtp = [\"127.0.0.1:25\"]\nimap = [\"127.0.0.1:25\"]\n");
        assert!(
            Config::parse("c.toml", &text)
                .unwrap_err()
                .message
                .contains("twice")
        );
    }
}
