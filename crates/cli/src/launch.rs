//! `hiber launch`: run a program under the agent.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use hiber_protocol::client::Connection;
use hiber_protocol::{FromCoord, Role, ToCoord};

use crate::{CoordArg, control, coord_addr, paths};

#[derive(clap::Args, Debug)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub coord: CoordArg,
    /// Directory for images [default: $HIBER_CKPT_DIR or the current directory]
    #[arg(long, value_name = "DIR")]
    pub ckpt_dir: Option<PathBuf>,
    /// Checkpoint every SECS seconds
    #[arg(long, value_name = "SECS")]
    pub interval: Option<u64>,
    /// Store memory uncompressed (page-aligned, mapped at restart)
    #[arg(long)]
    pub no_compress: bool,
    /// Don't fsync images (faster, not crash-durable; never torn)
    #[arg(long)]
    pub no_sync: bool,
    /// Save the contents of the program's open files in every checkpoint and
    /// put them back at restart (deleted-but-open files are always saved)
    #[arg(long)]
    pub ckpt_open_files: bool,
    /// Signal used to stop threads [default: 62]
    #[arg(long, value_name = "N")]
    pub ckpt_signal: Option<u32>,
    /// Load this C plugin (exporting `hiber_plugin_event`) into every process; repeatable
    #[arg(long = "with-plugin", value_name = "LIB.so")]
    pub plugins: Vec<PathBuf>,
    /// The program and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROG ARGS"
    )]
    pub command: Vec<OsString>,
}

pub fn ckpt_dir(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = arg
        .or_else(|| {
            std::env::var_os("HIBER_CKPT_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .map_or_else(std::env::current_dir, Ok)
        .context("cannot determine the checkpoint directory")?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create checkpoint directory {}", dir.display()))?;
    std::path::absolute(&dir).with_context(|| format!("checkpoint directory {}", dir.display()))
}

pub fn run(args: LaunchArgs) -> anyhow::Result<ExitCode> {
    let addr = coord_addr::resolve(&args.coord);
    let dir = ckpt_dir(args.ckpt_dir)?;
    if let Some(sig) = args.ckpt_signal
        && (!(1..=64).contains(&sig) || [9, 19, 32, 33].contains(&sig))
    {
        bail!(
            "--ckpt-signal {sig}: not a usable signal (1-64, not SIGKILL/SIGSTOP or glibc's 32/33)"
        );
    }
    control::ensure_coordinator(&addr, &dir)?;
    if let Some(secs) = args.interval {
        let (mut c, _) = Connection::connect(&addr, Role::Control)?;
        match c.request(&ToCoord::SetInterval { seconds: secs })? {
            FromCoord::Ok => {}
            FromCoord::Error(e) => bail!("coordinator refused the interval: {e}"),
            other => bail!("unexpected coordinator reply {other:?}"),
        }
    }
    let lib = paths::agent_lib()?;
    let mut preload = lib.into_os_string();
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..])
        .env("LD_PRELOAD", preload)
        .env("HIBER_LAUNCHED", "1")
        .env("HIBER_COORD", &addr)
        .env("HIBER_CKPT_DIR", &dir)
        .env("HIBER_COMPRESS", if args.no_compress { "0" } else { "1" })
        .env("HIBER_SYNC", if args.no_sync { "0" } else { "1" });
    if args.ckpt_open_files {
        cmd.env("HIBER_CKPT_OPEN_FILES", "1");
    }
    // Explicit, so a process that clears its environment and execs still
    // finds it (the agent carries HIBER_* variables across exec).
    if let Ok(cookie) = hiber_protocol::cookie::path() {
        cmd.env("HIBER_COOKIE", cookie);
    }
    if let Some(sig) = args.ckpt_signal {
        cmd.env("HIBER_CKPT_SIGNAL", sig.to_string());
    }
    if !args.plugins.is_empty() {
        let mut list = Vec::new();
        for p in &args.plugins {
            let abs = p
                .canonicalize()
                .with_context(|| format!("plugin {}", p.display()))?;
            list.push(abs.display().to_string());
        }
        cmd.env("HIBER_PLUGINS", list.join(":"));
    }
    // The program replaces us, so its exit status is ours.
    let err = cmd.exec();
    bail!("cannot run {}: {err}", args.command[0].to_string_lossy())
}

#[derive(clap::Args, Debug)]
pub struct NocheckpointArgs {
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<std::ffi::OsString>,
}

/// `hiber nocheckpoint CMD`: runs CMD without the agent (as DMTCP's
/// `dmtcp_nocheckpoint`): libhiber.so leaves LD_PRELOAD and the variables
/// that enable it go, so neither CMD nor its children join a computation.
pub fn nocheckpoint(args: NocheckpointArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..]).env_remove("HIBER_LAUNCHED");
    if let Some(old) = std::env::var_os("LD_PRELOAD") {
        let kept: Vec<&str> = old
            .to_str()
            .unwrap_or_default()
            .split([':', ' '])
            .filter(|p| !p.is_empty() && !p.ends_with("/libhiber.so") && *p != "libhiber.so")
            .collect();
        if kept.is_empty() {
            cmd.env_remove("LD_PRELOAD");
        } else {
            cmd.env("LD_PRELOAD", kept.join(":"));
        }
    }
    let err = cmd.exec();
    bail!("cannot run {}: {err}", args.command[0].to_string_lossy())
}
