//! Starts a real moxd tree from the built binary in a temporary directory and tears it down.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipc::msg::admin::{self, Request, RoleState, Status};
use moxd::admin_client::Response;

pub const MOXD: &str = env!("CARGO_BIN_EXE_moxd");
pub const MOXCTL: &str = env!("CARGO_BIN_EXE_moxctl");

/// Trees start one at a time: role users are created on first start, and `useradd` takes a
/// lock that concurrent starts would fight over.
static STARTING: Mutex<()> = Mutex::new(());

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips the calling test (returns true) unless running as root, saying why. Under
/// `MOXD_REQUIRE_PEERS=1` (CI) a test that cannot run fails instead: a skip must never pass
/// for a proof.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    assert!(
        std::env::var("MOXD_REQUIRE_PEERS").as_deref() != Ok("1"),
        "{test} needs root, and MOXD_REQUIRE_PEERS=1 forbids skipping it"
    );
    eprintln!("SKIPPED {test}: needs root (CI runs as root)");
    true
}

/// Options for one tree.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub single_process: bool,
    pub fail_at_start: Vec<&'static str>,
    pub admin_group: Option<String>,
    pub extra: String,
    /// Mount a tmpfs of this size (`"24m"`) as the data directory (root only; unmounted when
    /// the tree is dropped).
    pub data_tmpfs: Option<&'static str>,
    /// Mount a tmpfs of this size as storaged's database directory (`data/storaged/db`), so
    /// that sled's log fills while the message files still have room (root only).
    pub db_tmpfs: Option<&'static str>,
}

/// A running tree; killed (with every role) on drop.
#[derive(Debug)]
pub struct Tree {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// File systems mounted for the tree, unmounted on drop (the last first).
    pub mounted: Vec<PathBuf>,
}

impl Tree {
    /// Starts a tree with listeners on ephemeral loopback ports. Does not wait for readiness.
    pub fn spawn(opts: Options) -> Tree {
        let _serial = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("moxd-test-")
            .tempdir()
            .expect("tempdir");
        // Role users must be able to reach their directories.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let mut mounted = Vec::new();
        if let Some(size) = opts.data_tmpfs {
            let data = dir.path().join("data");
            std::fs::create_dir(&data).expect("data dir");
            mount_tmpfs(&data, size, "0755");
            mounted.push(data);
        }
        if let Some(size) = opts.db_tmpfs {
            let db = dir.path().join("data/storaged/db");
            std::fs::create_dir_all(&db).expect("database dir");
            // Open to all: the role user does not exist yet, and the directory above it
            // becomes storaged's own (0700) at start, so no one else can reach it.
            mount_tmpfs(&db, size, "0777");
            mounted.push(db);
        }
        let config = write_config(dir.path(), &opts);
        let log = dir.path().join("moxd.log");
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(MOXD);
        cmd.arg("serve").arg("-c").arg(&config);
        if opts.single_process {
            cmd.arg("--single-process");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawning moxd");
        let socket = dir.path().join("run/admin.sock");
        let mut tree = Tree {
            socket,
            dir,
            child: Some(child),
            log,
            mounted,
        };
        // Hold the lock until users and directories exist (the admin socket comes after them)
        // or the supervisor gave up.
        let start = Instant::now();
        while !tree.socket.exists() && start.elapsed() < Duration::from_secs(20) {
            if let Some(child) = tree.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tree
    }

    /// Starts a tree and waits until every role is ready.
    pub fn start(opts: Options) -> Tree {
        let tree = Tree::spawn(opts);
        tree.wait_ready(Duration::from_secs(20));
        tree
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The tree's status over the admin socket.
    pub fn status(&self) -> Result<Status, String> {
        match moxd::admin_client::request(&self.socket, &admin::GetStatus {}.into())? {
            Response::Status(s) => Ok(s),
            other => Err(format!("unexpected {other:?}")),
        }
    }

    pub fn request(&self, request: impl Into<Request>) -> Response {
        let request = request.into();
        moxd::admin_client::request(&self.socket, &request)
            .unwrap_or_else(|e| panic!("{request:?}: {e}\n{}", self.log_text()))
    }

    /// Waits until every role is ready; returns how long that took.
    pub fn wait_ready(&self, limit: Duration) -> Duration {
        let start = Instant::now();
        self.wait_for(limit, "every role ready", |s| {
            s.roles.iter().all(|r| r.state == RoleState::Ready)
        });
        start.elapsed()
    }

    /// Polls the status until `cond` holds; panics with the log after `limit`.
    pub fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        mut cond: impl FnMut(&Status) -> bool,
    ) -> Status {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < limit {
            if let Ok(s) = self.status() {
                if cond(&s) {
                    return s;
                }
                last = Some(s);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "not {what} within {limit:?}; last status {last:#?}\n{}",
            self.log_text()
        );
    }

    /// Runs `moxctl --socket … ARGS`.
    pub fn moxctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(MOXCTL)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running moxctl")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the supervisor to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("moxd did not exit within {limit:?}\n{}", self.log_text());
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- moxd log ----\n{}", self.log_text());
        }
        for path in std::mem::take(&mut self.mounted).iter().rev() {
            // Lazily: a role killed with the supervisor may not have let go of it yet.
            let _ = Command::new("umount").arg("-l").arg(path).status();
        }
    }
}

/// Mounts a tmpfs of `size` with `mode` on `path` (root only).
pub fn mount_tmpfs(path: &Path, size: &str, mode: &str) {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size={size},mode={mode}"))
        .arg("tmpfs")
        .arg(path)
        .output()
        .expect("mount");
    assert!(
        out.status.success(),
        "mounting a tmpfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_config(dir: &Path, opts: &Options) -> PathBuf {
    let path = dir.join("moxd.toml");
    let mut f = std::fs::File::create(&path).expect("config");
    let uid = nix::unistd::getuid().as_raw();
    writeln!(
        f,
        "[server]\nhostname = \"mx.test.example\"\ndata_dir = \"{}\"\nrun_dir = \"{}\"\nshutdown_grace_secs = 5\nlog = \"info\"\n",
        dir.join("data").display(),
        dir.join("run").display()
    )
    .expect("write");
    writeln!(
        f,
        "[admin]\nuids = [{}]",
        if uid == 0 {
            String::new()
        } else {
            uid.to_string()
        }
    )
    .expect("write");
    if let Some(g) = &opts.admin_group {
        writeln!(f, "group = \"{g}\"").expect("write");
    }
    writeln!(
        f,
        "\n[listen]\nsmtp = [\"127.0.0.1:0\"]\nsubmission = [\"127.0.0.1:0\"]\nsubmissions = [\"127.0.0.1:0\"]\nimap = [\"127.0.0.1:0\"]\nimaps = [\"127.0.0.1:0\"]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n"
    )
    .expect("write");
    if !opts.fail_at_start.is_empty() {
        let names: Vec<String> = opts
            .fail_at_start
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect();
        writeln!(f, "[debug]\nfail_at_start = [{}]", names.join(", ")).expect("write");
    }
    if !opts.extra.contains("[dns]") {
        // Tests talk to loopback only: a resolver that says NXDOMAIN to everything, instead
        // of the machine's resolvers.
        writeln!(f, "\n[dns]\nresolvers = [\"{}\"]", nxdomain_resolver()).expect("write");
    }
    f.write_all(opts.extra.as_bytes()).expect("write");
    path
}

/// Reads `/proc/PID/status` into (key, value) pairs.
pub fn proc_status(pid: u32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

pub fn proc_field(pid: u32, key: &str) -> Option<String> {
    proc_status(pid)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && proc_field(pid, "State").is_some_and(|s| !s.starts_with('Z'))
}

/// Connects with Python's ssl; returns "version cipher sha256(cert) first-bytes" or the error.
pub fn python_tls(addr: std::net::SocketAddr, args: &str) -> Result<String, String> {
    let script = r#"
import hashlib, socket, ssl, sys
host, port, maxver, ciphers = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if maxver == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
if ciphers != "-":
    ctx.set_ciphers(ciphers)
with socket.create_connection((host, port), timeout=15) as s:
    with ctx.wrap_socket(s, server_hostname="mx.test.example") as t:
        t.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = t.recv(100)
        cert = t.getpeercert(binary_form=True)
        print(t.version(), t.cipher()[0], hashlib.sha256(cert).hexdigest(), data[:20].decode("latin1"))
"#;
    let mut parts = args.split(' ');
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(parts.next().unwrap_or("-"))
        .arg(parts.next().unwrap_or("-"))
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn addr(tree: &Tree, kind: ipc::config::ListenerKind) -> std::net::SocketAddr {
    let status = tree.status().expect("status");
    status
        .listeners
        .iter()
        .find(|l| l.kind == kind)
        .expect("listener")
        .addr
}

/// The EC private scalar of a PKCS#8 P-256 key (ECPrivateKey: version 1, then OCTET STRING 32).
pub fn ec_scalar(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64_decode(&b64);
    let at = der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("an ECPrivateKey");
    der[at + 5..at + 5 + 32].to_vec()
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= u32::from(value(*c)) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// Whether the writable memory of `pid` contains `needle` (or it reversed).
pub fn memory_holds(pid: u32, needle: &[u8]) -> bool {
    use std::os::unix::fs::FileExt;
    let reversed: Vec<u8> = needle.iter().rev().copied().collect();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mem =
        std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem (root reads any process)");
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if !perms.starts_with("rw") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (start, end) = (
            u64::from_str_radix(a, 16).expect("addr"),
            u64::from_str_radix(b, 16).expect("addr"),
        );
        let mut buf = vec![0u8; (end - start).min(512 << 20) as usize];
        let Ok(n) = mem.read_at(&mut buf, start) else {
            continue;
        };
        let region = &buf[..n];
        if region
            .windows(needle.len())
            .any(|w| w == needle || w == reversed.as_slice())
        {
            return true;
        }
    }
    false
}

/// A DNS server on a loopback port that answers every query with NXDOMAIN (one per test
/// process, shared by its trees).
pub fn nxdomain_resolver() -> std::net::SocketAddr {
    static ADDR: std::sync::OnceLock<std::net::SocketAddr> = std::sync::OnceLock::new();
    *ADDR.get_or_init(|| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let addr = socket.local_addr().expect("addr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                // Header, then the question (name labels up to the root, type, class).
                let q = &buf[..n];
                let mut at = 12;
                while at < q.len() && q[at] != 0 {
                    at += 1 + usize::from(q[at]);
                }
                let end = at + 5;
                if n < 12 || end > n {
                    continue;
                }
                let mut reply = q[..end].to_vec();
                reply[2] = 0x80 | (q[2] & 0x01); // response, recursion desired as asked
                reply[3] = 0x83; // recursion available, NXDOMAIN
                reply[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
                let _ = socket.send_to(&reply, from);
            }
        });
        addr
    })
}

/// Just enough SMTP to see one whole reply (all its lines) per command; `<closed>` ends the
/// reply when the server closes the connection.
pub struct SmtpClient {
    r: std::io::BufReader<std::net::TcpStream>,
    w: std::net::TcpStream,
}

impl SmtpClient {
    /// Connects and checks the 220 greeting.
    pub fn connect(addr: std::net::SocketAddr) -> SmtpClient {
        let s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut c = SmtpClient::over(s).expect("clone");
        let greeting = c.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
        c
    }

    /// A client over a connected stream whose greeting is not read yet.
    pub fn over(s: std::net::TcpStream) -> std::io::Result<SmtpClient> {
        Ok(SmtpClient {
            r: std::io::BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    /// One whole reply (all its lines).
    pub fn reply(&mut self) -> String {
        use std::io::BufRead;
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                return all + "<closed>";
            }
            all += &line;
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("send");
    }

    /// Sends one command line and reads its reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}
