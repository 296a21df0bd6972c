//! `moxd`: the mail server. `serve` runs the supervisor, `localserve` a development server on
//! loopback ports without root, `role` is how the supervisor starts each role.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "moxd", version = moxd::BUILD_ID, about = "A privilege-separated mail server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (as root): supervisor plus one sandboxed process per role.
    Serve {
        /// The configuration file.
        #[arg(short, long, default_value = "/etc/moxd/moxd.toml")]
        config: PathBuf,
        /// Run every role as a task of one process (no privilege separation).
        #[arg(long)]
        single_process: bool,
    },
    /// Run a development server on 127.0.0.1, ports 1000 + the standard ones, without root.
    Localserve {
        /// Where the configuration and data live [default: ~/.local/share/moxd-localserve, or
        /// /var/lib/moxd-localserve as root].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Run every role as a task of one process.
        #[arg(long)]
        single_process: bool,
    },
    /// Check a stopped data directory or a backup: the database against the message files.
    Verifydata {
        /// storaged's directory (`<data_dir>/storaged`) or a directory `moxctl backup` wrote.
        dir: PathBuf,
    },
    /// Internal: run one role; started by the supervisor only.
    #[command(hide = true)]
    Role { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let single_process_only = cfg!(windows);
    match cli.command {
        Command::Serve {
            config,
            single_process,
        } => serve(config, single_process || single_process_only, false),
        Command::Localserve {
            dir,
            single_process,
        } => {
            let dir = dir.unwrap_or_else(supervisor::localserve::default_dir);
            match supervisor::localserve::ensure_config(&dir) {
                Ok(config) => serve(config, single_process || single_process_only, true),
                Err(e) => {
                    eprintln!("moxd localserve: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Verifydata { dir } => match storaged::verify::verify_dir(&dir) {
            Ok(problems) if problems.is_empty() => {
                println!("{}: data is consistent", dir.display());
                ExitCode::SUCCESS
            }
            Ok(problems) => {
                for p in &problems {
                    println!("{p}");
                }
                eprintln!("moxd verifydata: {} problems found", problems.len());
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("moxd verifydata: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Role { name } => {
            let specs = moxd::role_specs();
            match specs.iter().find(|s| s.role.name() == name) {
                Some(spec) => supervisor::role::main(spec, moxd::BUILD_ID),
                None => {
                    eprintln!("moxd role: unknown role `{name}`");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn serve(config: PathBuf, single_process: bool, localserve: bool) -> ExitCode {
    supervisor::serve(supervisor::Options {
        config,
        single_process,
        localserve,
        specs: moxd::role_specs(),
        build_id: moxd::BUILD_ID.to_string(),
    })
}
