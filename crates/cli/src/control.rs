//! Commands that talk to a coordinator: `checkpoint`, `coordinator`,
//! `status`, `list`, `kill`, `quit`; and [`ensure_coordinator`] for `launch`
//! and `restart`.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hiber_coordinator::Config;
use hiber_protocol::client::Connection;
use hiber_protocol::{CheckpointOptions, FromCoord, Role, ToCoord};
use serde_json::json;

use crate::{CoordArg, coord_addr};

#[derive(clap::Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub coord: CoordArg,
    /// Print the result as a JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the images and the restart script to DIR
    /// [default: each process's checkpoint directory]
    #[arg(long, value_name = "DIR")]
    pub ckpt_dir: Option<PathBuf>,
    /// Write uncompressed images.
    #[arg(long)]
    pub no_compress: bool,
    /// Do not fsync the images (faster; not crash-safe).
    #[arg(long)]
    pub no_sync: bool,
}

#[derive(clap::Args, Debug)]
pub struct CoordinatorArgs {
    /// TCP port to listen on (0: any free port).
    #[arg(long, default_value_t = 7779)]
    pub port: u16,
    /// Address to listen on; 0.0.0.0 for a computation spanning hosts.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: String,
    /// Checkpoint every SECS seconds (0: only on request).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub interval: u64,
    /// Exit when the last process of the computation has exited.
    #[arg(long)]
    pub exit_on_last: bool,
    /// Run in the background; prints HOST:PORT once listening.
    #[arg(long)]
    pub daemon: bool,
    /// Where the restart script goes when a checkpoint names no directory
    /// [default: the current directory]
    #[arg(long, value_name = "DIR")]
    pub ckpt_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    pub coord: CoordArg,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A connection to the coordinator named by `coord`, with the address used.
fn connect(coord: &CoordArg) -> anyhow::Result<(Connection, String)> {
    let addr = coord_addr::resolve(coord);
    match Connection::connect(&addr, Role::Control) {
        Ok((conn, _)) => Ok((conn, addr)),
        Err(e) if e.is_unreachable() => {
            bail!("no coordinator at {addr} (is a computation running?)")
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends `msg` and returns the answer, turning `FromCoord::Error` into an error.
fn request(coord: &CoordArg, msg: &ToCoord) -> anyhow::Result<FromCoord> {
    let (mut conn, addr) = connect(coord)?;
    match conn.request(msg)? {
        FromCoord::Error(e) => bail!("coordinator at {addr}: {e}"),
        reply => Ok(reply),
    }
}

fn unexpected(reply: &FromCoord) -> anyhow::Error {
    anyhow::anyhow!("unexpected answer from the coordinator: {reply:?}")
}

pub fn checkpoint(args: CheckpointArgs) -> anyhow::Result<ExitCode> {
    let dir = match &args.ckpt_dir {
        Some(d) => {
            // Processes have their own working directories: send an absolute path.
            let d = std::path::absolute(d)
                .with_context(|| format!("checkpoint directory {}", d.display()))?;
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create checkpoint directory {}", d.display()))?;
            d.to_string_lossy().into_owned()
        }
        None => String::new(),
    };
    let options = CheckpointOptions {
        dir,
        compress: args.no_compress.then_some(false),
        sync: args.no_sync.then_some(false),
    };
    let r = match request(&args.coord, &ToCoord::Checkpoint(options))? {
        FromCoord::CheckpointResult(r) => r,
        other => return Err(unexpected(&other)),
    };
    if args.json {
        let out = json!({
            "generation": r.generation,
            "images": r.images,
            "restart_script": r.restart_script,
            "errors": r.errors,
        });
        println!("{out}");
    } else {
        for image in &r.images {
            println!("{image}");
        }
    }
    if r.errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("hiber: checkpoint generation {} failed:", r.generation);
    for e in &r.errors {
        eprintln!("  {e}");
    }
    Ok(ExitCode::from(1))
}

pub fn status(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let s = match request(&args.coord, &ToCoord::Status)? {
        FromCoord::Status(s) => s,
        other => return Err(unexpected(&other)),
    };
    let computation = format!("{:016x}", s.computation);
    if args.json {
        let out = json!({
            "coordinator": s.coordinator,
            "computation": computation,
            "processes": s.processes,
            "state": s.state.as_str(),
            "generation": s.generation,
            "interval": s.interval,
        });
        println!("{out}");
    } else {
        let interval = if s.interval == 0 {
            "off".to_string()
        } else {
            format!("{} s", s.interval)
        };
        println!("coordinator  {}", s.coordinator);
        println!("computation  {computation}");
        println!("state        {}", s.state.as_str());
        println!("processes    {}", s.processes);
        println!("generation   {}", s.generation);
        println!("interval     {interval}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn list(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let list = match request(&args.coord, &ToCoord::List)? {
        FromCoord::List(l) => l,
        other => return Err(unexpected(&other)),
    };
    if args.json {
        let out: Vec<_> = list
            .iter()
            .map(|p| {
                json!({
                    "process_id": p.process_id,
                    "virtual_pid": p.virtual_pid,
                    "real_pid": p.real_pid,
                    "host": p.host,
                    "program": p.program,
                    "state": p.state,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(out));
        return Ok(ExitCode::SUCCESS);
    }
    let host_w = list
        .iter()
        .map(|p| p.host.len())
        .chain([4])
        .max()
        .unwrap_or(4);
    let prog_w = list
        .iter()
        .map(|p| p.program.len())
        .chain([7])
        .max()
        .unwrap_or(7);
    println!(
        "{:>4} {:>8} {:>8} {:host_w$} {:prog_w$} STATE",
        "ID", "PID", "REAL", "HOST", "PROGRAM"
    );
    for p in &list {
        println!(
            "{:>4} {:>8} {:>8} {:host_w$} {:prog_w$} {}",
            p.process_id, p.virtual_pid, p.real_pid, p.host, p.program, p.state
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn kill(args: QueryArgs) -> anyhow::Result<ExitCode> {
    match request(&args.coord, &ToCoord::Kill)? {
        FromCoord::Ok => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "coordinator": coord_addr::resolve(&args.coord), "action": "killed"})
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(&other)),
    }
}

pub fn quit(args: QueryArgs) -> anyhow::Result<ExitCode> {
    match request(&args.coord, &ToCoord::Quit)? {
        FromCoord::Ok => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "coordinator": coord_addr::resolve(&args.coord), "action": "quit"})
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(&other)),
    }
}

pub fn coordinator(args: CoordinatorArgs) -> anyhow::Result<ExitCode> {
    let ckpt_dir = match &args.ckpt_dir {
        Some(d) => std::path::absolute(d)
            .with_context(|| format!("checkpoint directory {}", d.display()))?,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let hiber_exe = std::env::current_exe().context("cannot locate the hiber executable")?;
    let config = Config {
        bind: args.bind.clone(),
        port: args.port,
        interval: args.interval,
        exit_on_last: args.exit_on_last,
        ckpt_dir,
        hiber_exe,
    };
    let coord = hiber_coordinator::bind(config).map_err(|e| match &e {
        hiber_coordinator::Error::Bind { error, .. }
            if error.kind() == std::io::ErrorKind::AddrInUse =>
        {
            anyhow::anyhow!("{e} (is another coordinator running there? see --port)")
        }
        _ => e.into(),
    })?;
    let addr = coord.local_addr();
    if args.daemon {
        daemonize(addr)?;
    } else {
        println!("{addr}");
        let _ = std::io::stdout().flush();
    }
    coord.run().context("coordinator failed")?;
    Ok(ExitCode::SUCCESS)
}

/// Forks: the parent prints `addr` and exits 0; the child (which returns)
/// leaves the session and points its standard streams at /dev/null, or
/// stdout/stderr at `$HIBER_COORD_LOG`. The socket is already bound, so
/// clients that connect before the child polls simply wait in the backlog.
fn daemonize(addr: SocketAddr) -> anyhow::Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("/dev/null")?;
    let log = match std::env::var_os("HIBER_COORD_LOG").filter(|v| !v.is_empty()) {
        Some(path) => OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("coordinator log {}", Path::new(&path).display()))?,
        None => null.try_clone().context("/dev/null")?,
    };
    std::io::stdout().flush().context("stdout")?;
    // the CLI is single-threaded here (nothing has spawned a thread),
    // so the child gets a consistent copy of every lock and allocator state.
    // SAFETY: see just above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid > 0 {
        println!("{addr}");
        let _ = std::io::stdout().flush();
        std::process::exit(0);
    }
    // setsid takes no arguments; in a freshly forked child (not a
    // group leader) it cannot fail in a way that matters to us.
    // SAFETY: see just above.
    unsafe { libc::setsid() };
    for (src, dst) in [(&null, 0), (&log, 1), (&log, 2)] {
        // both descriptors are open: `src` is owned by a live `File`,
        // and dup2 atomically replaces `dst`.
        // SAFETY: see just above.
        if unsafe { libc::dup2(src.as_raw_fd(), dst) } < 0 {
            return Err(std::io::Error::last_os_error()).context("redirecting standard streams");
        }
    }
    // Do not keep the launch directory (a mount point, say) busy.
    let _ = std::env::set_current_dir("/");
    Ok(())
}

/// Makes sure a coordinator answers at `addr` (`HOST:PORT`). If none does,
/// starts `hiber coordinator --daemon --exit-on-last` there (restart scripts
/// of its checkpoints go to `ckpt_dir`) and waits until it accepts a hello.
pub fn ensure_coordinator(addr: &str, ckpt_dir: &Path) -> anyhow::Result<()> {
    match Connection::connect(addr, Role::Control) {
        Ok(_) => return Ok(()),
        Err(e) if e.is_unreachable() => {}
        Err(e) => return Err(e.into()),
    }
    let (host, port) = split_addr(addr)?;
    let ckpt_dir = std::path::absolute(ckpt_dir)
        .with_context(|| format!("checkpoint directory {}", ckpt_dir.display()))?;
    let exe = std::env::current_exe().context("cannot locate the hiber executable")?;
    let out = Command::new(&exe)
        .args([
            "coordinator",
            "--daemon",
            "--exit-on-last",
            "--bind",
            &host,
            "--port",
            &port,
        ])
        .arg("--ckpt-dir")
        .arg(&ckpt_dir)
        // The coordinator itself must never run under the agent.
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {} coordinator", exe.display()))?;
    let started = out.status.success();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Connection::connect(addr, Role::Control) {
            Ok(_) => return Ok(()),
            // Lost a race with another starter: theirs answers above.
            Err(e) if e.is_unreachable() && started && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if started => {
                return Err(e)
                    .context(format!("the coordinator started at {addr} does not answer"));
            }
            Err(_) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let why = stderr.trim().trim_start_matches("hiber: ");
                bail!("cannot start a coordinator at {addr}: {why}");
            }
        }
    }
}

/// `HOST:PORT` → (`HOST`, `PORT`), accepting `[v6]:PORT`.
fn split_addr(addr: &str) -> anyhow::Result<(String, String)> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok((sa.ip().to_string(), sa.port().to_string()));
    }
    let (host, port) = addr
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .with_context(|| format!("bad coordinator address {addr:?}: expected HOST:PORT"))?;
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port.to_string(),
    ))
}
