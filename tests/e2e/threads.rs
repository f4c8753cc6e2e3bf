//! Multithreaded programs and real interpreters through a launch →
//! checkpoint → SIGKILL all → restart cycle, against an uninterrupted run.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use hiber_e2e::{Env, Tracked, kill_restart_cycle};

fn cycle(env: &Env, reference: &str, prog: &Path, args: &[&str]) {
    kill_restart_cycle(env, reference, &[], prog, args);
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.tracked_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn c_threads_mutex_condvar_tls() {
    let env = Env::new("cthreads");
    let prog = env.compile("threads", &["-pthread"]);
    let reference = output(Command::new(&prog).args(["100", "0"]));
    cycle(&env, &reference, &prog, &["100", "20"]);
}

const PYTHON: &str = r#"
import threading, time
total = [0]
lock = threading.Lock()
def work(k):
    for i in range(300):
        with lock:
            total[0] += k * i
        time.sleep(0.002)
threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 4)]
for t in threads: t.start()
for s in range(40):
    print("step", s, flush=True)
    time.sleep(0.05)
for t in threads: t.join()
print("total", total[0], flush=True)
"#;

#[test]
fn python_threads() {
    let env = Env::new("python");
    let script = env.dir.join("t.py");
    std::fs::write(&script, PYTHON).unwrap();
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "python3 is needed (scripts/test-all.sh installs it)"
    );
    let reference = output(
        Command::new(python)
            .arg(&script)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    );
    cycle(&env, &reference, python, &[script.to_str().unwrap()]);
}

#[test]
fn perl_loop() {
    let env = Env::new("perl");
    let code = r#"$|=1; my $s=0; for my $i (0..40) { $s += $i*$i; print "p $i $s\n"; select(undef,undef,undef,0.05) }"#;
    let reference = output(Command::new("perl").args(["-e", code]));
    let perl = Path::new("/usr/bin/perl");
    cycle(&env, &reference, perl, &["-e", code]);
}

/// A restart gives every process and thread its original id back (as root
/// in this pid namespace; unprivileged in a user+pid namespace of its own),
/// so everything keyed on ids holds after it: gettid, pthread_kill, /proc/self/task/<tid>,
/// CPU clocks, error-checking and recursive mutexes held across it.
fn same_ids_cycle(name: &str, unprivileged: bool, restart_flags: &[&str]) {
    let mut env = Env::new(name);
    if unprivileged && let Some((uid, gid)) = hiber_e2e::unprivileged_user() {
        env.become_user(uid, gid);
    }
    let prog = env.compile("ids", &["-pthread"]);
    let mut reference = Command::new(&prog);
    reference.args(["40", "0"]);
    if let Some((uid, gid)) = env.user {
        use std::os::unix::process::CommandExt;
        reference.uid(uid).gid(gid);
    }
    let reference = output(&mut reference);
    let t = std::time::Duration::from_secs(60);
    let mut c = env.launch(&[], &prog, &["40", "30"], "run.out");
    env.wait_lines("run.out", 4, t);
    let images = env.checkpoint(&[]);
    env.kill_all(&mut [&mut c]);
    let before = env.read("run.out");
    let mut r = env.restart_with(restart_flags, &images, "restart.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restarted program failed: {st:?}");
    hiber_e2e::assert_continuation(&reference, &before, &env.read("restart.out"), true);
}

#[test]
fn same_ids_keep_every_id() {
    // The default: no flag.
    same_ids_cycle("sameids", false, &[]);
}

#[test]
fn same_ids_as_unprivileged_user() {
    // --same-ids: fail rather than fall back to new ids.
    same_ids_cycle("sameids-user", true, &["--same-ids"]);
}
