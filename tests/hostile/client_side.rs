//! The other side of a broken link: the sender's own work. When a serving role shuts a link
//! down without a PeerDown from the supervisor (it found the frames on it broken), the calling
//! role's calls on that link fail at once, and an SMTP transaction that needs the peer gets a
//! temporary failure (`451`) instead of hanging; the supervisor then restarts the sender.

use std::time::{Duration, Instant};

use ipc::Role;
use ipc::config::ListenerKind;
use ipc::frame::{Header, Kind};

use crate::common::{Options, SmtpClient, Tree, addr, skip_unless_root};
use crate::link::Hijacked;
use crate::{pid, reports, restarted_on_report};

#[test]
fn a_transaction_on_a_link_closed_under_it_fails_with_451_and_the_sender_is_restarted() {
    if skip_unless_root("a_transaction_on_a_link_closed_under_it…") {
        return;
    }
    let tree = Tree::start(Options::default());
    let smtpd = pid(&tree, Role::Smtpd);
    let storaged = pid(&tree, Role::Storaged);
    let mut smtp = SmtpClient::connect(addr(&tree, ListenerKind::Smtp));
    assert!(smtp.cmd("EHLO client.example").starts_with("250"));
    assert!(smtp.cmd("MAIL FROM:<a@example.net>").starts_with("250 "));

    // Code inside smtpd sends storaged a broken frame; storaged shuts the link down.
    let before = reports(&tree, Role::Storaged, Role::Smtpd);
    let link = Hijacked::take(Role::Smtpd, smtpd, storaged, tree.pid());
    link.send(
        &Header::encode(Kind::Request, 1, 0, &[0xff; 9]).expect("frame"),
        &[],
    );
    assert!(link.closes(), "storaged did not shut the link down");
    // The next command is waiting for smtpd when it thaws: its recipient check needs storaged.
    smtp.send(b"RCPT TO:<nobody@mx.test.example>\r\n");
    drop(link);
    let started = Instant::now();
    let reply = smtp.reply();
    assert!(
        reply.starts_with("451 "),
        "RCPT on a closed link: {reply:?}\n{}",
        tree.log_text()
    );
    assert!(started.elapsed() < Duration::from_secs(5), "slow: {reply}");
    let _ = smtp.cmd("QUIT");

    restarted_on_report(
        &tree,
        Role::Storaged,
        (Role::Smtpd, smtpd),
        before,
        "smtpd's undecodable request",
    );
    let mut smtp = SmtpClient::connect(addr(&tree, ListenerKind::Smtp));
    assert!(smtp.cmd("EHLO client.example").starts_with("250"));
    assert!(smtp.cmd("MAIL FROM:<a@example.net>").starts_with("250 "));
    // storaged answers again: what it says of the address (here: not a hosted domain) does not
    // matter, only that it is no temporary failure.
    let reply = smtp.cmd("RCPT TO:<nobody@mx.test.example>");
    assert!(
        reply.starts_with('2') || reply.starts_with('5'),
        "after the restart: {reply}"
    );
}
