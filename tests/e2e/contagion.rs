//! Contagion through the variadic calls `shim.c` wraps: a child made with
//! `clone` used as fork, and programs started with `execle` (an
//! environment without the agent), `execlp` (found through `PATH`) and
//! `execl` (after `unsetenv("LD_PRELOAD")`) all join the computation.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;
use std::time::Duration;

use hiber_e2e::Env;

/// The output files of `contagion`: the parent, the clone child, and the
/// `execle`, `execlp` and `execl` children.
const OUTPUTS: [&str; 5] = ["p.out", "c.out", "e.out", "l.out", "x.out"];

/// `contagion` runs a parent, a `clone(fn, stack, SIGCHLD, arg)` child and
/// three children that exec it again through `execle` (with an
/// environment of only `MODE=execle`), `execlp` and `execl`. Every one of
/// the five processes has an image at each checkpoint, and after two
/// launch → checkpoint → SIGKILL all → restart cycles every output file,
/// with each process's checks of its parent and the parent's `waitpid`
/// statuses, is that of an uninterrupted run without hiber. So are the
/// parent's first lines: its checks that failing `execl*`, a `clone`
/// sharing memory, `clone`'s optional arguments and `CLONE_VFORK` behave
/// as glibc's (errno, exit statuses).
#[test]
fn clone_and_variadic_execs_join_the_computation() {
    let env = Env::new("contagion");
    let prog = env.compile("contagion", &[]);
    let args = ["40", "40"];
    let refdir = env.dir.join("ref");
    std::fs::create_dir_all(&refdir).unwrap();
    let st = hiber_e2e::status(Command::new(&prog).args(args).current_dir(&refdir)).unwrap();
    assert!(st.success(), "reference run failed: {st:?}");

    let t = Duration::from_secs(90);
    let mut c = env.launch(&[], &prog, &args, "run0.out");
    env.wait_lines("c.out", 12, t);
    for f in ["e.out", "l.out", "x.out"] {
        env.wait_lines(f, 4, t);
    }
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 5, "one image per process: {images:?}");
    env.wait_lines("c.out", env.read("c.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);

    let mut r = env.restart(&images, "run1.out");
    env.wait_lines("c.out", 24, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 5, "one image per process: {images:?}");
    env.wait_lines("c.out", env.read("c.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut r]);

    let mut r = env.restart(&images, "run2.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restarted program failed: {st:?}");
    for f in OUTPUTS {
        let want = std::fs::read_to_string(refdir.join(f)).unwrap();
        assert_eq!(env.read(f), want, "{f} differs from an uninterrupted run");
    }
}
