//! Descriptors hiber cannot recreate (issue "Sockets, terminals, event fds
//! and IPC"): the checkpoint still succeeds, the restart puts a placeholder
//! at each one's number with its close-on-exec flag and names it in a
//! warning, and the computation goes on. `O_PATH` descriptors are not
//! among them: they are reopened as `O_PATH`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use hiber_e2e::{Env, ShowStderr};

/// `oddfds` opens O_PATH descriptors (file, directory, symbolic link,
/// FIFO), a pidfd, a netlink socket, an io_uring with its rings mapped and
/// a perf counter with its ring buffer mapped, then reports every round whether each is still open (and with
/// which close-on-exec flag) and whether the O_PATH ones still work. Two
/// launch → checkpoint → SIGKILL all → restart cycles give the output of an
/// uninterrupted run, and the first restart warns once about every
/// descriptor and mapping it could only replace.
#[test]
fn unsupported_fds_become_placeholders() {
    let env = Env::new("oddfds");
    let _show = ShowStderr(&env, &["launch.err", "restart1.err", "restart2.err"]);
    let prog = env.compile("oddfds", &[]);
    let args = ["80", "40"];
    let refdir = env.dir.join("ref");
    std::fs::create_dir_all(&refdir).unwrap();
    let st = hiber_e2e::status(Command::new(&prog).args(args).current_dir(&refdir)).unwrap();
    assert!(st.success(), "reference run failed: {st:?}");
    let reference = std::fs::read_to_string(refdir.join("odd.out")).unwrap();
    let perf = reference.lines().any(|l| l.starts_with("perf counting"));
    if !perf {
        println!("perf_event_open refused here: the perf part is skipped");
    }
    let uring = reference.lines().any(|l| l == "uring rings mapped");
    if !uring {
        println!("io_uring refused here: the io_uring part is skipped");
    }

    let t = Duration::from_secs(90);
    // The program's stderr is a pipe to outside the computation, so that a
    // restart binds it to `hiber restart`'s own: the agent's warnings land
    // in restart<N>.err with those of `hiber restart` itself.
    let mut cmd = env.cmd();
    cmd.arg("launch")
        .arg(&prog)
        .args(args)
        .stderr(Stdio::piped());
    let mut c = env.spawn(cmd, "run0.out");
    let mut err = c.stderr.take().unwrap();
    let mut log = env.stderr_file("launch.err");
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut err, &mut log);
    });
    env.wait_lines("odd.out", 8, t);
    let images = env.checkpoint(&[]);
    env.wait_lines("odd.out", env.read("odd.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);

    let restart = |images: &[PathBuf], n: usize| {
        let mut cmd = env.cmd();
        cmd.arg("restart")
            .args(images)
            .stderr(env.stderr_file(&format!("restart{n}.err")));
        env.spawn(cmd, &format!("run{n}.out"))
    };
    let mut r = restart(&images, 1);
    // The restart cut odd.out back to its checkpoint length: wait for new
    // rounds past the killed run's last one.
    let killed_at = env.read("odd.out").lines().count();
    env.wait_lines("odd.out", killed_at + 3, t);
    let images = env.checkpoint(&[]);
    env.wait_lines("odd.out", env.read("odd.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut r]);

    let mut r = restart(&images, 2);
    let st = env.wait(&mut r, t);
    assert!(st.success(), "the restarted program failed: {st:?}");
    let got = env.read("odd.out");
    for (i, (g, w)) in got.lines().zip(reference.lines()).enumerate() {
        assert_eq!(
            g,
            w,
            "odd.out line {} differs from an uninterrupted run",
            i + 1
        );
    }
    assert_eq!(
        got.lines().count(),
        reference.lines().count(),
        "odd.out has not as many lines as an uninterrupted run"
    );

    // pidfd_open (Linux 5.3) and netlink may be refused too (seccomp).
    let opened = |what: &str| {
        reference
            .lines()
            .next()
            .is_some_and(|l| l.contains(&format!(" {what} 1")))
    };
    let mut kinds = Vec::new();
    if opened("pidfd") {
        kinds.push("anon_inode:[pidfd]");
    }
    if opened("netlink") {
        kinds.push("netlink socket");
    }
    if uring {
        kinds.push("anon_inode:[io_uring]");
    }
    if perf {
        kinds.push("anon_inode:[perf_event]");
    }
    // The first restart replaced them: its warnings (the agent's come
    // through the program's stderr, a pipe to outside, now bound to `hiber
    // restart`'s) name each. The second image holds the placeholders
    // (`/dev/null`, private memory), which come back without a word.
    let err = env.read("restart1.err");
    let warned = |what: &str, about: &str| {
        err.lines()
            .filter(|l| l.contains("warning") && l.contains(what) && l.contains(about))
            .count()
    };
    for kind in &kinds {
        assert_eq!(
            warned(kind, "fd "),
            1,
            "no warning about the {kind} descriptor: {err}"
        );
    }
    // The io_uring's three rings (and the perf ring buffer) become plain
    // memory, with a warning each.
    if uring {
        assert_eq!(
            warned("anon_inode:[io_uring]", "mapping"),
            3,
            "one warning per io_uring ring: {err}"
        );
    }
    if perf {
        assert_eq!(
            warned("anon_inode:[perf_event]", "mapping"),
            1,
            "no warning about the perf ring buffer: {err}"
        );
    }
    // O_PATH descriptors come back for real, silently.
    let dir = env.dir.display().to_string();
    for f in ["data.txt", "link", "fifo"] {
        assert_eq!(
            warned(&format!("{dir}/{f}"), ""),
            0,
            "warned about the O_PATH descriptor of {f}: {err}"
        );
    }
    assert!(
        !env.read("restart2.err").contains("cannot be restored"),
        "the second restart warned again: {}",
        env.read("restart2.err")
    );
}
