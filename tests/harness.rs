//! Test harness: builds test programs, runs the real `hiber` binary, kills
//! everything with SIGKILL and restarts from the images.
//!
//! Each test gets its own directory, coordinator port and cookie, so tests
//! run in parallel without seeing each other. The harness makes itself a
//! child subreaper so that daemonised coordinators and restarted processes
//! are reaped here instead of lingering as zombies.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

static SUBREAPER: Once = Once::new();
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// Directory holding `hiber`, `libhiber.so` and `hiber-restore`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HIBER_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    for f in ["hiber", "libhiber.so", "hiber-restore"] {
        assert!(
            dir.join(f).exists(),
            "{} is missing: build the workspace first (`cargo build --release` before `cargo test --release`)",
            dir.join(f).display()
        );
    }
    dir
}

pub fn hiber() -> PathBuf {
    bin_dir().join("hiber")
}

fn reap_loop() {
    std::thread::spawn(|| {
        loop {
            // Reap only children nobody else waits for: orphans we adopted.
            // SAFETY: waitid with WNOWAIT peeks without consuming.
            unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let r = libc::waitid(
                    libc::P_ALL,
                    0,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                );
                if r == 0 && info.si_pid() != 0 {
                    let pid = info.si_pid();
                    if is_adopted(pid) {
                        libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

static SPAWNED: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

fn is_adopted(pid: i32) -> bool {
    !SPAWNED.lock().unwrap().contains(&pid)
}

/// Spawns `cmd` and records it as ours, holding the list's lock across the
/// spawn: otherwise the reaper could see a quick child exit before it is
/// recorded, reap it, and the caller's `wait` would fail with ECHILD.
pub fn spawn_tracked(cmd: &mut Command) -> std::io::Result<Child> {
    let mut spawned = SPAWNED.lock().unwrap();
    let child = cmd.spawn()?;
    spawned.push(child.id() as i32);
    Ok(child)
}

/// `cmd.output()` (stdin from /dev/null, stdout and stderr captured) for a
/// child the reaper leaves alone. Use it instead of `Command::output`.
pub fn output(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn_tracked(cmd)?.wait_with_output()
}

/// `cmd.status()` for a child the reaper leaves alone.
pub fn status(cmd: &mut Command) -> std::io::Result<std::process::ExitStatus> {
    spawn_tracked(cmd)?.wait()
}

/// `.tracked_output()` / `.tracked_status()`: [`output`] and [`status`] as
/// methods, for builder chains.
pub trait Tracked {
    fn tracked_output(&mut self) -> std::io::Result<Output>;
    fn tracked_status(&mut self) -> std::io::Result<std::process::ExitStatus>;
}

impl Tracked for Command {
    fn tracked_output(&mut self) -> std::io::Result<Output> {
        output(self)
    }

    fn tracked_status(&mut self) -> std::io::Result<std::process::ExitStatus> {
        status(self)
    }
}

/// The (uid, gid) of an unprivileged user to run as: when running as root,
/// the user `hibertest` (created if needed); otherwise `None`, as the tests
/// then already run unprivileged.
pub fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let name = "hibertest";
    let exists = || output(Command::new("id").arg(name)).is_ok_and(|o| o.status.success());
    if !exists() {
        let st = status(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ]))
        .expect("useradd is needed to test as an unprivileged user");
        // Another test may have created it meanwhile.
        assert!(st.success() || exists(), "useradd {name} failed");
    }
    let id = |f: &str| -> u32 {
        let o = output(Command::new("id").args([f, name])).unwrap();
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

/// Whether `pid` still exists, other than as a zombie that is not ours to
/// reap (an orphan waiting for PID 1, which reaps slowly on these machines).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let zombie = s
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            !zombie || !is_adopted(pid as i32)
        }
        Err(_) => false,
    }
}

/// A test's private world.
pub struct Env {
    pub dir: PathBuf,
    pub port: u16,
    name: String,
    /// Run every hiber command as this (uid, gid) instead of ourselves.
    pub user: Option<(u32, u32)>,
    /// Where this test's `hiber` is.
    pub bin: PathBuf,
}

impl Env {
    /// A file in the test directory for a child's stderr (appended to).
    pub fn stderr_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))
            .unwrap()
    }

    pub fn new(name: &str) -> Env {
        SUBREAPER.call_once(|| {
            // SAFETY: plain prctl on ourselves.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            reap_loop();
        });
        let base = std::env::var_os("HIBER_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("hiber-test-{}-{}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Ports per test process: 20000 + (pid % 796) * 16 + n, all below
        // 32768, where Linux (by default) starts handing out the local ports
        // of outgoing connections: a long-lived agent connection that got a
        // test's port as its local port would make that test's coordinator
        // fail with EADDRINUSE.
        let n = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = 20000 + ((std::process::id() % 796) as u16) * 16 + (n % 16);
        Env {
            dir,
            port,
            name: name.to_string(),
            user: None,
            bin: bin_dir(),
        }
    }

    pub fn coord(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A `hiber` command with this test's coordinator and cookie.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(self.bin.join("hiber"));
        c.env("HIBER_COORD", self.coord())
            .env("HIBER_COOKIE", self.dir.join("cookie"))
            .env("HIBER_CKPT_DIR", &self.dir)
            .env_remove("LD_PRELOAD")
            .current_dir(&self.dir);
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            c.uid(uid).gid(gid).env("HOME", &self.dir);
        }
        c
    }

    /// Runs as `uid`/`gid` from now on, with private copies of the
    /// binaries (the checkout may not be readable by that user).
    pub fn become_user(&mut self, uid: u32, gid: u32) {
        let bin = self.dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for f in ["hiber", "libhiber.so", "hiber-restore"] {
            std::fs::copy(bin_dir().join(f), bin.join(f)).unwrap();
        }
        for p in [&self.dir, &bin] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        }
        self.bin = bin;
        self.user = Some((uid, gid));
    }

    /// Compiles `tests/programs/<name>.c` into the test directory.
    pub fn compile(&self, name: &str, extra: &[&str]) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("programs")
            .join(format!("{name}.c"));
        let out = self.dir.join(name);
        let st = status(
            Command::new("cc")
                .args(["-O1", "-g", "-o"])
                .arg(&out)
                .arg(&src)
                .args(extra),
        )
        .expect("cc must be installed");
        assert!(st.success(), "compiling {}", src.display());
        out
    }

    /// `hiber launch [flags] PROG ARGS`, stdout to `<name>.out`.
    pub fn launch(&self, flags: &[&str], prog: &Path, args: &[&str], out: &str) -> Child {
        let mut cmd = self.cmd();
        cmd.arg("launch").args(flags).arg(prog).args(args);
        self.spawn(cmd, out)
    }

    /// Spawns `cmd` with stdin from /dev/null and stdout copied into
    /// `<out>`, as a child the reaper leaves alone.
    pub fn spawn(&self, mut cmd: Command, out: &str) -> Child {
        let mut child = spawn_tracked(cmd.stdin(Stdio::null()).stdout(Stdio::piped())).unwrap();
        self.capture(&mut child, out);
        child
    }

    /// Waits until `<out>` has a line equal to `line`; returns the output.
    pub fn wait_for_line(&self, out: &str, line: &str, timeout: Duration) -> String {
        let t = Instant::now();
        loop {
            let text = self.read(out);
            if text.lines().any(|l| l == line) {
                return text;
            }
            assert!(
                t.elapsed() < timeout,
                "{out}: no line {line:?} after {timeout:?}: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        output(self.cmd().args(args)).unwrap()
    }

    /// `hiber checkpoint`; panics with its stderr on failure. Returns image paths.
    pub fn checkpoint(&self, flags: &[&str]) -> Vec<PathBuf> {
        // Bounded: a hung checkpoint must fail the test, not stall the run.
        let mut cmd = self.cmd();
        cmd.arg("checkpoint")
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_tracked(&mut cmd).unwrap();
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(90) {
                let _ = child.kill();
                panic!("{}: hiber checkpoint did not finish within 90 s", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "hiber checkpoint failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    /// `hiber restart IMAGES`, stdout to `<out>`.
    pub fn restart(&self, images: &[PathBuf], out: &str) -> Child {
        self.restart_with(&[], images, out)
    }

    /// `hiber restart FLAGS IMAGES`, stdout to `<out>`.
    pub fn restart_with(&self, flags: &[&str], images: &[PathBuf], out: &str) -> Child {
        let mut cmd = self.cmd();
        cmd.arg("restart").args(flags).args(images);
        self.spawn(cmd, out)
    }

    /// Copies the child's stdout (a pipe, as for a program in a pipeline)
    /// into `<out>` as it arrives.
    fn capture(&self, child: &mut Child, out: &str) {
        let mut pipe = child.stdout.take().unwrap();
        let mut f = std::fs::File::create(self.dir.join(out)).unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut pipe, &mut f);
        });
    }

    pub fn read(&self, out: &str) -> String {
        std::fs::read_to_string(self.dir.join(out)).unwrap_or_default()
    }

    /// Waits until `<out>` has at least `n` lines.
    pub fn wait_lines(&self, out: &str, n: usize, timeout: Duration) {
        let t = Instant::now();
        while self.read(out).lines().count() < n {
            assert!(
                t.elapsed() < timeout,
                "{out}: fewer than {n} lines after {timeout:?}: {:?}",
                self.read(out)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs every process of this test: the program(s) and the
    /// coordinator (found by its port on the command line).
    pub fn kill_all(&self, children: &mut [&mut Child]) {
        for c in children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.kill_matching();
    }

    fn kill_matching(&self) {
        let coord = format!("127.0.0.1:{}", self.port);
        let port_arg = format!("--port {}", self.port);
        let me = std::process::id();
        let mut killed = Vec::new();
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if pid == me {
                    continue;
                }
                let mut cmd = Vec::new();
                if let Ok(mut f) = std::fs::File::open(format!("/proc/{pid}/cmdline")) {
                    let _ = f.read_to_end(&mut cmd);
                }
                let mut env = Vec::new();
                if let Ok(mut f) = std::fs::File::open(format!("/proc/{pid}/environ")) {
                    let _ = f.read_to_end(&mut env);
                }
                let hay = String::from_utf8_lossy(&cmd).replace('\0', " ")
                    + &String::from_utf8_lossy(&env);
                if hay.contains(&coord) || hay.contains(&port_arg) {
                    // SAFETY: plain kill.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    killed.push(pid);
                }
            }
        }
        // Until they are gone for good (reaped: a zombie still holds its
        // pid, which a restart wants back).
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) && killed.iter().any(|p| alive(*p)) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for a child with a timeout; kills it if it hangs.
    pub fn wait(&self, child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if t.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{}: process did not finish within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_matching();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The whole cycle most tests run: launch `prog args` with `flags`, wait
/// for a few lines, checkpoint, let it run on a little, SIGKILL it and the
/// coordinator, restart from the image in fresh processes, wait for the
/// end, and compare with `reference`, the output of an uninterrupted run.
pub fn kill_restart_cycle(env: &Env, reference: &str, flags: &[&str], prog: &Path, args: &[&str]) {
    let t = Duration::from_secs(60);
    let mut c = env.launch(flags, prog, args, "run.out");
    env.wait_lines("run.out", 4, t);
    let images = env.checkpoint(&[]);
    env.wait_lines("run.out", env.read("run.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);
    let before = env.read("run.out");
    let mut r = env.restart(&images, "restart.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restarted program failed: {st:?}");
    assert_continuation(reference, &before, &env.read("restart.out"), true);
}

/// Like [`kill_restart_cycle`], but the restarted program is checkpointed
/// and killed again `cycles - 1` more times before the last restart runs to
/// its end; every partial output must continue the uninterrupted one.
pub fn kill_restart_cycles(
    env: &Env,
    reference: &str,
    flags: &[&str],
    prog: &Path,
    args: &[&str],
    cycles: usize,
) {
    let t = Duration::from_secs(90);
    let mut c = env.launch(flags, prog, args, "run0.out");
    env.wait_lines("run0.out", 4, t);
    let mut images = env.checkpoint(&[]);
    env.wait_lines("run0.out", env.read("run0.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);
    let mut before = env.read("run0.out");
    for cycle in 1..=cycles {
        let out = format!("run{cycle}.out");
        let mut r = env.restart(&images, &out);
        if cycle < cycles {
            env.wait_lines(&out, 3, t);
            images = env.checkpoint(&[]);
            env.wait_lines(&out, env.read(&out).lines().count() + 2, t);
            env.kill_all(&mut [&mut r]);
            assert_continuation(reference, &before, &env.read(&out), false);
            before = String::new();
        } else {
            let st = env.wait(&mut r, t);
            assert!(st.success(), "restarted program failed: {st:?}");
            assert_continuation(reference, &before, &env.read(&out), true);
        }
    }
}

/// Checks that `restarted` continues the uninterrupted output `full` from
/// the line after the checkpoint: the launched run's output `before` is a
/// prefix of `full`, the restart starts at or before where `before` ended,
/// and it prints exactly what `full` prints from there (all of it when the
/// restarted run `finished`, a prefix when it was killed in its turn).
pub fn assert_continuation(full: &str, before: &str, restarted: &str, finished: bool) {
    let full_lines: Vec<&str> = full.lines().collect();
    let before_lines: Vec<&str> = before.lines().collect();
    let rest: Vec<&str> = restarted.lines().collect();
    assert!(!rest.is_empty(), "the restarted program printed nothing");
    assert_eq!(
        &full_lines[..before_lines.len()],
        &before_lines[..],
        "the launched run diverged"
    );
    let Some(start) = full_lines.iter().position(|l| *l == rest[0]) else {
        panic!(
            "restart began with {:?}, which the uninterrupted run never printed",
            rest[0]
        );
    };
    assert!(
        start > 0,
        "restart began from the very first line: nothing was restored"
    );
    if !before_lines.is_empty() {
        assert!(
            start <= before_lines.len(),
            "restart began at a line the launched run never reached"
        );
    }
    let expect = &full_lines[start..];
    if finished {
        assert_eq!(
            expect,
            &rest[..],
            "the restarted run's output differs from the uninterrupted run"
        );
    } else {
        assert!(
            rest.len() <= expect.len(),
            "the restarted run printed more than the uninterrupted run"
        );
        assert_eq!(
            &expect[..rest.len()],
            &rest[..],
            "the restarted run's output differs from the uninterrupted run"
        );
    }
}

/// Prints the named files of the test directory when the test fails (a
/// failed test's stdout is shown): the programs' messages and hiber's
/// warnings, captured with [`Env::stderr_file`].
pub struct ShowStderr<'a>(pub &'a Env, pub &'static [&'static str]);

impl Drop for ShowStderr<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for f in self.1 {
                println!("---- {f}:\n{}", self.0.read(f));
            }
        }
    }
}

/// How [`log_file_cycles`] drives a program that writes its own log files.
pub struct LogCycles<'a> {
    /// The log whose line count paces the cycles.
    pub watch: &'a str,
    /// Lines `watch` has before the first checkpoint, and before the one
    /// of the restarted run.
    pub first: usize,
    pub second: usize,
    /// Images each checkpoint writes (one per process).
    pub images: usize,
    /// Checkpoint once more before the first kill and let the program go
    /// on (the checkpoint must leave it intact).
    pub resume_first: bool,
    /// Every log the program writes, compared with an uninterrupted run's.
    pub logs: &'a [&'a str],
    /// What the last restarted run prints on its stdout.
    pub done: &'a str,
    /// Runs after the reference run and after each kill (to remove what a
    /// killed run leaves behind outside its images).
    pub after_kill: &'a dyn Fn(),
}

/// Runs `prog ARGS` once uninterrupted in `<dir>/ref`, then under hiber
/// in `<dir>`: launch → checkpoint → SIGKILL all → restart, twice, and
/// the last restart to its end. Every log must equal the reference run's.
pub fn log_file_cycles(env: &Env, prog: &Path, args: &[&str], c: &LogCycles<'_>) {
    let refdir = env.dir.join("ref");
    std::fs::create_dir_all(&refdir).unwrap();
    let reference = output(Command::new(prog).args(args).current_dir(&refdir)).unwrap();
    assert!(reference.status.success(), "reference run: {reference:?}");
    (c.after_kill)();
    let t = Duration::from_secs(90);
    let more = |n: usize| env.wait_lines(c.watch, env.read(c.watch).lines().count() + n, t);
    let checkpoint = || {
        let images = env.checkpoint(&[]);
        assert_eq!(images.len(), c.images, "one image per process: {images:?}");
        images
    };

    let mut run = env.launch(&[], prog, args, "run0.out");
    env.wait_lines(c.watch, c.first, t);
    if c.resume_first {
        checkpoint();
        more(3);
    }
    let images = checkpoint();
    more(2);
    env.kill_all(&mut [&mut run]);
    (c.after_kill)();

    let mut run = env.restart(&images, "run1.out");
    env.wait_lines(c.watch, c.second, t);
    let images = checkpoint();
    more(2);
    env.kill_all(&mut [&mut run]);
    (c.after_kill)();

    let mut run = env.restart(&images, "run2.out");
    let st = env.wait(&mut run, t);
    assert!(st.success(), "restarted run failed: {st:?}");
    assert_eq!(env.read("run2.out"), c.done);
    for f in c.logs {
        let want = std::fs::read_to_string(refdir.join(f)).unwrap();
        assert_eq!(env.read(f), want, "{f} differs from an uninterrupted run");
    }
}
