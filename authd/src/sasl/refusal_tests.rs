//! An attempt a limit refuses must look, step by step and in every mechanism, like an attempt
//! with a wrong password: the same challenges (SCRAM: the account's real salt and iterations),
//! the end at the same step, and bad credentials even when the password is right. The refusal
//! is asked for once the username is known, with the account it resolved to.

use std::cell::RefCell;

use super::scram_tests::exchange_with;
use super::tests::{Users, ctx};
use super::*;
use crate::credentials::{Decoy, Entry};

/// A lookup that refuses every attempt for the accounts in `refused`, recording what it was
/// asked.
struct Refusing {
    users: Users,
    refused: RefCell<Vec<&'static str>>,
    asked: RefCell<Vec<(String, Option<String>)>>,
}

impl Refusing {
    fn new(refused: &[&'static str]) -> Self {
        Refusing {
            users: Users::with("tim", "tanstaaftanstaaf"),
            refused: RefCell::new(refused.to_vec()),
            asked: RefCell::default(),
        }
    }
}

impl CredentialLookup for Refusing {
    fn lookup(&self, username: &str) -> Option<Entry<'_>> {
        // "tim@example.org" names account tim, as storaged resolves addresses.
        self.users
            .lookup(username.strip_suffix("@example.org").unwrap_or(username))
    }

    fn decoy(&self) -> &Decoy {
        self.users.decoy()
    }

    fn refusal(&self, username: &str, account: Option<&str>) -> Option<String> {
        self.asked
            .borrow_mut()
            .push((username.to_owned(), account.map(str::to_owned)));
        account
            .filter(|a| self.refused.borrow().contains(a))
            .map(|a| format!("limit reached for {a}"))
    }
}

fn refused_failure(username: &str) -> Step {
    AuthFailure::bad(username, Some("tim"), Some("limit reached for tim".into())).into()
}

#[test]
fn plain_with_the_right_password_fails_as_bad_credentials_when_refused() {
    let open = Refusing::new(&[]);
    let (_, step) = start(
        Mechanism::Plain,
        &ctx(None),
        Some(b"\0tim@example.org\0tanstaaftanstaaf"),
        &open,
    );
    assert!(matches!(step, Step::Success { ref account, .. } if account == "tim"));

    let closed = Refusing::new(&["tim"]);
    let (_, step) = start(
        Mechanism::Plain,
        &ctx(None),
        Some(b"\0tim@example.org\0tanstaaftanstaaf"),
        &closed,
    );
    assert_eq!(step, refused_failure("tim@example.org"));
    // Asked once, with the account the address resolved to.
    assert_eq!(
        *closed.asked.borrow(),
        [("tim@example.org".to_string(), Some("tim".to_string()))]
    );
}

#[test]
fn login_asks_the_same_questions_and_fails_at_the_same_step_when_refused() {
    let closed = Refusing::new(&["tim"]);
    let (mut session, step) = start(Mechanism::Login, &ctx(None), None, &closed);
    assert_eq!(step, Step::Continue(b"Username:".to_vec()));
    assert_eq!(
        session.step(b"tim", &closed),
        Step::Continue(b"Password:".to_vec())
    );
    assert!(
        closed.asked.borrow().is_empty(),
        "nothing is decided before the password"
    );
    assert_eq!(
        session.step(b"tanstaaftanstaaf", &closed),
        refused_failure("tim")
    );
}

#[test]
fn cram_md5_fails_a_right_digest_as_bad_credentials_when_refused() {
    let challenge = "<1896.697170952@postoffice.reston.mci.net>";
    let right = b"tim b913a602c7eda7a495b4e6e7334d3890";
    let open = Refusing::new(&[]);
    let (cram, _) = cram::CramMd5::with_challenge(challenge.into());
    assert!(matches!(cram.step(right, &open), Step::Success { .. }));
    let closed = Refusing::new(&["tim"]);
    let (cram, _) = cram::CramMd5::with_challenge(challenge.into());
    assert_eq!(cram.step(right, &closed), refused_failure("tim"));
}

#[test]
fn scram_sends_the_real_salt_and_fails_a_right_proof_when_refused() {
    for mechanism in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
        let closed = Refusing::new(&[]);
        let (first_open, step) = exchange_with(
            &closed,
            mechanism,
            &ctx(None),
            "n,,",
            "tim",
            "tanstaaftanstaaf",
        );
        assert!(matches!(step, Step::Success { .. }), "{step:?}");
        closed.refused.borrow_mut().push("tim");
        let (first_closed, step) = exchange_with(
            &closed,
            mechanism,
            &ctx(None),
            "n,,",
            "tim",
            "tanstaaftanstaaf",
        );
        assert_eq!(step, refused_failure("tim"), "{mechanism}");
        // Salt and iterations (everything after the random nonce) are the account's own.
        let tail = |first: &str| first.split_once(',').map(|(_, t)| t.to_owned());
        assert_eq!(tail(&first_open), tail(&first_closed), "{mechanism}");
        // A malformed final message still fails as malformed, as it would unrefused.
        let (mut session, _) = start(mechanism, &ctx(None), Some(b"n,,n=tim,r=abc"), &closed);
        assert!(matches!(
            session.step(b"garbage", &closed),
            Step::Failure(AuthFailure::Malformed(_))
        ));
    }
}

#[test]
fn other_accounts_and_unknown_names_are_not_refused() {
    let closed = Refusing::new(&["tim"]);
    let (_, step) = start(
        Mechanism::Plain,
        &ctx(None),
        Some(b"\0tom\0tanstaaftanstaaf"),
        &closed,
    );
    assert_eq!(step, AuthFailure::bad("tom", None, None).into());
    assert_eq!(*closed.asked.borrow(), [("tom".to_string(), None)]);
}
