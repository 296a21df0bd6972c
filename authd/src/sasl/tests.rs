//! Tests of the SASL session API: mechanism names, PLAIN, LOGIN, sequencing, and a property
//! test that arbitrary bytes into any step never panic.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::credentials::{Credentials, Decoy, Entry, HashCost};

/// An in-memory [`CredentialLookup`] with cheap hashing.
pub(crate) struct Users {
    accounts: HashMap<String, Credentials>,
    decoy: Decoy,
}

impl Users {
    /// The hashing cost of test users: cheap argon2, but RFC iterations for SCRAM vectors.
    pub(crate) const COST: HashCost = HashCost {
        scram_iterations: 4096,
        ..HashCost::FAST
    };

    pub(crate) fn new() -> Self {
        Users {
            accounts: HashMap::new(),
            decoy: Decoy::with_cost([7; 32], Users::COST).unwrap(),
        }
    }

    pub(crate) fn with(name: &str, password: &str) -> Self {
        let mut users = Users::new();
        users.add(
            name,
            Credentials::derive_with(password, Users::COST).unwrap(),
        );
        users
    }

    pub(crate) fn add(&mut self, name: &str, credentials: Credentials) {
        self.accounts.insert(name.to_owned(), credentials);
    }
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

pub(crate) fn ctx(channel_binding: Option<&[u8]>) -> SaslContext {
    SaslContext {
        hostname: "mail.example".into(),
        channel_binding: channel_binding.map(<[u8]>::to_vec),
    }
}

fn success(account: &str) -> Step {
    Step::Success {
        account: account.into(),
        additional: None,
    }
}

fn bad_credentials(username: &str, account: Option<&str>) -> Step {
    AuthFailure::bad(username, account, None).into()
}

fn malformed(e: SaslError) -> Step {
    Step::Failure(AuthFailure::Malformed(e))
}

#[test]
fn parses_and_names_every_mechanism() {
    for m in ALL {
        assert_eq!(Mechanism::parse(m.name()), Some(m));
        assert_eq!(Mechanism::parse(&m.name().to_lowercase()), Some(m));
    }
    assert_eq!(Mechanism::parse("DIGEST-MD5"), None);
    assert_eq!(Mechanism::parse("SCRAM-SHA-256-PLUS "), None);
}

#[test]
fn advertises_plus_only_with_channel_binding() {
    let names = |cb| {
        advertised(cb)
            .into_iter()
            .map(Mechanism::name)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        names(true),
        "SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN"
    );
    assert_eq!(
        names(false),
        "SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN"
    );
}

#[test]
fn plain_accepts_the_rfc_4616_examples() {
    // RFC 4616 §4: "\0tim\0tanstaaftanstaaf" and "Ursel\0Kurt\0xipj3plmq" (authzid Ursel).
    let users = Users::with("tim", "tanstaaftanstaaf");
    let (_, step) = start(
        Mechanism::Plain,
        &ctx(None),
        Some(b"\0tim\0tanstaaftanstaaf"),
        &users,
    );
    assert_eq!(step, success("tim"));
    let (_, step) = start(
        Mechanism::Plain,
        &ctx(None),
        Some(b"tim\0tim\0tanstaaftanstaaf"),
        &users,
    );
    assert_eq!(step, success("tim"));

    let users = Users::with("Kurt", "xipj3plmq");
    let (_, step) = start(
        Mechanism::Plain,
        &ctx(None),
        Some(b"Ursel\0Kurt\0xipj3plmq"),
        &users,
    );
    assert_eq!(
        step,
        malformed(SaslError::AuthzidMismatch),
        "acting as another user is refused"
    );
}

#[test]
fn plain_without_initial_response_asks_for_it() {
    let users = Users::with("tim", "tanstaaftanstaaf");
    let (mut session, step) = start(Mechanism::Plain, &ctx(None), None, &users);
    assert_eq!(step, Step::Continue(Vec::new()));
    assert_eq!(
        session.step(b"\0tim\0tanstaaftanstaaf", &users),
        success("tim")
    );
    assert!(session.is_done());
    assert_eq!(
        session.step(b"", &users),
        malformed(SaslError::ExchangeOver)
    );
}

#[test]
fn plain_treats_unknown_users_like_wrong_passwords() {
    let users = Users::with("tim", "tanstaaftanstaaf");
    let (_, wrong) = start(
        Mechanism::Plain,
        &ctx(None),
        Some(b"\0tim\0tanstaaf"),
        &users,
    );
    assert_eq!(wrong, bad_credentials("tim", Some("tim")));
    let (_, unknown) = start(
        Mechanism::Plain,
        &ctx(None),
        Some(b"\0tom\0tanstaaf"),
        &users,
    );
    assert_eq!(unknown, bad_credentials("tom", None));
}

#[test]
fn plain_refuses_malformed_messages() {
    let users = Users::with("tim", "tanstaaftanstaaf");
    let cases: [(&[u8], SaslError); 7] = [
        (
            b"",
            SaslError::Syntax("PLAIN expects authzid NUL authcid NUL password"),
        ),
        (
            b"tim",
            SaslError::Syntax("PLAIN expects authzid NUL authcid NUL password"),
        ),
        (
            b"\0tim",
            SaslError::Syntax("PLAIN expects authzid NUL authcid NUL password"),
        ),
        (
            b"\0tim\0pw\0",
            SaslError::Syntax("PLAIN expects authzid NUL authcid NUL password"),
        ),
        (b"\0\0pw", SaslError::BadUsername),
        (b"\0tim\0", SaslError::EmptyPassword),
        (b"\0t\xffm\0pw", SaslError::NotUtf8),
    ];
    for (input, want) in cases {
        let (_, step) = start(Mechanism::Plain, &ctx(None), Some(input), &users);
        assert_eq!(step, malformed(want), "{input:?}");
    }
}

#[test]
fn login_asks_for_username_then_password() {
    let users = Users::with("tim", "tanstaaftanstaaf");
    let (mut session, step) = start(Mechanism::Login, &ctx(None), None, &users);
    assert_eq!(step, Step::Continue(b"Username:".to_vec()));
    assert_eq!(
        session.step(b"tim", &users),
        Step::Continue(b"Password:".to_vec())
    );
    assert_eq!(session.step(b"tanstaaftanstaaf", &users), success("tim"));

    // With the username as initial response (SMTP "AUTH LOGIN dGlt").
    let (mut session, step) = start(Mechanism::Login, &ctx(None), Some(b"tim"), &users);
    assert_eq!(step, Step::Continue(b"Password:".to_vec()));
    assert_eq!(
        session.step(b"nope", &users),
        bad_credentials("tim", Some("tim"))
    );
    assert!(session.is_done());
}

#[test]
fn login_refuses_empty_fields() {
    let users = Users::with("tim", "tanstaaftanstaaf");
    let (_, step) = start(Mechanism::Login, &ctx(None), Some(b""), &users);
    assert_eq!(step, malformed(SaslError::BadUsername));
    let (mut session, _) = start(Mechanism::Login, &ctx(None), Some(b"tim"), &users);
    assert_eq!(
        session.step(b"", &users),
        malformed(SaslError::EmptyPassword)
    );
    let (mut session, _) = start(Mechanism::Login, &ctx(None), None, &users);
    assert_eq!(session.step(b"\xff", &users), malformed(SaslError::NotUtf8));
}

#[test]
fn cram_md5_refuses_an_initial_response() {
    let users = Users::new();
    let (session, step) = start(Mechanism::CramMd5, &ctx(None), Some(b"x"), &users);
    assert_eq!(step, malformed(SaslError::UnexpectedInitialResponse));
    assert!(session.is_done());
}

#[test]
fn refuses_overlong_messages() {
    let users = Users::with("tim", "tanstaaftanstaaf");
    let long = vec![b'a'; MAX_MESSAGE_LEN + 1];
    for mechanism in ALL {
        let (mut session, _) = start(mechanism, &ctx(Some(b"cb")), None, &users);
        assert_eq!(
            session.step(&long, &users),
            malformed(SaslError::TooLong),
            "{mechanism}"
        );
        assert!(session.is_done());
    }
}

#[test]
fn debug_output_shows_no_secrets() {
    let users = Users::with("tim", "tanstaaftanstaaf");
    let (session, _) = start(
        Mechanism::Login,
        &ctx(Some(b"exporter")),
        Some(b"tim"),
        &users,
    );
    let shown = format!("{session:?} {:?}", ctx(Some(b"exporter")));
    assert!(!shown.contains("tim"), "{shown}");
    assert!(!shown.contains("101, 120"), "{shown}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes at any point of any mechanism end in a Step, never a panic, and a
    /// session never succeeds for a user that does not exist.
    #[test]
    fn arbitrary_input_never_panics(
        mechanism in proptest::sample::select(ALL.to_vec()),
        initial in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        steps in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..96), 0..4),
        channel_binding in any::<bool>(),
    ) {
        let users = Users::new();
        let cb: &[u8] = b"exporter";
        let ctx = ctx(channel_binding.then_some(cb));
        let (mut session, mut step) = start(mechanism, &ctx, initial.as_deref(), &users);
        for input in &steps {
            step = session.step(input, &users);
        }
        let succeeded = matches!(step, Step::Success { .. });
        prop_assert!(!succeeded, "unexpected success: {:?}", step);
    }

    /// SCRAM messages shaped like real ones, with random fields, never panic either.
    #[test]
    fn scram_shaped_input_never_panics(
        plus in any::<bool>(),
        flag in "(n|y|p=[a-z-]{0,14}|[a-z])",
        authzid in "(|a=[a-z=0-9C]{0,6})",
        user in "[a-z=23CD,]{0,8}",
        nonce in "[!-~]{0,12}",
        last in "c=[A-Za-z0-9+/=]{0,12},r=[!-~]{0,12},p=[A-Za-z0-9+/=]{0,48}",
    ) {
        let users = Users::with("u", "pw");
        let mechanism = if plus { Mechanism::ScramSha256Plus } else { Mechanism::ScramSha256 };
        let ctx = ctx(Some(b"exporter"));
        let first = format!("{flag},{authzid},n={user},r={nonce}");
        let (mut session, _) = start(mechanism, &ctx, Some(first.as_bytes()), &users);
        let step = session.step(last.as_bytes(), &users);
        let succeeded = matches!(step, Step::Success { .. });
        prop_assert!(!succeeded, "unexpected success: {:?}", step);
    }
}
