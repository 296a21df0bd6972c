//! SCRAM tests: the RFC 5802 and RFC 7677 examples byte for byte, channel binding rules, and
//! refusal of malformed exchanges.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::scram::Scram;
use super::tests::{Users, ctx};
use super::*;
use crate::credentials::Credentials;

const CB: &[u8] = b"\x01fixed tls-exporter bytes\xff";

/// A session whose server nonce suffix is fixed, as in the RFC examples.
fn session(mechanism: Mechanism, ctx: &SaslContext, suffix: &str) -> Session {
    let scram = Scram::new(mechanism, ctx).with_nonce_suffix(suffix);
    Session {
        mechanism,
        state: State::Scram(scram),
    }
}

/// The RFC examples' user: "user" / "pencil" with the given salts.
fn rfc_user(sha1_salt: &str, sha256_salt: &str) -> Users {
    let mut users = Users::new();
    let creds = Credentials::derive_with_salts(
        "pencil",
        Users::COST,
        &[0; 16],
        &BASE64.decode(sha1_salt).unwrap(),
        &BASE64.decode(sha256_salt).unwrap(),
    )
    .unwrap();
    users.add("user", creds);
    users
}

fn cont(s: &str) -> Step {
    Step::Continue(s.as_bytes().to_vec())
}

fn malformed(e: SaslError) -> Step {
    Step::Failure(AuthFailure::Malformed(e))
}

#[test]
fn reproduces_the_rfc_5802_example() {
    let users = rfc_user("QSXCR+Q6sek8bf92", "AAAA");
    let mut s = session(Mechanism::ScramSha1, &ctx(None), "3rfcNHYJY1ZVvWVs7j");
    let step = s.step(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL", &users);
    assert_eq!(
        step,
        cont("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
    );
    let step = s.step(
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        &users,
    );
    let want = Step::Success {
        account: "user".into(),
        additional: Some(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=".to_vec()),
    };
    assert_eq!(step, want);
}

#[test]
fn reproduces_the_rfc_7677_example() {
    let users = rfc_user("AAAA", "W22ZaJ0SNY7soEsUEjb6gQ==");
    let mut s = session(
        Mechanism::ScramSha256,
        &ctx(None),
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    );
    let step = s.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &users);
    assert_eq!(
        step,
        cont(
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        )
    );
    let step = s.step(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
          p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        &users,
    );
    let want = Step::Success {
        account: "user".into(),
        additional: Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()),
    };
    assert_eq!(step, want);
}

/// A minimal SCRAM client: returns the server's answer to the client-final message.
fn exchange(mechanism: Mechanism, ctx: &SaslContext, gs2: &str, user: &str, pw: &str) -> Step {
    exchange_with(
        &Users::with("alice", "secret"),
        mechanism,
        ctx,
        gs2,
        user,
        pw,
    )
    .1
}

/// [`exchange`] against `users`; also returns the server-first message.
pub(crate) fn exchange_with(
    users: &dyn CredentialLookup,
    mechanism: Mechanism,
    ctx: &SaslContext,
    gs2: &str,
    user: &str,
    pw: &str,
) -> (String, Step) {
    let hash = mechanism.scram_hash().unwrap();
    let bare = format!("n={user},r=clientnonce");
    let first = format!("{gs2}{bare}");
    let (mut s, step) = start(mechanism, ctx, Some(first.as_bytes()), users);
    let Step::Continue(server_first) = step else {
        return (String::new(), step);
    };
    let server_first = String::from_utf8(server_first).unwrap();
    let fields: Vec<&str> = server_first.split(',').collect();
    let nonce = fields[0].strip_prefix("r=").unwrap();
    let salt = BASE64
        .decode(fields[1].strip_prefix("s=").unwrap())
        .unwrap();
    let iterations: u32 = fields[2].strip_prefix("i=").unwrap().parse().unwrap();
    let mut cbind = gs2.as_bytes().to_vec();
    if gs2.starts_with("p=") {
        cbind.extend_from_slice(ctx.channel_binding.as_deref().unwrap_or_default());
    }
    let without_proof = format!("c={},r={nonce}", BASE64.encode(cbind));
    let auth = format!("{bare},{server_first},{without_proof}");
    let salted = hash.salted_password(pw.as_bytes(), &salt, iterations);
    let client_key = hash.hmac(&salted, &[b"Client Key"]).unwrap();
    let signature = hash
        .hmac(&hash.hash(&client_key), &[auth.as_bytes()])
        .unwrap();
    let proof = crate::crypto::xor(&client_key, &signature);
    let last = format!("{without_proof},p={}", BASE64.encode(proof));
    (server_first, s.step(last.as_bytes(), users))
}

fn succeeded(step: &Step) -> bool {
    matches!(step, Step::Success { account, additional: Some(v) } if account == "alice" && v.starts_with(b"v="))
}

#[test]
fn plus_binds_to_the_tls_exporter() {
    let with_cb = ctx(Some(CB));
    for m in [Mechanism::ScramSha1Plus, Mechanism::ScramSha256Plus] {
        let step = exchange(m, &with_cb, "p=tls-exporter,,", "alice", "secret");
        assert!(succeeded(&step), "{m}: {step:?}");
    }
    // The same exchange over a connection with other exporter bytes fails (a MITM's).
    let users = Users::with("alice", "secret");
    let mut s = session(Mechanism::ScramSha256Plus, &ctx(Some(b"other")), "sn");
    s.step(b"p=tls-exporter,,n=alice,r=cn", &users);
    let c = BASE64.encode(b"p=tls-exporter,,other-not");
    let last = format!("c={c},r=cnsn,p={}", BASE64.encode([0u8; 32]));
    assert_eq!(
        s.step(last.as_bytes(), &users),
        malformed(SaslError::ChannelBindingsDontMatch)
    );
}

#[test]
fn accepts_n_and_y_where_rfc_5802_allows_them() {
    for m in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
        assert!(succeeded(&exchange(
            m,
            &ctx(None),
            "n,,",
            "alice",
            "secret"
        )));
        assert!(succeeded(&exchange(
            m,
            &ctx(Some(CB)),
            "n,,",
            "alice",
            "secret"
        )));
        assert!(succeeded(&exchange(
            m,
            &ctx(None),
            "y,,",
            "alice",
            "secret"
        )));
        assert!(succeeded(&exchange(
            m,
            &ctx(None),
            "n,a=alice,",
            "alice",
            "secret"
        )));
    }
}

#[test]
fn refuses_channel_binding_flags_that_do_not_fit() {
    use SaslError::*;
    let cases = [
        // A client that could bind, told by someone that the server cannot: downgrade.
        (
            Mechanism::ScramSha256,
            Some(CB),
            "y,,",
            ChannelBindingDowngrade,
        ),
        (
            Mechanism::ScramSha256,
            Some(CB),
            "p=tls-exporter,,",
            ChannelBindingMismatchedFlag,
        ),
        (
            Mechanism::ScramSha256Plus,
            Some(CB),
            "n,,",
            ChannelBindingMismatchedFlag,
        ),
        (
            Mechanism::ScramSha256Plus,
            Some(CB),
            "y,,",
            ChannelBindingMismatchedFlag,
        ),
        (
            Mechanism::ScramSha256Plus,
            Some(CB),
            "p=tls-unique,,",
            UnsupportedChannelBindingType,
        ),
        (
            Mechanism::ScramSha1Plus,
            None,
            "p=tls-exporter,,",
            ChannelBindingUnavailable,
        ),
        (Mechanism::ScramSha1, None, "n,a=bob,", AuthzidMismatch),
    ];
    for (m, cb, gs2, want) in cases {
        let step = exchange(m, &ctx(cb), gs2, "alice", "secret");
        assert_eq!(step, malformed(want.clone()), "{m} {gs2}");
    }
}

#[test]
fn treats_a_wrong_password_and_an_unknown_user_alike() {
    let wrong = exchange(Mechanism::ScramSha256, &ctx(None), "n,,", "alice", "guess");
    let unknown = exchange(
        Mechanism::ScramSha256,
        &ctx(None),
        "n,,",
        "mallory",
        "guess",
    );
    assert_eq!(wrong, AuthFailure::bad("alice", Some("alice"), None).into());
    assert_eq!(unknown, AuthFailure::bad("mallory", None, None).into());
}

#[test]
fn gives_unknown_users_a_stable_plausible_server_first() {
    let users = Users::with("alice", "secret");
    let server_first = |user: &str| {
        let mut s = session(Mechanism::ScramSha256, &ctx(None), "SN");
        match s.step(format!("n,,n={user},r=CN").as_bytes(), &users) {
            Step::Continue(m) => String::from_utf8(m).unwrap(),
            other => panic!("{other:?}"),
        }
    };
    let (real, fake) = (server_first("alice"), server_first("mallory"));
    assert_eq!(fake, server_first("mallory"), "same salt on every attempt");
    assert_eq!(real.len(), fake.len());
    assert!(
        fake.starts_with("r=CNSN,s=") && fake.ends_with(",i=4096"),
        "{fake}"
    );
}

#[test]
fn refuses_malformed_final_messages() {
    use SaslError::*;
    let users = Users::with("alice", "secret");
    let proof = |n: usize| BASE64.encode(vec![0u8; n]);
    let cases = [
        (format!("c=biws,r=CNSN,p={}", proof(31)), ProofLength),
        (format!("c=biws,r=CNSN,p={}", proof(33)), ProofLength),
        (format!("c=biws,r=CNXX,p={}", proof(32)), NonceMismatch),
        (format!("c=biws,r=CN,p={}", proof(32)), NonceMismatch),
        (
            format!("c=eSws,r=CNSN,p={}", proof(32)),
            ChannelBindingsDontMatch,
        ),
        ("c=biws,r=CNSN,p=***".to_owned(), BadBase64("proof")),
        ("c=biws,r=CNSN".to_owned(), Syntax("expected c=, r= and p=")),
        (
            "c=biws,r=CNSN,p=AAAA\0".to_owned(),
            Syntax("NUL in message"),
        ),
    ];
    for (last, want) in cases {
        let mut s = session(Mechanism::ScramSha256, &ctx(None), "SN");
        assert!(matches!(
            s.step(b"n,,n=alice,r=CN", &users),
            Step::Continue(_)
        ));
        assert_eq!(s.step(last.as_bytes(), &users), malformed(want), "{last}");
        assert!(s.is_done());
    }
    // A right-length wrong proof is a wrong password.
    let mut s = session(Mechanism::ScramSha256, &ctx(None), "SN");
    s.step(b"n,,n=alice,r=CN", &users);
    let step = s.step(format!("c=biws,r=CNSN,p={}", proof(32)).as_bytes(), &users);
    assert!(matches!(
        step,
        Step::Failure(AuthFailure::BadCredentials { .. })
    ));
}

#[test]
fn refuses_malformed_first_messages() {
    let users = Users::with("alice", "secret");
    let cases: [(&[u8], SaslError); 5] = [
        (b"n,,n=alice", SaslError::Syntax("expected r=nonce")),
        (b"n,,m=x,n=alice,r=CN", SaslError::MandatoryExtension),
        (
            b"q,,n=alice,r=CN",
            SaslError::Syntax("invalid gs2 channel binding flag"),
        ),
        (b"", SaslError::Syntax("missing gs2 header")),
        (b"n,,n=al\xffce,r=CN", SaslError::NotUtf8),
    ];
    for (first, want) in cases {
        let (s, step) = start(Mechanism::ScramSha1, &ctx(None), Some(first), &users);
        assert_eq!(step, malformed(want), "{first:?}");
        assert!(s.is_done());
    }
    // Without an initial response the server sends an empty challenge first.
    let (mut s, step) = start(Mechanism::ScramSha1, &ctx(None), None, &users);
    assert_eq!(step, Step::Continue(Vec::new()));
    assert!(matches!(
        s.step(b"n,,n=alice,r=CN", &users),
        Step::Continue(_)
    ));
}

#[test]
fn uses_a_fresh_random_nonce_per_session() {
    let users = Users::with("alice", "secret");
    let nonce = || match start(
        Mechanism::ScramSha256,
        &ctx(None),
        Some(b"n,,n=alice,r=CN"),
        &users,
    )
    .1
    {
        Step::Continue(m) => String::from_utf8(m)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .to_owned(),
        other => panic!("{other:?}"),
    };
    let (a, b) = (nonce(), nonce());
    assert_ne!(a, b);
    assert_eq!(a.len(), "r=CN".len() + 32, "24 random bytes in base64");
}
