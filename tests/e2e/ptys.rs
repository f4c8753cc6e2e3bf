//! Pseudo-terminals (issue "Sockets, terminals, event fds and IPC"): a pty
//! pair made by the program comes back with its bytes in flight both
//! ways, its modes, window size, packet mode, controlling terminal and
//! foreground group; a program running on a terminal (a tmux pane) comes
//! back on `hiber restart`'s terminal with its modes.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;

use hiber_e2e::{Env, kill_restart_cycles};

/// `tests/programs/ptypair.c`: forkpty, the child in raw mode on the slave
/// (session leader, controlling terminal), the parent in packet mode on
/// the master, lines in flight both ways, the window resized half-way.
/// Two launch → checkpoint → SIGKILL all → restart cycles print what an
/// uninterrupted run prints.
#[test]
fn forkpty_pair_with_bytes_in_flight() {
    pair_cycles("ptypair", false);
}

/// The same as an unprivileged user (the restart runs in a user and pid
/// namespace of its own).
#[test]
fn forkpty_pair_unprivileged() {
    pair_cycles("ptypair-user", true);
}

fn pair_cycles(name: &str, unprivileged: bool) {
    let mut env = Env::new(name);
    if unprivileged && let Some((uid, gid)) = hiber_e2e::unprivileged_user() {
        env.become_user(uid, gid);
    }
    let prog = env.compile("ptypair", &["-lutil"]);
    let rounds = "60";
    let out = hiber_e2e::output(Command::new(&prog).arg(rounds)).unwrap();
    assert!(out.status.success(), "uninterrupted run failed: {out:?}");
    let reference = String::from_utf8(out.stdout).unwrap();
    assert!(
        reference.ends_with("child exit 0\nptypair done\n")
            && reference.contains(
                "icanon=0 echo=0 isig=0 opost=0 icrnl=0 ws=40x132 winch=1 fg=1 leader=1 ctty=1"
            ),
        "the uninterrupted run:\n{reference}"
    );
    kill_restart_cycles(&env, &reference, &[], &prog, &[rounds], 2);
}

/// A tmux server of its own (a private socket in the test directory),
/// killed when the test ends, passed or not.
struct Tmux {
    sock: std::path::PathBuf,
}

impl Tmux {
    /// A server with one detached 100x30 session running `command`, with
    /// the test's coordinator in its environment.
    fn start(env: &Env, sock: &str, command: &str) -> Tmux {
        let t = Tmux {
            sock: env.dir.join(sock),
        };
        let st = t
            .cmd()
            .env("HIBER_COORD", env.coord())
            .env("HIBER_COOKIE", env.dir.join("cookie"))
            .env("HIBER_CKPT_DIR", &env.dir)
            .env_remove("PYTHONSTARTUP")
            .env_remove("LD_PRELOAD")
            .current_dir(&env.dir)
            .args(["new-session", "-d", "-x", "100", "-y", "30", command])
            .tracked_status()
            .unwrap();
        assert!(st.success(), "tmux new-session: {st:?}");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.sock).args(["-f", "/dev/null"]);
        c
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p"])
            .tracked_output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` and Enter.
    fn type_line(&self, text: &str) {
        let st = self
            .cmd()
            .args(["send-keys", "-l", text])
            .tracked_status()
            .unwrap();
        assert!(st.success());
        let st = self
            .cmd()
            .args(["send-keys", "Enter"])
            .tracked_status()
            .unwrap();
        assert!(st.success());
    }

    /// Polls the screen until `done` holds (at most `secs` seconds).
    fn wait_screen(&self, what: &str, secs: u64, done: impl Fn(&str) -> bool) -> String {
        let t = std::time::Instant::now();
        loop {
            let s = self.screen();
            if done(&s) {
                return s;
            }
            assert!(
                t.elapsed() < std::time::Duration::from_secs(secs),
                "no {what} on the screen after {secs}s:\n{s}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").tracked_status();
    }
}

use hiber_e2e::Tracked;

/// The python3 REPL in a tmux pane under `hiber launch`: a few statements,
/// a checkpoint, everything SIGKILLed (tmux too), then `hiber restart` in a
/// new tmux server's pane: the REPL takes more input there, with the
/// variables defined before, and the terminal is in readline's modes again
/// (a typed line shows once: no echo from a cooked terminal under
/// readline's own), and the REPL got a `SIGWINCH`.
#[test]
fn python_repl_in_tmux_comes_back_in_a_new_pane() {
    let env = Env::new("ptys-tmux");
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let hiber = hiber_e2e::hiber();
    let first = Tmux::start(
        &env,
        "tmux1.sock",
        &format!("exec {} launch {python} -q", hiber.display()),
    );
    first.wait_screen("python prompt", 60, |s| s.contains(">>>"));
    first.type_line("x = 6 * 7");
    first.type_line("s = 'hello' + ' world'");
    first.type_line("import signal; winches = []");
    first.type_line("signal.signal(signal.SIGWINCH, lambda *a: winches.append(1))");
    first.type_line("print(x, s)");
    first.wait_screen("first result", 30, |s| s.contains("42 hello world"));
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 1, "{images:?}");
    env.kill_all(&mut []);
    drop(first);

    let names: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    let second = Tmux::start(
        &env,
        "tmux2.sock",
        &format!("exec {} restart {}", hiber.display(), names.join(" ")),
    );
    // Typing waits until the restarted REPL has set its terminal modes
    // (before, the pane's terminal would echo the keys itself).
    let pane_tty = String::from_utf8(
        second
            .cmd()
            .args(["display-message", "-p", "#{pane_tty}"])
            .tracked_output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let pane_tty = pane_tty.trim().to_string();
    let t = std::time::Instant::now();
    loop {
        let out = Command::new("stty")
            .args(["-a", "-F", &pane_tty])
            .tracked_output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("-icanon") {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "the terminal of the restarted REPL is not in readline's modes: {out:?}\n{}",
            second.screen()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let typed = "print(x * 2, s.upper())";
    second.type_line(typed);
    let s = second.wait_screen("result after the restart", 30, |s| {
        s.contains("84 HELLO WORLD")
    });
    assert_eq!(
        s.matches(typed).count(),
        1,
        "the typed line shows more than once (terminal modes not restored?):\n{s}"
    );
    second.type_line("y = len(s); print('y =', y, 'winched', len(winches) > 0)");
    second.wait_screen("second result and the SIGWINCH", 30, |s| {
        s.contains("y = 11 winched True")
    });
    env.kill_all(&mut []);
}
