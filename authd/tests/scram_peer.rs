//! authd's SCRAM server against an independent client, Python's `scramp`
//! (`tests/scram_client.py`), over a base64 line protocol on the child's stdin/stdout.
//!
//! Skips with a message when `python3` or `scramp` is missing, unless `MOXD_REQUIRE_PEERS=1`
//! (set by CI, which installs scramp), in which case a missing peer fails the test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use authd::credentials::{CredentialLookup, Credentials, Decoy, Entry};
use authd::sasl::{self, AuthFailure, Mechanism, SaslContext, SaslError, Step};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scram_client.py");
const EXPORTER: &[u8] = b"\x00\x01fixed tls-exporter bytes for the test\xfe\xff";

/// Accounts for the tests; derived once (argon2 at full cost is slow in debug builds).
struct Users {
    accounts: HashMap<String, Credentials>,
    decoy: Decoy,
}

impl CredentialLookup for Users {
    fn lookup(&self, username: &str) -> Option<Entry<'_>> {
        self.accounts
            .get_key_value(username)
            .map(|(account, credentials)| Entry {
                account,
                credentials,
            })
    }

    fn decoy(&self) -> &Decoy {
        &self.decoy
    }
}

fn users() -> &'static Users {
    static USERS: OnceLock<Users> = OnceLock::new();
    USERS.get_or_init(|| {
        let mut accounts = HashMap::new();
        for (name, password) in [
            ("alice", "pencil wonderland"),
            // Escaped as =2C and =3D on the wire; SASLprep maps U+00AD to nothing.
            ("bob,the=builder", "I\u{AD}X p\u{E4}ssw\u{F6}rd"),
        ] {
            accounts.insert(
                name.to_owned(),
                Credentials::derive(password).expect("derive credentials"),
            );
        }
        Users {
            accounts,
            decoy: Decoy::new([42; 32]).expect("derive the decoy"),
        }
    })
}

/// Whether the peer can run; panics when it must (MOXD_REQUIRE_PEERS=1) and cannot.
fn peer_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import scramp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("MOXD_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!(
                "MOXD_REQUIRE_PEERS=1 but `python3 -c 'import scramp'` fails: pip install scramp"
            );
        }
        eprintln!(
            "SKIP: python3 with scramp is not available (pip install scramp); not testing against it"
        );
    }
    ok
}

/// What each side concluded.
#[derive(Debug)]
struct Outcome {
    /// The client's first message.
    first: String,
    server: Step,
    client: String,
}

/// Runs one exchange: scramp as `user`/`password`, binding `client_cb`; the server with
/// `server_cb` as its TLS exporter.
fn run(
    mechanism: &str,
    user: &str,
    password: &str,
    client_cb: Option<&[u8]>,
    server_cb: Option<&[u8]>,
) -> Outcome {
    let mut command = Command::new("python3");
    command.args([SCRIPT, mechanism, user, password]);
    if let Some(cb) = client_cb {
        command.arg(cb.iter().map(|b| format!("{b:02x}")).collect::<String>());
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut to_client = child.stdin.take().expect("piped stdin");
    let mut from_client = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut read_line = || {
        let mut line = String::new();
        from_client
            .read_line(&mut line)
            .expect("read from the client");
        line.trim_end().to_owned()
    };
    let client_message = |line: String| -> Vec<u8> {
        let payload = line
            .strip_prefix("C ")
            .unwrap_or_else(|| panic!("expected a client message, got {line:?}"));
        BASE64.decode(payload).expect("client sends base64")
    };

    let ctx = SaslContext {
        hostname: "mail.example".into(),
        channel_binding: server_cb.map(<[u8]>::to_vec),
    };
    let first = client_message(read_line());
    let (mut session, mut step) = sasl::start(
        Mechanism::parse(mechanism).expect("known mechanism"),
        &ctx,
        Some(&first),
        users(),
    );
    let client = loop {
        let reply = match &step {
            Step::Continue(challenge) => format!("S {}", BASE64.encode(challenge)),
            Step::Success { additional, .. } => {
                format!(
                    "F {}",
                    BASE64.encode(additional.as_deref().unwrap_or_default())
                )
            }
            Step::Failure(failure) => format!("X {failure:?}"),
        };
        writeln!(to_client, "{reply}").expect("write to the client");
        let line = read_line();
        if !matches!(step, Step::Continue(_)) {
            break line;
        }
        step = session.step(&client_message(line), users());
    };
    assert!(child.wait().expect("wait for the client").success());
    Outcome {
        first: String::from_utf8(first).expect("UTF-8 client-first"),
        server: step,
        client,
    }
}

fn assert_success(outcome: &Outcome, account: &str) {
    assert!(
        matches!(&outcome.server, Step::Success { account: a, .. } if a == account),
        "{outcome:?}"
    );
    assert_eq!(outcome.client, "OK", "scramp verifies the server signature");
}

#[test]
fn scramp_authenticates_with_scram_sha1_and_sha256() {
    if !peer_available() {
        return;
    }
    for mechanism in ["SCRAM-SHA-1", "SCRAM-SHA-256"] {
        let outcome = run(mechanism, "alice", "pencil wonderland", None, None);
        assert_success(&outcome, "alice");
        // A server on TLS that a non-binding client ("n") uses without -PLUS also works.
        let outcome = run(
            mechanism,
            "alice",
            "pencil wonderland",
            None,
            Some(EXPORTER),
        );
        assert_success(&outcome, "alice");
    }
}

#[test]
fn scramp_authenticates_with_plus_and_tls_exporter_binding() {
    if !peer_available() {
        return;
    }
    for mechanism in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] {
        let outcome = run(
            mechanism,
            "alice",
            "pencil wonderland",
            Some(EXPORTER),
            Some(EXPORTER),
        );
        assert!(
            outcome.first.starts_with("p=tls-exporter,,n=alice,r="),
            "{outcome:?}"
        );
        assert_success(&outcome, "alice");
    }
}

#[test]
fn scramp_matches_escaped_usernames_and_saslprep_passwords() {
    if !peer_available() {
        return;
    }
    for password in ["I\u{AD}X p\u{E4}ssw\u{F6}rd", "IX p\u{E4}ssw\u{F6}rd"] {
        let outcome = run("SCRAM-SHA-256", "bob,the=builder", password, None, None);
        assert!(
            outcome.first.starts_with("n,,n=bob=2Cthe=3Dbuilder,"),
            "{outcome:?}"
        );
        assert_success(&outcome, "bob,the=builder");
    }
}

#[test]
fn scramp_with_a_wrong_password_fails() {
    if !peer_available() {
        return;
    }
    for mechanism in ["SCRAM-SHA-1", "SCRAM-SHA-256"] {
        let outcome = run(mechanism, "alice", "pencil", None, None);
        let want = Step::Failure(AuthFailure::BadCredentials {
            username: "alice".into(),
            account: Some("alice".into()),
            refused: None,
        });
        assert_eq!(outcome.server, want);
        assert_eq!(outcome.client, "REFUSED");
    }
    // An unknown user fails the same way, at the same step.
    let outcome = run("SCRAM-SHA-256", "mallory", "pencil", None, None);
    assert!(
        matches!(
            outcome.server,
            Step::Failure(AuthFailure::BadCredentials { .. })
        ),
        "{outcome:?}"
    );
}

#[test]
fn scramp_plus_fails_when_the_tls_exporters_differ() {
    if !peer_available() {
        return;
    }
    let outcome = run(
        "SCRAM-SHA-256-PLUS",
        "alice",
        "pencil wonderland",
        Some(b"what a man in the middle's TLS session exports"),
        Some(EXPORTER),
    );
    let want = Step::Failure(AuthFailure::Malformed(SaslError::ChannelBindingsDontMatch));
    assert_eq!(outcome.server, want);
    assert_eq!(outcome.client, "REFUSED");
}

#[test]
fn scramp_downgraded_to_non_plus_is_refused() {
    if !peer_available() {
        return;
    }
    // scramp has binding data but was offered only SCRAM-SHA-256, so it sends "y": the server,
    // which does offer -PLUS on this connection, detects the stripped mechanism list.
    let outcome = run(
        "SCRAM-SHA-256",
        "alice",
        "pencil wonderland",
        Some(EXPORTER),
        Some(EXPORTER),
    );
    let want = Step::Failure(AuthFailure::Malformed(SaslError::ChannelBindingDowngrade));
    assert!(outcome.first.starts_with("y,,"), "{outcome:?}");
    assert_eq!(outcome.server, want);
    assert_eq!(outcome.client, "REFUSED");
    // Without channel binding on the server side, "y" is fine.
    let outcome = run(
        "SCRAM-SHA-256",
        "alice",
        "pencil wonderland",
        Some(EXPORTER),
        None,
    );
    assert_success(&outcome, "alice");
}
