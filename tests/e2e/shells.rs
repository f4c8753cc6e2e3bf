//! Real shells and `make` as process trees (issue "Process trees"): `bash`
//! and `dash` running a script with pipelines, subshells and external
//! commands, and `make -j2` building a small C project, each through two
//! launch → checkpoint → SIGKILL all → restart cycles, against an
//! uninterrupted run.
//!
//! Their processes come and go all the time, so a checkpoint finds a tree
//! of short-lived processes: pipelines with bytes in flight, subshells,
//! background jobs, `make`'s recipe shells and what they run. All of them
//! write to the same stdout, the harness's pipe (bound to `hiber
//! restart`'s stdout after a restart), and the same stderr, a file.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use hiber_e2e::{Env, ShowStderr, Tracked, assert_continuation};

const T: Duration = Duration::from_secs(90);

/// `name` found on PATH. A missing tool fails the test, never skips it
/// (`bash` and `dash` are essential on Debian; scripts/test-all.sh installs
/// `make` and `gcc`).
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is needed (scripts/test-all.sh installs it)"))
}

fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs")
}

/// A command without the make variables this test may have inherited
/// (a jobserver of an outer make would change what `make -j2` does).
fn clean(mut cmd: Command) -> Command {
    for v in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEFILES"] {
        cmd.env_remove(v);
    }
    cmd
}

/// Runs `prog args` without hiber in `dir`; its stdout.
fn reference(prog: &Path, args: &[&str], dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = clean(Command::new(prog));
    let out = cmd.args(args).current_dir(dir).tracked_output().unwrap();
    assert!(
        out.status.success(),
        "reference run failed: {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// When to checkpoint a run: once its output has this many lines, or a
/// line equal to this one.
#[derive(Clone, Copy)]
enum At {
    Lines(usize),
    Line(&'static str),
}

impl At {
    fn reached(self, text: &str) -> bool {
        match self {
            At::Lines(n) => text.lines().count() >= n,
            At::Line(l) => text.lines().any(|x| x == l),
        }
    }
}

/// Waits until `<out>` has reached `at`. With `ended_ok`, a `child` that
/// ends first is fine (a run may end before it prints what comes after a
/// checkpoint); otherwise that fails the test at once, with its status.
fn wait_at(env: &Env, out: &str, at: At, child: &mut Child, ended_ok: bool) {
    let t = Instant::now();
    while !at.reached(&env.read(out)) {
        if let Some(st) = child.try_wait().unwrap() {
            if ended_ok {
                return;
            }
            // What it printed last may still be on its way to the file.
            std::thread::sleep(Duration::from_millis(200));
            if at.reached(&env.read(out)) {
                return;
            }
            panic!(
                "{out}: the run ended ({st:?}) before it got there: {:?}",
                env.read(out)
            );
        }
        assert!(
            t.elapsed() < T,
            "{out}: not there after {T:?}: {:?}",
            env.read(out)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Two launch → checkpoint → SIGKILL all → restart cycles of `prog args`
/// in the test directory: the first checkpoint once the launched run has
/// reached `first`, the second once the first restart has reached
/// `second`; each run goes on for two more lines before it is killed, and
/// the last restart runs to its end. Returns the three runs' outputs.
///
/// The computation's stderr is a file of the test directory (every
/// process writes to it at its own offset, restored as regular files are),
/// so that a run does not depend on where cargo's stderr goes; `hiber
/// restart`'s own goes to `restart<N>.err`.
fn two_cycles(env: &Env, prog: &Path, args: &[&str], first: At, second: At) -> [String; 3] {
    let mut cmd = clean(env.cmd());
    cmd.arg("launch")
        .arg(prog)
        .args(args)
        .stderr(env.stderr_file("stderr.log"));
    let mut c = env.spawn(cmd, "run0.out");
    wait_at(env, "run0.out", first, &mut c, false);
    let images = env.checkpoint(&[]);
    assert!(!images.is_empty(), "no image");
    let n = env.read("run0.out").lines().count();
    wait_at(env, "run0.out", At::Lines(n + 2), &mut c, true);
    env.kill_all(&mut [&mut c]);

    let restart = |images: &[PathBuf], n: usize| {
        let mut cmd = env.cmd();
        cmd.arg("restart")
            .args(images)
            .stderr(env.stderr_file(&format!("restart{n}.err")));
        env.spawn(cmd, &format!("run{n}.out"))
    };
    let mut r = restart(&images, 1);
    wait_at(env, "run1.out", second, &mut r, false);
    let images = env.checkpoint(&[]);
    assert!(!images.is_empty(), "no image");
    let n = env.read("run1.out").lines().count();
    wait_at(env, "run1.out", At::Lines(n + 2), &mut r, true);
    env.kill_all(&mut [&mut r]);

    let mut r = restart(&images, 2);
    let st = env.wait(&mut r, T);
    assert!(st.success(), "the restarted computation failed: {st:?}");
    ["run0.out", "run1.out", "run2.out"].map(|f| env.read(f))
}

/// The uninterrupted output's lines up to where `partial` (a run that
/// continued `before`) ended.
fn reached(full: &str, before: &str, partial: &str) -> String {
    let full: Vec<&str> = full.lines().collect();
    let Some(first) = partial.lines().next() else {
        return before.to_string();
    };
    let start = full.iter().position(|l| *l == first).unwrap();
    let end = start + partial.lines().count();
    full[..end.max(before.lines().count())]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The script under `shell`: each partial output continues the
/// uninterrupted one, and the last restart prints all the rest of it.
fn shell_script(shell: &str) {
    let sh = tool(shell);
    let env = Env::new(shell);
    let _show = ShowStderr(&env, &["stderr.log", "restart1.err", "restart2.err"]);
    let script = programs().join("shell").join("script.sh");
    let script = script.to_str().unwrap();
    let args = [script, "14"];
    let full = reference(&sh, &args, &env.dir.join("ref"));
    assert_eq!(full.lines().last(), Some("done 14"), "{full}");
    assert!(full.lines().count() > 150, "{full}");
    // Right after a step's first line, where its first pipeline's middle
    // stage sleeps with seq's output waiting in the pipe: in step 3, and in
    // step 7 of the first restart (which resumes in step 3).
    let [run0, run1, run2] = two_cycles(
        &env,
        &sh,
        &args,
        At::Line("step 3 begin"),
        At::Line("step 7 begin"),
    );
    assert_continuation(&full, &run0, &run1, false);
    assert_continuation(&full, &reached(&full, &run0, &run1), &run2, true);
}

#[test]
fn bash_script_with_pipelines_subshells_and_jobs() {
    shell_script("bash");
}

#[test]
fn dash_script_with_pipelines_subshells_and_jobs() {
    shell_script("dash");
}

const PROJECT: [&str; 6] = [
    "Makefile", "calc.h", "main.c", "sums.c", "fib.c", "primes.c",
];
const BUILT: [&str; 5] = ["calc", "main.o", "sums.o", "fib.o", "primes.o"];

/// `make -j2` of tests/programs/make: the build completes after the last
/// restart, its objects and program are byte for byte those of an
/// uninterrupted build, and the program prints what it prints there.
///
/// make's output is compared as a set of lines: with two jobs at a time,
/// which recipe starts next depends on which of the two running ones ends
/// first, so the order of the echoed commands may differ from one build to
/// the next (every echoed line is unique). Each run prints each line at
/// most once, every line is one of the uninterrupted build's, together the
/// three runs print all of them, and the last restart ends with the run of
/// the program (`./calc` and its output), as the uninterrupted build does.
#[test]
fn make_j2_builds_a_c_project() {
    let make = tool("make");
    tool("cc");
    let env = Env::new("make");
    let _show = ShowStderr(&env, &["stderr.log", "restart1.err", "restart2.err"]);
    let refdir = env.dir.join("ref");
    std::fs::create_dir_all(&refdir).unwrap();
    for f in PROJECT {
        let src = programs().join("make").join(f);
        std::fs::copy(&src, env.dir.join(f)).unwrap();
        std::fs::copy(&src, refdir.join(f)).unwrap();
    }
    let full = reference(&make, &["-j2"], &refdir);
    let want: BTreeSet<&str> = full.lines().collect();
    assert_eq!(want.len(), full.lines().count(), "lines repeat: {full}");
    let tail: Vec<&str> = full.lines().skip(full.lines().count() - 4).collect();
    assert_eq!(tail[0], "./calc", "{full}");

    // The first checkpoint once the header is being generated and a first
    // object compiled, the second once the first restart has started
    // another recipe.
    let runs = two_cycles(&env, &make, &["-j2"], At::Lines(2), At::Lines(1));
    let mut seen = BTreeSet::new();
    for (i, run) in runs.iter().enumerate() {
        let mut once = BTreeSet::new();
        for l in run.lines() {
            assert!(
                want.contains(l),
                "run {i} printed {l:?}: {run}\nwant {full}"
            );
            assert!(once.insert(l), "run {i} printed {l:?} twice: {run}");
            seen.insert(l);
        }
    }
    assert_eq!(seen, want, "the runs together did not print every line");
    let last: Vec<&str> = runs[2].lines().collect();
    assert!(
        last.ends_with(&tail),
        "the last restart did not end with the run of the program: {}",
        runs[2]
    );
    for f in BUILT {
        let got = std::fs::read(env.dir.join(f)).unwrap();
        let want = std::fs::read(refdir.join(f)).unwrap();
        assert!(got == want, "{f} differs from an uninterrupted build's");
    }
    let calc = hiber_e2e::output(Command::new(env.dir.join("calc")).current_dir(&env.dir)).unwrap();
    assert!(calc.status.success());
    assert_eq!(
        String::from_utf8_lossy(&calc.stdout),
        tail[1..].join("\n") + "\n"
    );
}
