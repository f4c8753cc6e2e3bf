//! Process trees: children join the computation when they are forked, and
//! a restart rebuilds the tree with its parent links, process groups and
//! sessions (issue "Process trees").

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hiber_e2e::Env;

/// Runs `prog args` without hiber in `dir` (the reference outputs).
fn reference(prog: &Path, args: &[&str], dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let st = hiber_e2e::status(Command::new(prog).args(args).current_dir(dir)).unwrap();
    assert!(st.success(), "reference run failed: {st:?}");
}

/// P forks A (own process group) which forks B (own session); P waits for A
/// while A still runs, A for B. Two launch → checkpoint → SIGKILL all →
/// restart cycles; every process's output file ends up as in an
/// uninterrupted run, including its checks of its parent, group, session,
/// and the exit statuses `waitpid` returned.
#[test]
fn tree_with_groups_sessions_and_waitpid() {
    let env = Env::new("tree");
    let prog = env.compile("tree", &[]);
    let args = ["40", "40"];
    let refdir = env.dir.join("ref");
    reference(&prog, &args, &refdir);
    let t = Duration::from_secs(90);
    let mut c = env.launch(&[], &prog, &args, "run0.out");
    env.wait_lines("a.out", 14, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 3, "one image per process: {images:?}");
    env.wait_lines("a.out", env.read("a.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);

    let mut r = env.restart(&images, "run1.out");
    env.wait_lines("a.out", 26, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 3, "one image per process: {images:?}");
    env.wait_lines("a.out", env.read("a.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut r]);

    let mut r = env.restart(&images, "run2.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restarted tree failed: {st:?}");
    for f in ["p.out", "a.out", "b.out"] {
        let want = std::fs::read_to_string(refdir.join(f)).unwrap();
        assert_eq!(env.read(f), want, "{f} differs from an uninterrupted run");
    }
}
