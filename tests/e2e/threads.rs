//! Multithreaded programs and real interpreters through a launch →
//! checkpoint → SIGKILL all → restart cycle, against an uninterrupted run.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use hiber_e2e::{Env, Tracked, kill_restart_cycle, kill_restart_cycles};

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

/// The issue's C programs, each through two kill/restart cycles.
fn two_cycles(
    name: &str,
    program: &str,
    cflags: &[&str],
    steps: &str,
    delay: &str,
    extra: &[&str],
) {
    let env = Env::new(name);
    let prog = env.compile(program, cflags);
    let reference = output(
        Command::new(&prog)
            .current_dir(&env.dir)
            .args([steps, "0"])
            .args(extra),
    );
    let args: Vec<&str> = [steps, delay]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    kill_restart_cycles(&env, &reference, &[], &prog, &args, 2);
}

#[test]
fn sixteen_threads_mutex_condvar_tls() {
    two_cycles("t16", "threads", &["-pthread"], "150", "20", &["16"]);
}

#[test]
fn threads_created_and_joined_continuously() {
    two_cycles("churn", "churn", &["-pthread"], "60", "40", &[]);
}

#[test]
fn own_stack_altstack_cancel() {
    two_cycles("mix", "threadmix", &["-pthread"], "60", "30", &[]);
}

#[test]
fn errorcheck_and_recursive_mutexes_held_across() {
    two_cycles("mutexes", "ids", &["-pthread"], "60", "30", &[]);
}

#[test]
fn openmp_reduction() {
    two_cycles("omp", "omp", &["-fopenmp"], "60", "30", &[]);
}

/// A program using SIGUSR2 and signal 62 itself, with the checkpoint
/// signal moved elsewhere.
#[test]
fn program_signals_with_ckpt_signal_moved() {
    let env = Env::new("sigmove");
    let prog = env.compile("sigusr", &[]);
    let reference = output(Command::new(&prog).args(["40", "0"]));
    kill_restart_cycle(
        &env,
        &reference,
        &["--ckpt-signal", "45"],
        &prog,
        &["40", "30"],
    );
}

/// 50 checkpoints in a row on a thread-churning program, resumed each time
/// without a kill: no hang, and the result of an uninterrupted run.
#[test]
fn fifty_checkpoints_while_threads_churn() {
    let env = Env::new("churn50");
    let prog = env.compile("churn", &["-pthread"]);
    let reference = output(Command::new(&prog).args(["400", "0"]));
    let mut c = env.launch(&[], &prog, &["400", "0"], "run.out");
    env.wait_lines("run.out", 1, std::time::Duration::from_secs(30));
    for i in 0..50 {
        let out = env.run(&["checkpoint"]);
        assert!(
            out.status.success(),
            "checkpoint {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let st = env.wait(&mut c, std::time::Duration::from_secs(120));
    assert!(st.success());
    assert_eq!(env.read("run.out"), reference);
}

#[test]
fn c_threads_mutex_condvar_tls() {
    let env = Env::new("cthreads");
    let prog = env.compile("threads", &["-pthread"]);
    let reference = output(Command::new(&prog).args(["100", "0"]));
    cycle(&env, &reference, &prog, &["100", "20"]);
}

const JAVA: &str = r#"
import java.util.concurrent.atomic.AtomicLong;
public class Main {
    public static void main(String[] a) throws Exception {
        AtomicLong total = new AtomicLong();
        Thread[] ts = new Thread[4];
        for (int k = 0; k < 4; k++) {
            final int kk = k + 1;
            ts[k] = new Thread(() -> {
                for (int i = 0; i < 600; i++) {
                    total.addAndGet(kk * i);
                    try { Thread.sleep(5); } catch (InterruptedException e) { }
                }
            });
            ts[k].start();
        }
        for (int s = 0; s < 60; s++) { System.out.println("step " + s); System.out.flush(); Thread.sleep(50); }
        for (Thread t : ts) t.join();
        System.out.println("total " + total.get());
    }
}
"#;

/// A multi-threaded Java program on Debian's OpenJDK.
#[test]
fn java_threads() {
    let env = Env::new("java");
    std::fs::write(env.dir.join("Main.java"), JAVA).unwrap();
    let st = Command::new("javac")
        .arg("Main.java")
        .current_dir(&env.dir)
        .tracked_status();
    assert!(
        st.is_ok_and(|s| s.success()),
        "javac is needed (scripts/test-all.sh installs OpenJDK)"
    );
    let java = Path::new("/usr/bin/java");
    let args = [
        "-Xmx64m",
        "-XX:-UsePerfData",
        "-cp",
        env.dir.to_str().unwrap(),
        "Main",
    ];
    let reference = output(Command::new(java).args(args));
    kill_restart_cycles(&env, &reference, &[], java, &args, 2);
}

const PYTHON: &str = r#"
import threading, time
total = [0]
lock = threading.Lock()
def work(k):
    for i in range(600):
        with lock:
            total[0] += k * i
        time.sleep(0.002)
threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 4)]
for t in threads: t.start()
for s in range(80):
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
    kill_restart_cycles(
        &env,
        &reference,
        &[],
        python,
        &[script.to_str().unwrap()],
        2,
    );
}

#[test]
fn perl_loop() {
    let env = Env::new("perl");
    let code = r#"$|=1; my $s=0; for my $i (0..80) { $s += $i*$i; print "p $i $s\n"; select(undef,undef,undef,0.05) }"#;
    let reference = output(Command::new("perl").args(["-e", code]));
    let perl = Path::new("/usr/bin/perl");
    kill_restart_cycles(&env, &reference, &[], perl, &["-e", code], 2);
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
