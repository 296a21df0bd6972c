//! The configuration slices the supervisor sends each role in its bootstrap. Roles never read
//! the configuration file; these typed slices are all they know.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::topology::Role;

/// What a role is told about itself: its own settings and no other role's, one variant per
/// role. A role's [`crate::Context`] holds only the inside of its variant
/// ([`crate::grant::Grant::Config`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleConfig {
    Keyd(KeydConfig),
    Storaged(StoragedConfig),
    Authd(AuthdConfig),
    Queued(QueuedConfig),
    Smtpd(SmtpdConfig),
    /// The smtpd crate's settings, for its submission process.
    Submission(SmtpdConfig),
    Imapd(ImapdConfig),
    Httpd(HttpdConfig),
}

/// keyd's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeydConfig {
    /// The server's host name: the name of the certificate keyd makes when none is configured.
    pub hostname: String,
    /// keyd's own directory (its keys).
    pub dir: PathBuf,
    /// The certificate files named in the configuration. The supervisor opens them and passes
    /// two fds per entry (chain, then key) after the listener and peer fds.
    pub certificates: Vec<CertificateFiles>,
    /// Bounds on DKIM signatures.
    pub dkim: DkimSettings,
}

/// storaged's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoragedConfig {
    /// storaged's own directory (database and message files).
    pub dir: PathBuf,
    pub storage: StorageSettings,
}

/// authd's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthdConfig {
    /// The server's host name (the SASL realm and challenges name it).
    pub hostname: String,
    /// authd's own directory (credentials, throttle counters).
    pub dir: PathBuf,
    /// Limits on failed logins.
    pub auth: AuthSettings,
}

/// queued's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedConfig {
    /// queued's own directory (the queue, sending counters).
    pub dir: PathBuf,
    /// The sending limits queued enforces, and the largest message (which bounds the files it
    /// hands out).
    pub smtp: SmtpSettings,
    pub storage: StorageSettings,
    /// DNS resolvers: from the configuration, or the supervisor's /etc/resolv.conf.
    pub dns: Vec<SocketAddr>,
}

/// The settings of both smtpd processes (MX and submission).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpdConfig {
    /// The server's host name, for greetings and Received fields.
    pub hostname: String,
    pub smtp: SmtpSettings,
    /// DNS resolvers: from the configuration, or the supervisor's /etc/resolv.conf.
    pub dns: Vec<SocketAddr>,
}

/// imapd's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImapdConfig {
    /// The server's host name, for greetings.
    pub hostname: String,
}

/// httpd's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpdConfig {
    /// The server's host name, for replies.
    pub hostname: String,
    /// DNS resolvers: from the configuration, or the supervisor's /etc/resolv.conf.
    pub dns: Vec<SocketAddr>,
}

impl RoleConfig {
    /// The role these settings are for.
    pub fn role(&self) -> Role {
        match self {
            RoleConfig::Keyd(_) => Role::Keyd,
            RoleConfig::Storaged(_) => Role::Storaged,
            RoleConfig::Authd(_) => Role::Authd,
            RoleConfig::Queued(_) => Role::Queued,
            RoleConfig::Smtpd(_) => Role::Smtpd,
            RoleConfig::Submission(_) => Role::Submission,
            RoleConfig::Imapd(_) => Role::Imapd,
            RoleConfig::Httpd(_) => Role::Httpd,
        }
    }

    /// The role's own directory, for the roles that have one (the sandbox opens it to them).
    pub fn dir(&self) -> Option<&Path> {
        match self {
            RoleConfig::Keyd(c) => Some(&c.dir),
            RoleConfig::Storaged(c) => Some(&c.dir),
            RoleConfig::Authd(c) => Some(&c.dir),
            RoleConfig::Queued(c) => Some(&c.dir),
            RoleConfig::Smtpd(_)
            | RoleConfig::Submission(_)
            | RoleConfig::Imapd(_)
            | RoleConfig::Httpd(_) => None,
        }
    }

    /// The DNS resolvers of the roles that look names up (the sandbox lets them reach these).
    pub fn dns(&self) -> &[SocketAddr] {
        match self {
            RoleConfig::Queued(c) => &c.dns,
            RoleConfig::Smtpd(c) | RoleConfig::Submission(c) => &c.dns,
            RoleConfig::Httpd(c) => &c.dns,
            RoleConfig::Keyd(_)
            | RoleConfig::Storaged(_)
            | RoleConfig::Authd(_)
            | RoleConfig::Imapd(_) => &[],
        }
    }

    /// The SMTP settings of the roles that have them (the sandbox bounds smtpd's files by them).
    pub fn smtp(&self) -> Option<&SmtpSettings> {
        match self {
            RoleConfig::Queued(c) => Some(&c.smtp),
            RoleConfig::Smtpd(c) | RoleConfig::Submission(c) => Some(&c.smtp),
            RoleConfig::Keyd(_)
            | RoleConfig::Storaged(_)
            | RoleConfig::Authd(_)
            | RoleConfig::Imapd(_)
            | RoleConfig::Httpd(_) => None,
        }
    }

    /// The certificate files whose descriptors travel with the bootstrap (keyd's only).
    pub fn certificates(&self) -> &[CertificateFiles] {
        match self {
            RoleConfig::Keyd(c) => &c.certificates,
            _ => &[],
        }
    }
}

/// How the role's process runs, whatever the role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessConfig {
    /// Async worker threads.
    pub worker_threads: u16,
    /// Test hook: exit with an error before `Ready` (exercises the restart backoff).
    pub fail_at_start: bool,
}

/// When storaged and queued stop taking mail, and how much one peer may have in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageSettings {
    /// Free space below which new mail is refused (`452 4.3.1`).
    pub min_free: MinFree,
    /// Bytes of open (not yet committed) deliveries one peer link may hold; past it that
    /// peer's deliveries fail temporarily while the others go on.
    pub max_open_bytes_per_peer: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            min_free: MinFree::Default,
            max_open_bytes_per_peer: DEFAULT_MAX_OPEN_BYTES_PER_PEER,
        }
    }
}

/// Default of [`StorageSettings::max_open_bytes_per_peer`]: five messages of the largest size
/// (100 MiB) at once, or a few hundred ordinary ones, from one role.
pub const DEFAULT_MAX_OPEN_BYTES_PER_PEER: u64 = 512 * 1024 * 1024;

/// The free-space floor of a file system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MinFree {
    /// 1 GiB or 5 % of the file system, whichever is smaller.
    #[default]
    Default,
    /// This many bytes (0: no floor).
    Bytes(u64),
    /// This percentage of the file system's size (0 to 50).
    Percent(u8),
}

impl MinFree {
    /// The floor in bytes for a file system of `total` bytes.
    pub fn floor(self, total: u64) -> u64 {
        let percent = |p: u64| (u128::from(total) * u128::from(p) / 100) as u64;
        match self {
            MinFree::Default => (1 << 30).min(percent(5)),
            MinFree::Bytes(b) => b,
            MinFree::Percent(p) => percent(u64::from(p)),
        }
    }
}

/// How keyd bounds the DKIM signatures it makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimSettings {
    /// Days a signature stays valid: keyd sets `x=` to `t=` plus this, so that a signature
    /// obtained by a compromised role stops verifying soon after.
    pub signature_validity_days: u32,
}

impl DkimSettings {
    /// Longest validity accepted in the configuration (a year).
    pub const MAX_VALIDITY_DAYS: u32 = 366;

    /// The validity in seconds.
    pub fn validity_secs(&self) -> u64 {
        u64::from(self.signature_validity_days) * 24 * 60 * 60
    }
}

impl Default for DkimSettings {
    fn default() -> Self {
        // Long enough for any retrying sender and slow receiver, short enough that a leaked
        // signature does not outlive the incident.
        DkimSettings {
            signature_validity_days: 7,
        }
    }
}

/// What smtpd accepts and how patient it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpSettings {
    /// Largest message accepted, octets (announced with SIZE).
    pub max_message_size: u64,
    /// Recipients per message (announced with LIMITS RCPTMAX).
    pub max_recipients: u32,
    /// Errors after which a connection is closed.
    pub max_errors: u32,
    /// How long a client may be silent, seconds.
    pub timeout_secs: u64,
    /// Connections at once from one IPv4 address or IPv6 /64.
    pub connections_per_ip: u32,
    /// localserve: every recipient is delivered to the local account `mox@localhost`.
    pub localserve: bool,
    /// Messages to other domains one account may send in 24 hours (queued enforces it).
    pub max_messages_per_day: u32,
    /// Recipients an account never sent to before, per 24 hours (queued enforces it).
    pub max_first_time_recipients_per_day: u32,
}

/// Bytes smtpd may add to a message's header block: its Received field (under 2 KiB: a HELO
/// name of at most 255 octets, the host name, the TLS summary, one address) and the
/// `X-Forged-` it puts before each forged Authentication-Results field (9 octets per field of at
/// least 24, in a header block of at most 64 KiB: under 24 KiB). Rounded up generously.
pub const ADDED_HEADER_MAX: u64 = 64 * 1024;

impl SmtpSettings {
    /// The largest file a message of `max_message_size` becomes once smtpd has added its header
    /// fields: the RLIMIT_FSIZE of smtpd's processes, and what queued counts for each file it
    /// has handed out and not yet taken back.
    pub fn message_file_limit(&self) -> u64 {
        self.max_message_size.saturating_add(ADDED_HEADER_MAX)
    }
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 1000,
            max_errors: 10,
            timeout_secs: 300,
            connections_per_ip: 20,
            localserve: false,
            // mox's defaults.
            max_messages_per_day: 1000,
            max_first_time_recipients_per_day: 200,
        }
    }
}

/// How many failed logins authd allows before it refuses attempts until the window ends.
/// Networks (IPv4 /24, IPv6 /48) get three times a host's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSettings {
    /// Failures per minute from one IPv4 address or IPv6 /64.
    pub host_failures_per_minute: u32,
    /// Failures per day from one IPv4 address or IPv6 /64.
    pub host_failures_per_day: u32,
    /// Failures per minute for one account, from anywhere.
    pub account_failures_per_minute: u32,
    /// Failures per day for one account, from anywhere.
    pub account_failures_per_day: u32,
    /// Failures per minute relayed by one network role (SMTP submission, IMAP, HTTP), whatever
    /// client addresses it reports: bounds how fast a compromised role can guess.
    pub link_failures_per_minute: u32,
    /// Failures per day relayed by one network role.
    pub link_failures_per_day: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            host_failures_per_minute: 10,
            host_failures_per_day: 50,
            account_failures_per_minute: 20,
            account_failures_per_day: 100,
            link_failures_per_minute: 100,
            link_failures_per_day: 20_000,
        }
    }
}

/// A certificate chain and its private key, as files named in the configuration. keyd never
/// opens these paths itself (they lie outside its sandbox); it reads the fds passed beside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFiles {
    /// Host names to serve it for; empty means the names in the certificate.
    pub names: Vec<String>,
    /// The PEM chain, leaf first (for messages and `moxctl tls status`).
    pub cert: PathBuf,
    /// The PEM private key (for messages).
    pub key: PathBuf,
}

/// The protocols the supervisor binds listeners for, each served by one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ListenerKind {
    /// SMTP for other mail servers (MX), port 25.
    Smtp,
    /// Message submission with STARTTLS, port 587.
    Submission,
    /// Message submission over implicit TLS, port 465.
    Submissions,
    /// IMAP with STARTTLS, port 143.
    Imap,
    /// IMAP over implicit TLS, port 993.
    Imaps,
    /// HTTP, port 80.
    Http,
    /// HTTPS, port 443.
    Https,
}

impl ListenerKind {
    pub const ALL: [ListenerKind; 7] = [
        ListenerKind::Smtp,
        ListenerKind::Submission,
        ListenerKind::Submissions,
        ListenerKind::Imap,
        ListenerKind::Imaps,
        ListenerKind::Http,
        ListenerKind::Https,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Smtp => "smtp",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
            ListenerKind::Imap => "imap",
            ListenerKind::Imaps => "imaps",
            ListenerKind::Http => "http",
            ListenerKind::Https => "https",
        }
    }

    /// The role that serves this listener.
    pub fn role(self) -> Role {
        match self {
            ListenerKind::Smtp => Role::Smtpd,
            ListenerKind::Submission | ListenerKind::Submissions => Role::Submission,
            ListenerKind::Imap | ListenerKind::Imaps => Role::Imapd,
            ListenerKind::Http | ListenerKind::Https => Role::Httpd,
        }
    }

    /// The well-known port.
    pub fn standard_port(self) -> u16 {
        match self {
            ListenerKind::Smtp => 25,
            ListenerKind::Submission => 587,
            ListenerKind::Submissions => 465,
            ListenerKind::Imap => 143,
            ListenerKind::Imaps => 993,
            ListenerKind::Http => 80,
            ListenerKind::Https => 443,
        }
    }

    /// Whether TLS starts before the protocol does.
    pub fn implicit_tls(self) -> bool {
        matches!(
            self,
            ListenerKind::Submissions | ListenerKind::Imaps | ListenerKind::Https
        )
    }
}

/// A listener as described in the bootstrap; its socket travels as an fd beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerSpec {
    pub kind: ListenerKind,
    pub addr: SocketAddr,
}

/// How a role locks itself down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    /// The user to drop to; `None` when the supervisor does not run as root.
    pub ids: Option<(u32, u32)>,
    pub seccomp: SeccompSetting,
}

/// What a seccomp violation does: kill (default), log (to find a missing call), or no filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompSetting {
    #[default]
    Kill,
    Log,
    Off,
}
