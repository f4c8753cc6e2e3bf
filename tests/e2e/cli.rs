//! The command-line contract around a checkpoint: bad images, missing
//! coordinators, concurrent requests, interval checkpoints, JSON output,
//! unprivileged use.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hiber_e2e::{Env, Tracked, assert_continuation, kill_restart_cycle};

const T: Duration = Duration::from_secs(60);

fn reference(env: &Env, prog: &Path, steps: &str) -> String {
    let mut cmd = std::process::Command::new(prog);
    if let Some((uid, gid)) = env.user {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid);
    }
    let out = cmd
        .current_dir(&env.dir)
        .args([steps, "0"])
        .arg(env.dir.join("ref.data"))
        .tracked_output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Launches `memory`, checkpoints once, kills everything; returns the image.
fn one_image(env: &Env, flags: &[&str]) -> PathBuf {
    let prog = env.compile("memory", &[]);
    let data = env.dir.join("run.data");
    let mut c = env.launch(
        flags,
        &prog,
        &["200", "20", data.to_str().unwrap()],
        "run.out",
    );
    env.wait_lines("run.out", 3, T);
    let images = env.checkpoint(&[]);
    env.kill_all(&mut [&mut c]);
    images.into_iter().next().unwrap()
}

fn restart_fails(env: &Env, image: &Path, expect: &str) {
    let t = Instant::now();
    let out = env.run(&["restart", image.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restart of a bad image succeeded");
    assert!(
        err.contains(expect),
        "error should mention {expect:?}, got: {err}"
    );
    assert!(
        err.contains(image.file_name().unwrap().to_str().unwrap()),
        "error should name the file: {err}"
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    // Nothing was started: no restorer ran (it would print its own errors).
    assert!(!err.contains("hiber-restore"), "{err}");
}

#[test]
fn bad_images_are_refused_before_anything_runs() {
    let env = Env::new("badimg");
    let good = one_image(&env, &["--no-compress"]);
    let bytes = std::fs::read(&good).unwrap();

    let truncated = env.dir.join("truncated.hiber");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    restart_fails(&env, &truncated, "truncated");

    // A bit flipped in the middle of the page data: only its chunk's crc sees it.
    let flipped = env.dir.join("flipped.hiber");
    let mut b = bytes.clone();
    let mid = 4096 + (b.len() - 8192) / 2;
    b[mid] ^= 0x10;
    std::fs::write(&flipped, &b).unwrap();
    restart_fails(&env, &flipped, "checksum");

    let random = env.dir.join("random.hiber");
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let junk: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&random, junk).unwrap();
    restart_fails(&env, &random, "not a hiber image");

    // format_version sits right after the 8-byte magic.
    let future = env.dir.join("future.hiber");
    let mut b = bytes.clone();
    b[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&future, &b).unwrap();
    restart_fails(&env, &future, "version");

    // The original is still good, and inspect describes it.
    let out = env.run(&["inspect", "--json", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.to_string().contains("memory"), "{v}");
    let out = env.run(&["inspect", flipped.to_str().unwrap(), "--verify"]);
    assert!(!out.status.success());
}

#[test]
fn checkpoint_without_coordinator_or_processes_fails_clearly() {
    let env = Env::new("nocoord");
    let out = env.run(&["checkpoint"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no coordinator"), "{err}");

    let port = env.port.to_string();
    let out = env.run(&["coordinator", "--daemon", "--port", &port]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.run(&["checkpoint"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no processes"), "{err}");
    let out = env.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["processes"], 0);
    assert!(env.run(&["quit"]).status.success());
}

#[test]
fn concurrent_checkpoints_never_interleave() {
    let env = Env::new("concur");
    let prog = env.compile("memory", &[]);
    let data = env.dir.join("run.data");
    let mut c = env.launch(
        &[],
        &prog,
        &["300", "20", data.to_str().unwrap()],
        "run.out",
    );
    env.wait_lines("run.out", 3, T);
    let a = {
        let mut cmd = env.cmd();
        cmd.arg("checkpoint");
        std::thread::spawn(move || cmd.tracked_output().unwrap())
    };
    let b = env.run(&["checkpoint"]);
    let a = a.join().unwrap();
    let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert!(ok >= 1, "neither checkpoint succeeded");
    for o in [&a, &b] {
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("in progress"),
                "a refused checkpoint must say why: {err}"
            );
        }
    }
    // Whatever happened, the image on disk is whole.
    let images = env.checkpoint(&[]);
    let out = env.run(&["inspect", "--verify", images[0].to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.kill_all(&mut [&mut c]);
}

fn generation_of(env: &Env, image: &Path) -> Option<u64> {
    let out = env.run(&["inspect", "--json", image.to_str()?]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["identity"]["generation"].as_u64()
}

#[test]
fn interval_checkpoints_and_newest_image_restarts() {
    let env = Env::new("interval");
    let prog = env.compile("memory", &[]);
    let full = reference(&env, &prog, "120");
    let data = env.dir.join("run.data");
    let mut c = env.launch(
        &["--interval", "1"],
        &prog,
        &["120", "40", data.to_str().unwrap()],
        "run.out",
    );
    env.wait_lines("run.out", 2, T);

    let out = env.run(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["coordinator"], env.coord());
    assert_eq!(st["processes"], 1);
    assert_eq!(st["interval"], 1);
    assert!(
        ["running", "checkpointing"].contains(&st["state"].as_str().unwrap()),
        "{st}"
    );
    let out = env.run(&["list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &list[0];
    assert_eq!(p["program"], "memory");
    assert_eq!(p["host"].as_str().map(|h| !h.is_empty()), Some(true));
    assert!(p["real_pid"].as_u64().unwrap() > 0 && p["virtual_pid"].as_u64().unwrap() > 0);

    // Generations keep coming about once a second.
    let image = |env: &Env| -> Option<PathBuf> {
        std::fs::read_dir(&env.dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "hiber"))
    };
    let t = Instant::now();
    let mut seen = Vec::new();
    while t.elapsed() < Duration::from_secs(20) && seen.len() < 3 {
        if let Some(g) = image(&env).and_then(|i| generation_of(&env, &i))
            && seen.last() != Some(&g)
        {
            seen.push(g);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen.len() >= 3 && seen.windows(2).all(|w| w[1] > w[0]),
        "generations seen: {seen:?}"
    );
    env.kill_all(&mut [&mut c]);
    let before = env.read("run.out");
    let img = image(&env).unwrap();
    let mut r = env.restart(&[img], "restart.out");
    let st = env.wait(&mut r, T);
    assert!(st.success());
    assert_continuation(&full, &before, &env.read("restart.out"), true);
}

/// Restart (and the whole cycle) as an unprivileged user. As root the test
/// creates one; as any other user it already is one.
#[test]
fn unprivileged_user_cycle() {
    let mut env = Env::new("unpriv");
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } == 0 {
        let name = "hibertest";
        if std::process::Command::new("id")
            .arg(name)
            .tracked_output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            let st = std::process::Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ])
                .tracked_status()
                .expect("useradd is needed to test as an unprivileged user");
            // Another test run may have created it meanwhile.
            let exists = || {
                std::process::Command::new("id")
                    .arg(name)
                    .tracked_output()
                    .is_ok_and(|o| o.status.success())
            };
            assert!(st.success() || exists(), "useradd {name} failed");
        }
        let id = |f: &str| -> u32 {
            let o = std::process::Command::new("id")
                .args([f, name])
                .tracked_output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        env.become_user(uid, gid);
    }
    let prog = env.compile("memory", &[]);
    let full = reference(&env, &prog, "50");
    let data = env.dir.join("run.data");
    kill_restart_cycle(
        &env,
        &full,
        &[],
        &prog,
        &["50", "40", data.to_str().unwrap()],
    );
}
