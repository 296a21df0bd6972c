//! `moxctl`: administers a running moxd over its admin socket.

use std::process::ExitCode;

fn main() -> ExitCode {
    moxd::admin_client::main()
}
