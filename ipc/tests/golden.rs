//! Golden bytes of the message catalogue: one test per variant of `ipc::msg::{setup, control,
//! admin}` and of the service messages (key, store, queue), asserting the exact
//! output of `ipc::codec::encode` and decoding it back.
//!
//! CHANGING ANY OF THESE BYTES REQUIRES BUMPING `ipc::frame::PROTOCOL_VERSION`: a role and a
//! supervisor of different builds must refuse each other at the hello rather than misread frames.
//! After a deliberate catalogue change, bump the version, update `GOLDEN_PROTOCOL_VERSION` below and
//! paste the new bytes (each failing test prints them).

use std::fmt::Debug;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use ipc::codec;
use ipc::config::{
    AuthdConfig, HttpdConfig, ImapdConfig, KeydConfig, ListenerKind, ListenerSpec, ProcessConfig,
    QueuedConfig, RoleConfig, SandboxConfig, SeccompSetting, SmtpdConfig, StoragedConfig,
};
use ipc::frame::PROTOCOL_VERSION;
use ipc::msg::admin::{self, ClientHello, RolePings, RoleState, RoleStatus, ServerHello};
use ipc::msg::control::{self, PeerPing};
use ipc::msg::setup::{Bootstrap, FromRole, Hello, Ready, ToRole};
use ipc::topology::Role;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The protocol version these bytes belong to.
const GOLDEN_PROTOCOL_VERSION: u16 = 8;

#[test]
fn golden_bytes_belong_to_the_current_protocol_version() {
    assert_eq!(
        PROTOCOL_VERSION, GOLDEN_PROTOCOL_VERSION,
        "the protocol version changed: regenerate the golden bytes and update this constant"
    );
}

// ---------------------------------------------------------------------------------------------
// setup: role ⇄ supervisor during start.

#[test]
fn setup_from_role_hello() {
    let msg = FromRole::Hello(Hello {
        role: Role::Smtpd,
        protocol: 1,
        build_id: "0.1.0-abc".into(),
        pid: 4242,
    });
    assert_golden(
        &msg,
        &[0, 4, 1, 9, 48, 46, 49, 46, 48, 45, 97, 98, 99, 251, 146, 16],
    );
}

#[test]
fn setup_from_role_ready() {
    let msg = FromRole::Ready(Ready {
        sandbox: vec!["uid 1001".into(), "seccomp kill".into()],
        warnings: vec!["landlock: unsupported".into()],
    });
    assert_golden(
        &msg,
        &[
            1, 2, 8, 117, 105, 100, 32, 49, 48, 48, 49, 12, 115, 101, 99, 99, 111, 109, 112, 32,
            107, 105, 108, 108, 1, 21, 108, 97, 110, 100, 108, 111, 99, 107, 58, 32, 117, 110, 115,
            117, 112, 112, 111, 114, 116, 101, 100,
        ],
    );
}

#[test]
fn setup_from_role_failed() {
    let msg = FromRole::Failed {
        reason: "no key dir".into(),
    };
    assert_golden(
        &msg,
        &[2, 10, 110, 111, 32, 107, 101, 121, 32, 100, 105, 114],
    );
}

#[test]
fn setup_to_role_bootstrap() {
    let msg = ToRole::Bootstrap(Box::new(Bootstrap {
        role: Role::Submission,
        sandbox: SandboxConfig {
            ids: Some((1001, 1002)),
            seccomp: SeccompSetting::Kill,
        },
        process: ProcessConfig {
            worker_threads: 2,
            fail_at_start: false,
        },
        config: RoleConfig::Submission(SmtpdConfig {
            hostname: "mail.example.org".into(),
            smtp: Default::default(),
            dns: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 53))],
        }),
        listeners: vec![
            ListenerSpec {
                kind: ListenerKind::Submission,
                addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 587)),
            },
            ListenerSpec {
                kind: ListenerKind::Submissions,
                addr: SocketAddr::from((Ipv6Addr::LOCALHOST, 465)),
            },
        ],
        peers: vec![Role::Keyd, Role::Authd, Role::Storaged, Role::Queued],
        log_filter: "info,smtpd=debug".into(),
    }));
    assert_golden(
        &msg,
        &[
            0, 5, 1, 251, 233, 3, 251, 234, 3, 0, 2, 0, 5, 16, 109, 97, 105, 108, 46, 101, 120, 97,
            109, 112, 108, 101, 46, 111, 114, 103, 252, 0, 0, 32, 3, 251, 232, 3, 10, 251, 44, 1,
            20, 0, 251, 232, 3, 200, 1, 0, 127, 0, 0, 1, 53, 2, 1, 0, 0, 0, 0, 0, 251, 75, 2, 2, 1,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 251, 209, 1, 4, 0, 2, 1, 3, 16, 105,
            110, 102, 111, 44, 115, 109, 116, 112, 100, 61, 100, 101, 98, 117, 103,
        ],
    );
}

#[test]
fn setup_to_role_bootstrap_of_keyd_without_ids() {
    let msg = ToRole::Bootstrap(Box::new(Bootstrap {
        role: Role::Keyd,
        sandbox: SandboxConfig {
            ids: None,
            seccomp: SeccompSetting::Off,
        },
        process: ProcessConfig {
            worker_threads: 1,
            fail_at_start: true,
        },
        config: RoleConfig::Keyd(KeydConfig {
            hostname: "h".into(),
            dir: "/var/lib/moxd/keyd".into(),
            certificates: vec![ipc::config::CertificateFiles {
                names: vec!["mail.example.org".into()],
                cert: "/etc/ssl/mail.pem".into(),
                key: "/etc/ssl/mail.key".into(),
            }],
            dkim: Default::default(),
        }),
        listeners: vec![],
        peers: vec![],
        log_filter: String::new(),
    }));
    assert_golden(
        &msg,
        &[
            0, 0, 0, 2, 1, 1, 0, 1, 104, 18, 47, 118, 97, 114, 47, 108, 105, 98, 47, 109, 111, 120,
            100, 47, 107, 101, 121, 100, 1, 1, 16, 109, 97, 105, 108, 46, 101, 120, 97, 109, 112,
            108, 101, 46, 111, 114, 103, 17, 47, 101, 116, 99, 47, 115, 115, 108, 47, 109, 97, 105,
            108, 46, 112, 101, 109, 17, 47, 101, 116, 99, 47, 115, 115, 108, 47, 109, 97, 105, 108,
            46, 107, 101, 121, 7, 0, 0, 0,
        ],
    );
}

#[test]
fn setup_role_config_of_every_other_role() {
    let dir = || "/d".into();
    assert_golden(
        &RoleConfig::Storaged(StoragedConfig {
            dir: dir(),
            storage: Default::default(),
        }),
        &[1, 2, 47, 100, 0, 252, 0, 0, 0, 32],
    );
    assert_golden(
        &RoleConfig::Authd(AuthdConfig {
            hostname: "h".into(),
            dir: dir(),
            auth: Default::default(),
        }),
        &[2, 1, 104, 2, 47, 100, 10, 50, 20, 100, 100, 251, 32, 78],
    );
    assert_golden(
        &RoleConfig::Queued(QueuedConfig {
            dir: dir(),
            smtp: Default::default(),
            storage: Default::default(),
            dns: Vec::new(),
        }),
        &[
            3, 2, 47, 100, 252, 0, 0, 32, 3, 251, 232, 3, 10, 251, 44, 1, 20, 0, 251, 232, 3, 200,
            0, 252, 0, 0, 0, 32, 0,
        ],
    );
    let smtpd = SmtpdConfig {
        hostname: "h".into(),
        smtp: Default::default(),
        dns: Vec::new(),
    };
    assert_golden(
        &RoleConfig::Smtpd(smtpd),
        &[
            4, 1, 104, 252, 0, 0, 32, 3, 251, 232, 3, 10, 251, 44, 1, 20, 0, 251, 232, 3, 200, 0,
        ],
    );
    assert_golden(
        &RoleConfig::Imapd(ImapdConfig {
            hostname: "h".into(),
        }),
        &[6, 1, 104],
    );
    assert_golden(
        &RoleConfig::Httpd(HttpdConfig {
            hostname: "h".into(),
            dns: Vec::new(),
        }),
        &[7, 1, 104, 0],
    );
}

#[test]
fn setup_to_role_refused() {
    let msg = ToRole::Refused {
        reason: "wrong build".into(),
    };
    assert_golden(
        &msg,
        &[1, 11, 119, 114, 111, 110, 103, 32, 98, 117, 105, 108, 100],
    );
}

// ---------------------------------------------------------------------------------------------
// control: supervisor → role.

#[test]
fn control_request_shutdown() {
    assert_golden(
        &control::Request::from(control::Shutdown { grace_ms: 5000 }),
        &[0, 251, 136, 19],
    );
}

#[test]
fn control_request_set_log_level() {
    let msg = control::Request::from(control::SetLogLevel {
        filter: "debug".into(),
    });
    assert_golden(&msg, &[1, 5, 100, 101, 98, 117, 103]);
}

#[test]
fn control_request_peer_up() {
    let msg = control::Request::from(control::PeerUp {
        peer: Role::Storaged,
    });
    assert_golden(&msg, &[2, 1]);
}

#[test]
fn control_request_peer_down() {
    let msg = control::Request::from(control::PeerDown { peer: Role::Authd });
    assert_golden(&msg, &[3, 2]);
}

#[test]
fn control_request_ping_peers() {
    assert_golden(&control::Request::from(control::PingPeers {}), &[4]);
}

#[test]
fn control_response_done() {
    assert_golden(&Ok::<(), control::Refused>(()), &[0]);
}

#[test]
fn control_response_pings() {
    let msg = Ok::<_, control::Refused>(vec![
        PeerPing {
            peer: Role::Keyd,
            result: Ok(12),
        },
        PeerPing {
            peer: Role::Authd,
            result: Err("closed".into()),
        },
    ]);
    assert_golden(
        &msg,
        &[0, 2, 0, 0, 12, 2, 1, 6, 99, 108, 111, 115, 101, 100],
    );
}

#[test]
fn control_response_refused() {
    let msg = Err::<(), control::Refused>(control::Refused("not now".into()));
    assert_golden(&msg, &[1, 7, 110, 111, 116, 32, 110, 111, 119]);
}

// control: role → supervisor, unasked.

#[test]
fn control_event_broken_link() {
    let msg = control::Event::BrokenLink {
        peer: Role::Imapd,
        reason: "bad".into(),
    };
    assert_golden(&msg, &[0, 6, 3, 98, 97, 100]);
}

// ---------------------------------------------------------------------------------------------
// admin: moxctl ⇄ supervisor.

#[test]
fn admin_client_hello() {
    let msg = ClientHello {
        protocol: 1,
        client: "moxctl 0.1.0".into(),
    };
    assert_golden(
        &msg,
        &[1, 12, 109, 111, 120, 99, 116, 108, 32, 48, 46, 49, 46, 48],
    );
}

#[test]
fn admin_server_hello_welcome() {
    let msg = ServerHello::Welcome {
        protocol: 1,
        build_id: "0.1.0-abc".into(),
    };
    assert_golden(&msg, &[0, 1, 9, 48, 46, 49, 46, 48, 45, 97, 98, 99]);
}

#[test]
fn admin_server_hello_denied() {
    let msg = ServerHello::Denied {
        reason: "uid 1000 is not an admin".into(),
    };
    assert_golden(
        &msg,
        &[
            1, 24, 117, 105, 100, 32, 49, 48, 48, 48, 32, 105, 115, 32, 110, 111, 116, 32, 97, 110,
            32, 97, 100, 109, 105, 110,
        ],
    );
}

#[test]
fn admin_request_status() {
    assert_golden(&admin::Request::from(admin::GetStatus {}), &[0]);
}

#[test]
fn admin_request_stop() {
    assert_golden(&admin::Request::from(admin::Stop {}), &[1]);
}

#[test]
fn admin_request_restart() {
    let msg = admin::Request::from(admin::Restart { role: Role::Imapd });
    assert_golden(&msg, &[2, 6]);
}

#[test]
fn admin_request_log_level_of_one_role() {
    let msg = admin::Request::from(admin::LogLevel {
        role: Some(Role::Smtpd),
        filter: "trace".into(),
    });
    assert_golden(&msg, &[3, 1, 4, 5, 116, 114, 97, 99, 101]);
}

#[test]
fn admin_request_log_level_of_all() {
    let msg = admin::Request::from(admin::LogLevel {
        role: None,
        filter: "warn".into(),
    });
    assert_golden(&msg, &[3, 0, 4, 119, 97, 114, 110]);
}

#[test]
fn admin_request_ping() {
    assert_golden(&admin::Request::from(admin::Ping {}), &[4]);
}

#[test]
fn admin_response_status() {
    let role = |role, state| RoleStatus {
        role,
        state,
        pid: None,
        uid: None,
        restarts: 0,
        uptime_ms: None,
        backoff_ms: 0,
        last_error: None,
        sandbox: vec![],
    };
    let msg = Ok::<_, admin::Error>(admin::Status {
        supervisor_pid: 100,
        uptime_ms: 70_000,
        single_process: false,
        listeners: vec![ListenerSpec {
            kind: ListenerKind::Imaps,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 993)),
        }],
        roles: vec![
            RoleStatus {
                role: Role::Keyd,
                state: RoleState::Ready,
                pid: Some(101),
                uid: Some(1001),
                restarts: 2,
                uptime_ms: Some(65_000),
                backoff_ms: 400,
                last_error: Some("exit code 1".into()),
                sandbox: vec!["seccomp kill".into()],
            },
            role(Role::Storaged, RoleState::Starting),
            role(Role::Authd, RoleState::Backoff),
            role(Role::Queued, RoleState::Stopping),
            role(Role::Smtpd, RoleState::Stopped),
        ],
    });
    assert_golden(
        &msg,
        &[
            0, 100, 252, 112, 17, 1, 0, 0, 1, 4, 0, 127, 0, 0, 1, 251, 225, 3, 5, 0, 1, 1, 101, 1,
            251, 233, 3, 2, 1, 251, 232, 253, 251, 144, 1, 1, 11, 101, 120, 105, 116, 32, 99, 111,
            100, 101, 32, 49, 1, 12, 115, 101, 99, 99, 111, 109, 112, 32, 107, 105, 108, 108, 1, 0,
            0, 0, 0, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 4, 4, 0, 0,
            0, 0, 0, 0, 0,
        ],
    );
}

#[test]
fn admin_response_done() {
    assert_golden(
        &Ok::<String, admin::Error>("restarted imapd".into()),
        &[
            0, 15, 114, 101, 115, 116, 97, 114, 116, 101, 100, 32, 105, 109, 97, 112, 100,
        ],
    );
}

#[test]
fn admin_response_pings() {
    let msg = Ok::<_, admin::Error>(vec![
        RolePings {
            role: Role::Smtpd,
            control: Ok(15),
            peers: vec![PeerPing {
                peer: Role::Keyd,
                result: Ok(20),
            }],
        },
        RolePings {
            role: Role::Httpd,
            control: Err("not running".into()),
            peers: vec![],
        },
    ]);
    assert_golden(
        &msg,
        &[
            0, 2, 4, 0, 15, 1, 0, 0, 20, 7, 1, 11, 110, 111, 116, 32, 114, 117, 110, 110, 105, 110,
            103, 0,
        ],
    );
}

#[test]
fn admin_response_error() {
    assert_golden(
        &Err::<String, admin::Error>(admin::Error("no such role".into())),
        &[
            1, 12, 110, 111, 32, 115, 117, 99, 104, 32, 114, 111, 108, 101,
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Every value of the enums that messages embed: their indices are on the wire too.

#[test]
fn every_role() {
    let expected: [(Role, &[u8]); 8] = [
        (Role::Keyd, &[0]),
        (Role::Storaged, &[1]),
        (Role::Authd, &[2]),
        (Role::Queued, &[3]),
        (Role::Smtpd, &[4]),
        (Role::Submission, &[5]),
        (Role::Imapd, &[6]),
        (Role::Httpd, &[7]),
    ];
    assert_eq!(expected.len(), Role::ALL.len());
    for (value, bytes) in expected {
        assert_golden(&value, bytes);
    }
}

#[test]
fn every_listener_kind() {
    let expected: [(ListenerKind, &[u8]); 7] = [
        (ListenerKind::Smtp, &[0]),
        (ListenerKind::Submission, &[1]),
        (ListenerKind::Submissions, &[2]),
        (ListenerKind::Imap, &[3]),
        (ListenerKind::Imaps, &[4]),
        (ListenerKind::Http, &[5]),
        (ListenerKind::Https, &[6]),
    ];
    assert_eq!(expected.len(), ListenerKind::ALL.len());
    for (value, bytes) in expected {
        assert_golden(&value, bytes);
    }
}

#[test]
fn every_seccomp_setting() {
    let expected: [(SeccompSetting, &[u8]); 3] = [
        (SeccompSetting::Kill, &[0]),
        (SeccompSetting::Log, &[1]),
        (SeccompSetting::Off, &[2]),
    ];
    for (value, bytes) in expected {
        assert_golden(&value, bytes);
    }
}

// ---------------------------------------------------------------------------------------------

#[track_caller]
fn assert_golden<T>(msg: &T, expected: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = codec::encode(msg).expect("encode");
    if expected.is_empty() && std::env::var_os("GOLDEN_PRINT").is_some() {
        println!("GOLDEN {bytes:?}");
        return;
    }
    assert!(
        bytes == expected,
        "the wire bytes of {msg:?} changed: bump ipc::frame::PROTOCOL_VERSION, then paste the \
         new bytes\n  expected: {expected:?}\n  actual:   {bytes:?}"
    );
    let decoded: T = codec::decode(expected).expect("decode");
    assert_eq!(&decoded, msg);
}

// ---------------------------------------------------------------------------------------------
// store: delivery (smtpd, queued → storaged) and administration (moxctl → storaged).

use ipc::msg::store;

#[test]
fn store_request_check_recipient() {
    assert_golden(
        &store::Request::from(store::CheckRecipient {
            address: "a@b".into(),
        }),
        &[0, 3, 97, 64, 98],
    );
}

#[test]
fn store_request_open_delivery() {
    assert_golden(&store::Request::from(store::OpenDelivery {}), &[1]);
}

#[test]
fn store_request_deliver() {
    assert_golden(
        &store::Request::from(store::Deliver {
            id: store::DeliveryId(300),
            recipients: vec!["a@b".into()],
            prepend: b"X".to_vec(),
            junk: true,
        }),
        &[2, 251, 44, 1, 1, 3, 97, 64, 98, 1, 88, 1],
    );
}

#[test]
fn store_request_abort_delivery() {
    assert_golden(
        &store::Request::from(store::AbortDelivery {
            id: store::DeliveryId(7),
        }),
        &[3, 7],
    );
}

#[test]
fn store_response_recipient() {
    assert_golden(
        &Ok::<_, store::Refused>(store::RecipientStatus::Unknown),
        &[0, 1],
    );
}

#[test]
fn store_response_delivery_opened() {
    assert_golden(&Ok::<_, store::Refused>(store::DeliveryId(1)), &[0, 1]);
}

#[test]
fn store_response_delivered() {
    assert_golden(
        &Ok::<_, store::Refused>(vec![
            store::RecipientResult::Delivered,
            store::RecipientResult::UnknownAddress,
        ]),
        &[0, 2, 0, 1],
    );
}

#[test]
fn store_response_done_and_failed() {
    assert_golden(&Ok::<(), store::Refused>(()), &[0]);
    assert_golden(
        &Err::<(), store::Refused>(store::Refused::Failed(store::Failure {
            temporary: true,
            message: "x".into(),
        })),
        &[1, 0, 1, 1, 120],
    );
}

#[test]
fn store_and_queue_response_insufficient_storage() {
    assert_golden(
        &Err::<(), store::Refused>(store::Refused::InsufficientStorage {
            message: "x".into(),
        }),
        &[1, 1, 1, 120],
    );
    assert_golden(
        &Err::<(), ipc::msg::queue::Refused>(ipc::msg::queue::Refused::InsufficientStorage {
            message: "x".into(),
        }),
        &[1, 2, 1, 120],
    );
}

#[test]
fn control_request_admin_store() {
    let op = control::RoleAdmin::Store(store::Admin::AddAccount {
        name: "bob".into(),
        address: "bob@example.org".into(),
    });
    assert_golden(
        &control::Request::from(control::Admin {
            request: op.clone(),
        }),
        &[
            5, 0, 3, 3, 98, 111, 98, 15, 98, 111, 98, 64, 101, 120, 97, 109, 112, 108, 101, 46,
            111, 114, 103,
        ],
    );
    assert_golden(
        &admin::Request::from(admin::ForRole { request: op }),
        &[
            5, 0, 3, 3, 98, 111, 98, 15, 98, 111, 98, 64, 101, 120, 97, 109, 112, 108, 101, 46,
            111, 114, 103,
        ],
    );
}

#[test]
fn store_admin_requests() {
    let golden = |op: store::Admin, bytes: &[u8]| assert_golden(&op, bytes);
    golden(
        store::Admin::AddDomain {
            domain: "example.org".into(),
            separator: Some('+'),
        },
        &[
            0, 11, 101, 120, 97, 109, 112, 108, 101, 46, 111, 114, 103, 1, 43,
        ],
    );
    golden(
        store::Admin::RemoveDomain { domain: "d".into() },
        &[1, 1, 100],
    );
    golden(store::Admin::ListDomains, &[2]);
    golden(
        store::Admin::RemoveAccount { name: "n".into() },
        &[4, 1, 110],
    );
    golden(store::Admin::ListAccounts, &[5]);
    golden(
        store::Admin::AddAddress {
            address: "@d".into(),
            account: "n".into(),
        },
        &[6, 2, 64, 100, 1, 110],
    );
    golden(
        store::Admin::RemoveAddress {
            address: "a@d".into(),
        },
        &[7, 3, 97, 64, 100],
    );
    golden(
        store::Admin::Deliver {
            recipients: vec!["a@d".into()],
        },
        &[8, 1, 3, 97, 64, 100],
    );
    golden(store::Admin::VerifyData, &[9]);
}

#[test]
fn store_admin_replies() {
    // The role's answer to the supervisor and the supervisor's to moxctl are the same bytes.
    #[track_caller]
    fn golden(r: store::AdminReply, bytes: &[u8]) {
        assert_golden(
            &Ok::<_, control::Refused>(control::AdminReply::Store(r.clone())),
            bytes,
        );
        assert_golden(&Ok::<_, admin::Error>(control::AdminReply::Store(r)), bytes);
    }
    golden(
        store::AdminReply::Done("ok".into()),
        &[0, 0, 0, 2, 111, 107],
    );
    golden(
        store::AdminReply::Domains(vec![store::DomainInfo {
            domain: "d".into(),
            separator: None,
        }]),
        &[0, 0, 1, 1, 1, 100, 0],
    );
    golden(
        store::AdminReply::Accounts(vec![store::AccountInfo {
            name: "n".into(),
            addresses: vec!["a@d".into()],
        }]),
        &[0, 0, 2, 1, 1, 110, 1, 3, 97, 64, 100],
    );
    golden(
        store::AdminReply::Delivered(vec![("a@d".into(), store::RecipientResult::Delivered)]),
        &[0, 0, 3, 1, 3, 97, 64, 100, 0],
    );
    golden(
        store::AdminReply::Problems(vec!["p".into()]),
        &[0, 0, 4, 1, 1, 112],
    );
}

// ---------------------------------------------------------------------------------------------
// auth: SASL relayed by the network roles; authd ⇄ storaged for logins and tickets.

use ipc::msg::auth;

#[test]
fn auth_requests() {
    let golden = |r: auth::Request, bytes: &[u8]| assert_golden(&r, bytes);
    golden(
        auth::Request::from(auth::Mechanisms {
            channel_binding: true,
        }),
        &[0, 1],
    );
    golden(
        auth::Request::from(auth::Start {
            mechanism: "PLAIN".into(),
            initial_response: Some(b"\0u\0p".to_vec().into()),
            channel_binding: None,
            remote: Ipv4Addr::new(192, 0, 2, 1).into(),
        }),
        &[
            1, 5, 80, 76, 65, 73, 78, 1, 4, 0, 117, 0, 112, 0, 0, 192, 0, 2, 1,
        ],
    );
    golden(
        auth::Request::from(auth::Step {
            exchange: 9,
            response: b"r".to_vec().into(),
        }),
        &[2, 9, 1, 114],
    );
    golden(auth::Request::from(auth::Abort { exchange: 9 }), &[3, 9]);
    golden(
        auth::Request::from(auth::Logout {
            ticket: auth::Ticket([7; 16]),
        }),
        &[4, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7],
    );
}

#[test]
fn auth_responses() {
    assert_golden(
        &Ok::<_, auth::Failure>(vec!["PLAIN".to_string()]),
        &[0, 1, 5, 80, 76, 65, 73, 78],
    );
    assert_golden(
        &Ok::<_, auth::Failure>(auth::Progress::Continue {
            exchange: 1,
            challenge: b"c".to_vec(),
        }),
        &[0, 0, 1, 1, 99],
    );
    assert_golden(
        &Ok::<_, auth::Failure>(auth::Progress::Success {
            account: "bob".into(),
            ticket: auth::Ticket([1; 16]),
            additional: Some(b"v=x".to_vec()),
        }),
        &[
            0, 1, 3, 98, 111, 98, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 118, 61,
            120,
        ],
    );
    assert_golden(
        &Err::<auth::Progress, auth::Failure>(auth::Failure::Credentials),
        &[1, 0],
    );
    assert_golden(
        &Err::<auth::Progress, auth::Failure>(auth::Failure::Malformed("m".into())),
        &[1, 1, 1, 109],
    );
    assert_golden(
        &Err::<auth::Progress, auth::Failure>(auth::Failure::Temporary("t".into())),
        &[1, 2, 1, 116],
    );
    assert_golden(&Ok::<(), auth::Failure>(()), &[0]);
}

#[test]
fn auth_admin() {
    assert_golden(
        &control::Request::from(control::Admin {
            request: control::RoleAdmin::Auth(auth::Admin::SetPassword {
                account: "bob".into(),
            }),
        }),
        &[5, 1, 0, 3, 98, 111, 98],
    );
    assert_golden(
        &auth::Admin::RemoveCredentials {
            account: "bob".into(),
        },
        &[1, 3, 98, 111, 98],
    );
    assert_golden(
        &Ok::<_, control::Refused>(control::AdminReply::Auth(auth::AdminReply::Done(
            "ok".into(),
        ))),
        &[0, 1, 0, 2, 111, 107],
    );
}

#[test]
fn store_login_and_tickets() {
    assert_golden(
        &store::Request::from(store::ResolveLogin {
            username: "bob@d".into(),
        }),
        &[4, 5, 98, 111, 98, 64, 100],
    );
    assert_golden(
        &store::Request::from(store::RegisterTicket {
            ticket: auth::Ticket([2; 16]),
            account: "bob".into(),
            role: Role::Imapd,
            expires: 1_800_000_000,
        }),
        &[
            5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 98, 111, 98, 6, 252, 0, 164, 147,
            214,
        ],
    );
    assert_golden(
        &store::Request::from(store::RevokeTicket {
            ticket: auth::Ticket([2; 16]),
        }),
        &[6, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
    );
    assert_golden(
        &store::Request::from(store::RevokeAccountTickets {
            account: "bob".into(),
        }),
        &[8, 3, 98, 111, 98],
    );
    assert_golden(
        &Ok::<_, store::Refused>(Some(store::AccountId::from("bob"))),
        &[0, 1, 3, 98, 111, 98],
    );
}

#[test]
fn store_identity_questions() {
    assert_golden(
        &store::Request::from(store::SessionOwnsAddress {
            ticket: auth::Ticket([2; 16]),
            address: "a@d".into(),
        }),
        &[
            9, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 97, 64, 100,
        ],
    );
    assert_golden(
        &store::Request::from(store::SubmissionAccount {
            ticket: auth::Ticket([2; 16]),
        }),
        &[10, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
    );
    assert_golden(&Ok::<_, store::Refused>(true), &[0, 1]);
}

#[test]
fn queue_enqueue() {
    use ipc::msg::queue;
    assert_golden(
        &queue::Request::from(queue::Enqueue {
            file: queue::FileId(3),
            ticket: auth::Ticket([2; 16]),
            envelope: queue::SubmittedEnvelope {
                from: "a@d".into(),
                recipients: vec!["b@e".into()],
                smtputf8: false,
                eight_bit: true,
                requiretls: false,
            },
            prepend: vec![1],
            held: true,
        }),
        &[
            1, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 97, 64, 100, 1, 3, 98, 64,
            101, 0, 1, 0, 1, 1, 1,
        ],
    );
}

#[test]
fn queue_file_and_hold_requests() {
    use ipc::msg::queue::{self, FileId, QueueId, Request};
    assert_golden(&Request::from(queue::OpenMessage {}), &[0]);
    assert_golden(&Request::from(queue::Abort { file: FileId(7) }), &[2, 7]);
    assert_golden(
        &Request::from(queue::Release { id: QueueId(300) }),
        &[3, 251, 44, 1],
    );
    assert_golden(&Request::from(queue::Discard { id: QueueId(9) }), &[4, 9]);
}

#[test]
fn queue_responses() {
    use ipc::msg::queue;
    assert_golden(&Ok::<_, queue::Refused>(queue::FileId(7)), &[0, 7]);
    assert_golden(
        &Ok::<_, queue::Refused>(queue::QueueId(300)),
        &[0, 251, 44, 1],
    );
    assert_golden(&Ok::<(), queue::Refused>(()), &[0]);
    assert_golden(
        &Err::<(), queue::Refused>(queue::Refused::Failed {
            temporary: true,
            message: "x".into(),
        }),
        &[1, 0, 1, 1, 120],
    );
    assert_golden(
        &Err::<(), queue::Refused>(queue::Refused::OverLimit {
            setting: "s".into(),
            limit: 5,
            retry_after_secs: 60,
        }),
        &[1, 1, 1, 115, 5, 60],
    );
}

#[test]
fn queue_admin_list() {
    use ipc::msg::queue;
    let op = control::RoleAdmin::Queue(queue::Admin::List);
    assert_golden(
        &control::Request::from(control::Admin {
            request: op.clone(),
        }),
        &[5, 3, 0],
    );
    assert_golden(
        &admin::Request::from(admin::ForRole { request: op }),
        &[5, 3, 0],
    );
    let entry = queue::QueueEntry {
        id: queue::QueueId(2),
        envelope: queue::SubmittedEnvelope {
            from: "a@d".into(),
            recipients: vec!["b@e".into()],
            smtputf8: true,
            eight_bit: false,
            requiretls: true,
        }
        .for_account("bob".into()),
        size: 10,
        queued_at: -1,
        attempts: 3,
        last_error: Some("e".into()),
        held: false,
    };
    assert_golden(
        &queue::AdminReply::List(vec![entry.clone()]),
        &[
            0, 1, 2, 3, 97, 64, 100, 1, 3, 98, 64, 101, 3, 98, 111, 98, 1, 0, 1, 10, 1, 3, 1, 1,
            101, 0,
        ],
    );
    assert_golden(
        &Ok::<_, control::Refused>(control::AdminReply::Queue(queue::AdminReply::List(vec![
            entry,
        ]))),
        &[
            0, 3, 0, 1, 2, 3, 97, 64, 100, 1, 3, 98, 64, 101, 3, 98, 111, 98, 1, 0, 1, 10, 1, 3, 1,
            1, 101, 0,
        ],
    );
}

#[test]
fn store_session_requests() {
    const T: auth::Ticket = auth::Ticket([3; 16]);
    #[track_caller]
    fn golden(request: impl Into<store::Request>, bytes: &[u8]) {
        assert_golden(&request.into(), bytes)
    }
    golden(
        store::ListMailboxes { ticket: T },
        &[11, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3],
    );
    golden(
        store::Select {
            ticket: T,
            name: "Inbox".into(),
        },
        &[
            16, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 5, 73, 110, 98, 111, 120,
        ],
    );
    golden(
        store::Fetch {
            ticket: T,
            mailbox: store::MailboxId(5),
            uids: store::UidSet::from([(1, u32::MAX)]),
            after: Some(store::Uid(7)),
        },
        &[
            17, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 5, 1, 1, 252, 255, 255, 255, 255,
            1, 7,
        ],
    );
    golden(
        store::StoreFlags {
            ticket: T,
            mailbox: store::MailboxId(5),
            uids: store::UidSet::from([(2, 3)]),
            change: store::FlagChange::Add,
            flags: store::Flags::SEEN,
            keywords: vec!["$Work".into()],
            unchanged_since: Some(store::ModSeq(9)),
        },
        &[
            21, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 5, 1, 2, 3, 0, 1, 1, 5, 36, 87,
            111, 114, 107, 1, 9,
        ],
    );
    golden(
        store::Search {
            ticket: T,
            mailbox: store::MailboxId(5),
            criteria: store::Criteria(vec![
                store::SearchTerm::Text("x".into()),
                store::SearchTerm::Not,
            ]),
        },
        &[
            26, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 5, 2, 11, 1, 120, 14,
        ],
    );
    golden(
        store::Watch { ticket: T },
        &[27, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3],
    );
}

#[test]
fn store_session_answers() {
    assert_golden(&Ok::<(), store::Refused>(()), &[0]);
    assert_golden(
        &Err::<(), store::Refused>(store::Refused::InvalidTicket),
        &[1, 2],
    );
    assert_golden(
        &Err::<(), store::Refused>(store::Refused::No("no".into())),
        &[1, 3, 2, 110, 111],
    );
    assert_golden(
        &Ok::<_, store::Refused>(store::Copied {
            uidvalidity: 3,
            pairs: vec![(store::Uid(1), store::Uid(2))],
        }),
        &[0, 3, 1, 1, 2],
    );
    assert_golden(
        &Ok::<_, store::Refused>(vec![store::Uid(1), store::Uid(5)]),
        &[0, 2, 1, 5],
    );
}

#[test]
fn store_events() {
    #[track_caller]
    fn event(change: store::Change, bytes: &[u8]) {
        assert_golden(
            &store::Event::Changed {
                account: "bob".into(),
                modseq: store::ModSeq(42),
                change,
            },
            bytes,
        )
    }
    event(
        store::Change::New {
            mailbox: store::MailboxId(3),
            uid: store::Uid(7),
        },
        &[0, 3, 98, 111, 98, 42, 0, 3, 7],
    );
    event(
        store::Change::Flags {
            mailbox: store::MailboxId(3),
            uid: store::Uid(7),
            flags: store::Flags::SEEN | store::Flags::DELETED,
            keywords: vec!["$Work".into()],
        },
        &[
            0, 3, 98, 111, 98, 42, 1, 3, 7, 9, 1, 5, 36, 87, 111, 114, 107,
        ],
    );
    event(
        store::Change::Expunged {
            mailbox: store::MailboxId(3),
            uids: vec![store::Uid(7), store::Uid(8)],
        },
        &[0, 3, 98, 111, 98, 42, 2, 3, 2, 7, 8],
    );
}

#[test]
fn key_service() {
    use ipc::msg::key;
    assert_golden(&key::Request::from(key::Certificates {}), &[0]);
    assert_golden(&key::Request::from(key::OpenSigner {}), &[1]);
    assert_golden(
        &key::Request::from(key::SignTls {
            key: "k".into(),
            scheme: 0x0403,
            message: vec![1, 2],
        }),
        &[2, 1, 107, 251, 3, 4, 2, 1, 2],
    );
    assert_golden(&Ok::<_, key::Refused>(vec![9]), &[0, 1, 18]);
    assert_golden(&Ok::<(), key::Refused>(()), &[0]);
    assert_golden(
        &key::Request::from(key::DkimKeys { domain: "d".into() }),
        &[4, 1, 100],
    );
    assert_golden(
        &Ok::<_, key::Refused>(vec![key::DkimKey {
            domain: "d".into(),
            selector: "s".into(),
            algorithm: "rsa".into(),
            name: "n".into(),
            record: "r".into(),
        }]),
        &[0, 1, 1, 100, 1, 115, 3, 114, 115, 97, 1, 110, 1, 114],
    );
    assert_golden(
        &Err::<(), key::Refused>(key::Refused("no".into())),
        &[1, 2, 110, 111],
    );
    assert_golden(
        &Ok::<_, key::Refused>(vec![key::Certificate {
            names: vec!["mx".into()],
            chain: vec![vec![0x30]],
            key: "k".into(),
            public_key: vec![0x30],
            schemes: vec![0x0403],
            algorithm: "ecdsa".into(),
        }]),
        &[
            0, 1, 1, 2, 109, 120, 1, 1, 48, 1, 107, 1, 48, 1, 251, 3, 4, 5, 101, 99, 100, 115, 97,
        ],
    );
    assert_golden(&key::Event::CertificatesChanged, &[0]);
    assert_golden(
        &key::Request::from(key::SignDkim {
            request: key::DkimRequest {
                ticket: Some(ipc::msg::auth::Ticket([2; 16])),
                domain: "d".into(),
                selector: "s".into(),
                signed: vec!["from".into()],
                headers: vec![1, 2],
                body_hash: vec![3],
            },
        }),
        &[
            3, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 100, 1, 115, 1, 4, 102, 114,
            111, 109, 2, 1, 2, 1, 3,
        ],
    );
    assert_golden(
        &key::Request::from(key::SignDkim {
            request: key::DkimRequest {
                ticket: None,
                domain: "d".into(),
                selector: "s".into(),
                signed: Vec::new(),
                headers: Vec::new(),
                body_hash: Vec::new(),
            },
        }),
        &[3, 0, 1, 100, 1, 115, 0, 0, 0],
    );
    assert_golden(
        &Ok::<String, key::Refused>("D: x".into()),
        &[0, 4, 68, 58, 32, 120],
    );
}

#[test]
fn key_admin() {
    use ipc::msg::key;
    assert_golden(
        &admin::Request::from(admin::ForRole {
            request: control::RoleAdmin::Key(key::Admin::DkimGenKey {
                domain: "example.org".into(),
                selector: "s1".into(),
                algorithm: "ed25519".into(),
            }),
        }),
        &[
            5, 2, 0, 11, 101, 120, 97, 109, 112, 108, 101, 46, 111, 114, 103, 2, 115, 49, 7, 101,
            100, 50, 53, 53, 49, 57,
        ],
    );
    assert_golden(
        &control::Request::from(control::Admin {
            request: control::RoleAdmin::Key(key::Admin::DkimList),
        }),
        &[5, 2, 1],
    );
    assert_golden(
        &Ok::<_, admin::Error>(control::AdminReply::Key(key::AdminReply::Dkim(vec![
            key::DkimKey {
                domain: "d".into(),
                selector: "s".into(),
                algorithm: "rsa".into(),
                name: "s._domainkey.d".into(),
                record: "v=DKIM1".into(),
            },
        ]))),
        &[
            0, 2, 0, 1, 1, 100, 1, 115, 3, 114, 115, 97, 14, 115, 46, 95, 100, 111, 109, 97, 105,
            110, 107, 101, 121, 46, 100, 7, 118, 61, 68, 75, 73, 77, 49,
        ],
    );
    assert_golden(
        &control::Request::from(control::Admin {
            request: control::RoleAdmin::Key(key::Admin::LoadCertificates(vec![
                ipc::config::CertificateFiles {
                    names: vec!["m".into()],
                    cert: "/c".into(),
                    key: "/k".into(),
                },
            ])),
        }),
        &[5, 2, 2, 1, 1, 1, 109, 2, 47, 99, 2, 47, 107],
    );
    assert_golden(
        &control::Request::from(control::Admin {
            request: control::RoleAdmin::Key(key::Admin::TlsStatus),
        }),
        &[5, 2, 3],
    );
    assert_golden(
        &control::AdminReply::Key(key::AdminReply::Tls(vec![key::CertificateStatus {
            names: vec!["m".into()],
            algorithm: "ecdsa".into(),
            source: "/c".into(),
            subject: "CN=m".into(),
            issuer: "CN=i".into(),
            not_before: 1,
            not_after: -1,
            fingerprint: "AB".into(),
        }])),
        &[
            2, 1, 1, 1, 1, 109, 5, 101, 99, 100, 115, 97, 2, 47, 99, 4, 67, 78, 61, 109, 4, 67, 78,
            61, 105, 2, 1, 2, 65, 66,
        ],
    );
}
