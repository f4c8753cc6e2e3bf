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

/// A child that execs with an empty environment stays in the computation
/// (the agent carries itself across exec), and `hiber nocheckpoint CMD`
/// keeps CMD out of it even when run from inside: the coordinator lists the
/// parent and the exec'd kid only, and their two kill/restart cycles give
/// the outputs of an uninterrupted run.
#[test]
fn exec_with_empty_environment_and_nocheckpoint() {
    let env = Env::new("spawner");
    let prog = env.compile("spawner", &[]);
    let hiber = env.bin.join("hiber");
    let hiber = hiber.to_str().unwrap();
    let args = [hiber, "40", "40"];
    let refdir = env.dir.join("ref");
    std::fs::create_dir_all(&refdir).unwrap();
    let reference = hiber_e2e::output(Command::new(&prog).args(args).current_dir(&refdir)).unwrap();
    assert!(reference.status.success());
    let reference = String::from_utf8_lossy(&reference.stdout).into_owned();
    let t = Duration::from_secs(90);
    let mut c = env.launch(&[], &prog, &args, "run0.out");
    env.wait_lines("k.out", 8, t);
    let list = env.run(&["list", "--json"]);
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let procs: serde_json::Value = serde_json::from_str(&list).unwrap();
    let procs = procs.as_array().unwrap();
    assert_eq!(procs.len(), 2, "parent and exec'd kid only: {list}");
    assert!(
        !list.contains("sleep") && !list.contains("\"hiber\""),
        "{list}"
    );
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 2, "{images:?}");
    env.wait_lines("k.out", env.read("k.out").lines().count() + 2, t);
    let before = env.read("run0.out");
    env.kill_all(&mut [&mut c]);
    let mut r = env.restart(&images, "run1.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restart failed: {st:?}");
    hiber_e2e::assert_continuation(&reference, &before, &env.read("run1.out"), true);
    let want = std::fs::read_to_string(refdir.join("k.out")).unwrap();
    assert_eq!(env.read("k.out"), want, "the exec'd kid's output");
}

/// Pipes: a ring of three processes with tokens always in flight, a write
/// end shared by two processes, and a pipe into an exec'd `cat`. Two
/// kill/restart cycles; every output (and `cat`'s) is that of an
/// uninterrupted run, and the pipes are still pipes.
#[test]
fn pipe_ring_with_bytes_in_flight_and_cat() {
    ring_cycles("ring", false);
}

/// The same as an unprivileged user: the restart runs in a pid namespace of
/// its own (where `hiber restart` must not keep pipe ends open either, or
/// `cat` never sees end-of-file).
#[test]
fn pipe_ring_unprivileged() {
    ring_cycles("ring-user", true);
}

fn ring_cycles(name: &str, unprivileged: bool) {
    let mut env = Env::new(name);
    if unprivileged && let Some((uid, gid)) = hiber_e2e::unprivileged_user() {
        env.become_user(uid, gid);
    }
    let prog = env.compile("ring", &[]);
    let args = ["40", "40"];
    let refdir = env.dir.join("ref");
    reference(&prog, &args, &refdir);
    let t = Duration::from_secs(90);
    let mut c = env.launch(&[], &prog, &args, "run0.out");
    env.wait_lines("r1.out", 12, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 4, "three ring processes and cat: {images:?}");
    env.wait_lines("r1.out", env.read("r1.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);

    let mut r = env.restart(&images, "run1.out");
    env.wait_lines("r1.out", 24, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 4, "{images:?}");
    env.wait_lines("r1.out", env.read("r1.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut r]);

    let mut r = env.restart(&images, "run2.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restarted ring failed: {st:?}");
    assert_eq!(env.read("run2.out"), "ring done 1\n");
    for f in ["r0.out", "r1.out", "r2.out", "c.out"] {
        let want = std::fs::read_to_string(refdir.join(f)).unwrap();
        assert_eq!(env.read(f), want, "{f} differs from an uninterrupted run");
    }
}

/// A parent and its child write one file through one shared offset (taking
/// turns over two pipes): after two kill/restart cycles the file is that of
/// an uninterrupted run, so the offset is shared again (with two offsets
/// they would overwrite each other's lines).
#[test]
fn file_written_through_one_shared_offset() {
    let env = Env::new("sharedfile");
    let prog = env.compile("sharedfile", &[]);
    let args = ["40", "30"];
    let refdir = env.dir.join("ref");
    reference(&prog, &args, &refdir);
    let t = Duration::from_secs(90);
    let mut c = env.launch(&[], &prog, &args, "run0.out");
    env.wait_lines("log.txt", 20, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 2, "{images:?}");
    env.wait_lines("log.txt", env.read("log.txt").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);

    let mut r = env.restart(&images, "run1.out");
    env.wait_lines("log.txt", 50, t);
    let images = env.checkpoint(&[]);
    env.wait_lines("log.txt", env.read("log.txt").lines().count() + 2, t);
    env.kill_all(&mut [&mut r]);

    let mut r = env.restart(&images, "run2.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restart failed: {st:?}");
    let want = std::fs::read_to_string(refdir.join("log.txt")).unwrap();
    assert_eq!(
        env.read("log.txt"),
        want,
        "log.txt differs from an uninterrupted run"
    );
    assert_eq!(
        env.read("run2.out"),
        format!("done 1 offset {}\n", want.len())
    );
}

/// Shared memory between a parent and its child (anonymous MAP_SHARED, a
/// POSIX shm segment still linked and one unlinked), written in turns:
/// after two kill/restart cycles each still sees the other's writes, and
/// the logs are those of an uninterrupted run.
#[test]
fn anonymous_and_posix_shared_memory() {
    let env = Env::new("shm");
    let prog = env.compile("shm", &[]);
    let args = ["40", "30"];
    let refdir = env.dir.join("ref");
    reference(&prog, &args, &refdir);
    let t = Duration::from_secs(90);
    let mut c = env.launch(&[], &prog, &args, "run0.out");
    env.wait_lines("c.out", 12, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 2, "{images:?}");
    // One process saves each segment: the parent (the child skips what
    // its parent, also under hiber, maps).
    let stored: Vec<usize> = images
        .iter()
        .map(|img| {
            let out = env.run(&["inspect", img.to_str().unwrap()]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("rw-s") && !l.contains("stored        0 B"))
                .count()
        })
        .collect();
    stored
        .iter()
        .for_each(|&n| assert!(n == 0 || n == 3, "{stored:?}"));
    assert_eq!(
        stored.iter().sum::<usize>(),
        3,
        "each segment saved once: {stored:?}"
    );
    env.wait_lines("c.out", env.read("c.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);

    let mut r = env.restart(&images, "run1.out");
    env.wait_lines("c.out", 25, t);
    let images = env.checkpoint(&[]);
    env.wait_lines("c.out", env.read("c.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut r]);

    let mut r = env.restart(&images, "run2.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restart failed: {st:?}");
    assert_eq!(env.read("run2.out"), "done 1\n");
    for f in ["p.out", "c.out"] {
        let want = std::fs::read_to_string(refdir.join(f)).unwrap();
        assert_eq!(env.read(f), want, "{f} differs from an uninterrupted run");
    }
}

/// One shared memory object mapped as two areas (`mprotect` split it): a
/// restart writes the saved pages of both into the recreated object and
/// sizes it for both (it used to fill the first only and leave the object
/// too short for the second, which then raised SIGBUS).
#[test]
fn shared_memory_split_into_two_areas() {
    let env = Env::new("shmsplit");
    let prog = env.compile("shmsplit", &[]);
    let args = ["60", "30"];
    let reference = hiber_e2e::output(Command::new(&prog).args(args)).unwrap();
    assert!(reference.status.success());
    let reference = String::from_utf8_lossy(&reference.stdout).into_owned();
    hiber_e2e::kill_restart_cycles(&env, &reference, &[], &prog, &args, 2);
}

/// `--ckpt-open-files`: a file the program rewrites in place gets its
/// checkpoint contents back (the killed run went on changing it), and a
/// deleted-but-open file (always saved) is recreated, still unlinked, with
/// its contents. Two kill/restart cycles against an uninterrupted run.
#[test]
fn open_file_contents_and_deleted_open_file() {
    let env = Env::new("files");
    let prog = env.compile("files", &[]);
    let args = ["40", "30"];
    let refdir = env.dir.join("ref");
    std::fs::create_dir_all(&refdir).unwrap();
    let reference = hiber_e2e::output(Command::new(&prog).args(args).current_dir(&refdir)).unwrap();
    assert!(reference.status.success());
    let reference = String::from_utf8_lossy(&reference.stdout).into_owned();
    hiber_e2e::kill_restart_cycles(&env, &reference, &["--ckpt-open-files"], &prog, &args, 2);
}

/// vfork + exec in a loop (how dash runs commands): the vfork child must
/// not leave the parent's wrapper lock held (every later checkpoint would
/// wait for it in vain). Two kill/restart cycles.
#[test]
fn vfork_and_exec_loop() {
    let env = Env::new("vforker");
    let prog = env.compile("vforker", &[]);
    let args = ["60", "20"];
    let reference = hiber_e2e::output(Command::new(&prog).args(args)).unwrap();
    assert!(reference.status.success());
    let reference = String::from_utf8_lossy(&reference.stdout).into_owned();
    hiber_e2e::kill_restart_cycles(&env, &reference, &[], &prog, &args, 2);
}

/// A pipe whose writer wrote everything and exited before the checkpoint:
/// its bytes come back, then end-of-file. Two kill/restart cycles.
#[test]
fn pipe_with_data_left_by_an_exited_writer() {
    let env = Env::new("leftover");
    let prog = env.compile("leftover", &[]);
    let args = ["40", "30"];
    let reference = hiber_e2e::output(Command::new(&prog).args(args)).unwrap();
    assert!(reference.status.success());
    let reference = String::from_utf8_lossy(&reference.stdout).into_owned();
    hiber_e2e::kill_restart_cycles(&env, &reference, &[], &prog, &args, 2);
}

/// Children forked continuously while checkpoints happen: each is part of
/// the generation its parent is in (the parent's fork returns only once the
/// child joined), so after two kill/restart cycles every child is reaped
/// with its exit code.
#[test]
fn children_forked_continuously_are_all_reaped() {
    let env = Env::new("forkchurn");
    let prog = env.compile("forkchurn", &[]);
    let args = ["60", "20"];
    let reference = hiber_e2e::output(Command::new(&prog).args(args)).unwrap();
    assert!(reference.status.success());
    let reference = String::from_utf8_lossy(&reference.stdout).into_owned();
    hiber_e2e::kill_restart_cycles(&env, &reference, &[], &prog, &args, 2);
}

/// Exec contagion under checkpoints: a parent and its child each exec
/// themselves every 25 ms (the child with an empty environment), so a run
/// of checkpoints in a row finds them in and around `exec`; the connection
/// to the coordinator goes across each exec. Two kill/restart cycles give
/// the outputs of an uninterrupted run. First, a statically linked program
/// (which cannot load the agent) leaves the computation when exec'd and
/// inherits no coordinator connection.
#[test]
fn exec_chain_through_checkpoints_and_a_static_program() {
    let env = Env::new("execchain");
    let prog = env.compile("execchain", &[]);
    let probe = env.compile("fdprobe", &["-static"]);
    let args = ["160", "25", probe.to_str().unwrap()];
    let refdir = env.dir.join("ref");
    reference(&prog, &args, &refdir);
    let t = Duration::from_secs(90);
    let mut c = env.launch(&[], &prog, &args, "run0.out");
    env.wait_lines("probe.out", 1, t);
    let list = env.run(&["list", "--json"]);
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let procs: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        procs.as_array().unwrap().len(),
        1,
        "the static program is not a member: {list}"
    );
    assert_eq!(env.read("probe.out"), "fd 900 closed\n");

    env.wait_lines("k.out", 10, t);
    let mut images = Vec::new();
    for _ in 0..4 {
        images = env.checkpoint(&[]);
        assert_eq!(images.len(), 2, "parent and child: {images:?}");
    }
    env.wait_lines("k.out", env.read("k.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);

    let mut r = env.restart(&images, "run1.out");
    env.wait_lines("k.out", env.read("k.out").lines().count() + 10, t);
    for _ in 0..3 {
        images = env.checkpoint(&[]);
        assert_eq!(images.len(), 2, "parent and child: {images:?}");
    }
    env.wait_lines("k.out", env.read("k.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut r]);

    let mut r = env.restart(&images, "run2.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restarted chain failed: {st:?}");
    for f in ["p.out", "k.out", "probe.out"] {
        let want = std::fs::read_to_string(refdir.join(f)).unwrap();
        assert_eq!(env.read(f), want, "{f} differs from an uninterrupted run");
    }
}

/// Processes whose checkpoint thread is started only by the checkpoint
/// (dormant), caught computing in their own code, blocked in `read`,
/// inside libc (memset/memcpy), and in `waitpid`: three checkpoints in a
/// row, then two kill/restart cycles; every output as in an uninterrupted
/// run.
#[test]
fn dormant_processes_caught_anywhere() {
    let env = Env::new("dormant");
    let prog = env.compile("dormant", &[]);
    let args = ["60"];
    let refdir = env.dir.join("ref");
    reference(&prog, &args, &refdir);
    let t = Duration::from_secs(90);
    let mut c = env.launch(&[], &prog, &args, "run0.out");
    env.wait_lines("reader.out", 5, t);
    let mut images = Vec::new();
    for _ in 0..3 {
        images = env.checkpoint(&[]);
        assert_eq!(
            images.len(),
            5,
            "parent, three children, feeder: {images:?}"
        );
    }
    env.wait_lines("reader.out", env.read("reader.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);

    let mut r = env.restart(&images, "run1.out");
    env.wait_lines("reader.out", env.read("reader.out").lines().count() + 5, t);
    images = env.checkpoint(&[]);
    assert_eq!(images.len(), 5, "{images:?}");
    env.kill_all(&mut [&mut r]);

    let mut r = env.restart(&images, "run2.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restarted processes failed: {st:?}");
    for f in ["p.out", "busy.out", "reader.out", "libc.out"] {
        let want = std::fs::read_to_string(refdir.join(f)).unwrap();
        assert_eq!(env.read(f), want, "{f} differs from an uninterrupted run");
    }
}

/// A computation launched with its standard error redirected to a file
/// only another user may write (root's log, as `sudo -u user hiber launch
/// ... 2>>log` leaves it) restarts as that user: the file cannot be opened
/// again, so the processes get `hiber restart`'s own stderr, with a
/// warning, instead of the restart failing.
#[test]
fn stderr_file_of_another_user_becomes_the_restarts_own() {
    let mut env = Env::new("stdio-user");
    let Some((uid, gid)) = hiber_e2e::unprivileged_user() else {
        // Not root: no other user to run as. CI runs as root and must not
        // skip this.
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs root (to run hiber as another user)"
        );
        return;
    };
    env.become_user(uid, gid);
    let prog = env.compile("ring", &[]);
    let args = ["40", "40"];
    let refdir = env.dir.join("ref");
    reference(&prog, &args, &refdir);
    let log = env.dir.join("root.log");
    std::fs::write(&log, "").unwrap();
    std::os::unix::fs::chown(&log, Some(0), Some(0)).unwrap();
    let t = Duration::from_secs(90);
    let mut cmd = env.cmd();
    cmd.arg("launch")
        .arg(&prog)
        .args(args)
        .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap());
    let mut c = env.spawn(cmd, "run0.out");
    env.wait_lines("r1.out", 12, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 4, "{images:?}");
    env.kill_all(&mut [&mut c]);
    let mut r = env.restart(&images, "run1.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restart as the user failed: {st:?}");
    for f in ["r0.out", "r1.out", "r2.out", "c.out"] {
        let want = std::fs::read_to_string(refdir.join(f)).unwrap();
        assert_eq!(env.read(f), want, "{f} differs from an uninterrupted run");
    }
}
