//! `hiber`: the command-line edge. Argument parsing and printing only; the
//! work lives in the `hiber-*` crates.

mod control;
mod coord_addr;
mod files;
mod inet;
mod inspect;
mod launch;
mod mqueue;
mod namespace;
mod paths;
mod pipes;
mod ptys;
mod restart;
mod shm;
mod sockets;
mod sysv;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Marks this executable as the hiber CLI for the agent (see build.rs): a
/// `hiber` command run from inside a computation never joins it.
#[unsafe(no_mangle)]
#[used]
pub static HIBER_CLI: u8 = 1;

#[derive(Parser)]
#[command(
    name = "hiber",
    version,
    about = "Transparent checkpoint/restart for Linux programs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Coordinator address shared by the commands that talk to one.
#[derive(clap::Args, Clone, Debug)]
pub struct CoordArg {
    /// Coordinator HOST:PORT [default: $HIBER_COORD or 127.0.0.1:7779]
    #[arg(long = "coord", value_name = "HOST:PORT")]
    pub coord: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program under hiber (starting a coordinator if none answers).
    Launch(launch::LaunchArgs),
    /// Checkpoint every process of the computation; prints the image paths.
    Checkpoint(control::CheckpointArgs),
    /// Restart a computation from its images.
    Restart(restart::RestartArgs),
    /// Run a coordinator.
    Coordinator(control::CoordinatorArgs),
    /// Show the coordinator's state.
    Status(control::QueryArgs),
    /// List the processes of the computation.
    List(control::QueryArgs),
    /// Kill every process of the computation.
    Kill(control::QueryArgs),
    /// Stop the coordinator.
    Quit(control::QueryArgs),
    /// Describe an image file.
    Inspect(inspect::InspectArgs),
    /// Run a command outside the computation, even from inside it (its
    /// process and its children are never checkpointed).
    Nocheckpoint(launch::NocheckpointArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HIBER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Launch(a) => launch::run(a),
        Command::Checkpoint(a) => control::checkpoint(a),
        Command::Restart(a) => restart::run(a),
        Command::Coordinator(a) => control::coordinator(a),
        Command::Status(a) => control::status(a),
        Command::List(a) => control::list(a),
        Command::Kill(a) => control::kill(a),
        Command::Quit(a) => control::quit(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Nocheckpoint(a) => launch::nocheckpoint(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hiber: {e:#}");
            ExitCode::from(1)
        }
    }
}
