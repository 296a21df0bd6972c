//! keyd administration through moxctl: DKIM keys are made in keyd, and only their public parts
//! (as the DNS records to publish) ever come out.

mod common;

use common::{Options, Tree};

#[test]
fn moxctl_generates_dkim_keys_and_lists_their_dns_records() {
    let tree = Tree::start(Options::default());
    let run = |args: &[&str]| {
        let out = tree.moxctl(args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&[
        "dkim",
        "genkey",
        "example.org",
        "--selector",
        "s1",
        "--alg",
        "ed25519",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("s1._domainkey.example.org. IN TXT ( \"v=DKIM1; k=ed25519; p="),
        "{out}"
    );
    let (ok, out, err) = run(&["dkim", "genkey", "example.org"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("mail._domainkey.example.org. IN TXT ( \"v=DKIM1; k=rsa; p=MII"),
        "{out}"
    );
    assert!(
        out.contains("\" \""),
        "an RSA record is split into 255-character strings: {out}"
    );
    let (ok, _, err) = run(&["dkim", "genkey", "example.org", "--selector", "s1"]);
    assert!(!ok && err.contains("exists already"), "{err}");
    let (ok, _, err) = run(&["dkim", "genkey", "not a domain"]);
    assert!(!ok && err.contains("not a domain name"), "{err}");
    let (ok, out, _) = run(&["dkim", "list"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        !out.contains("PRIVATE"),
        "no private key material leaves keyd"
    );
    let key = tree
        .dir
        .path()
        .join("data/keyd/dkim.example.org.s1.key.pem");
    let mode = std::fs::metadata(&key).expect("key file in keyd's directory");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
}
