//! The C API (`include/hiber.h`, `docs/c-api.md`), the install layout and
//! the CRS example. As everywhere, a cycle SIGKILLs the program (and its
//! coordinator), restarts it from its image in a fresh process and compares
//! with an uninterrupted run; here the program itself asks for the
//! checkpoint and must see `HIBER_RESTARTED` when it comes back.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hiber_e2e::{Env, assert_continuation, bin_dir, output, status};

const T: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Compiler flags for a program using the API of this build tree.
fn tree_flags() -> Vec<String> {
    let bin = bin_dir();
    vec![
        format!("-I{}", repo().join("include").display()),
        format!("-L{}", bin.display()),
        "-lhiber".into(),
        format!("-Wl,-rpath,{}", bin.display()),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Removes every trace of hiber from a command's environment: the program
/// runs as if hiber did not exist.
fn without_hiber(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HIBER_") || k == "LD_PRELOAD" {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn run_plain(env: &Env, prog: &Path, args: &[&str]) -> String {
    let out = output(
        without_hiber(&mut Command::new(prog))
            .current_dir(&env.dir)
            .args(args),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{} without hiber failed: {}",
        prog.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `scripts/install.sh PREFIX` from the binaries under test (no build).
fn install(env: &Env, prefix: &Path, destdir: Option<&Path>) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/install.sh"))
        .arg(prefix)
        .env("HIBER_BIN_DIR", bin_dir())
        .env_remove("DESTDIR")
        .current_dir(&env.dir);
    if let Some(d) = destdir {
        cmd.env("DESTDIR", d);
    }
    let out = output(&mut cmd).unwrap();
    assert!(
        out.status.success(),
        "install.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn pkg_config(prefix: &Path) -> Vec<String> {
    let out = output(
        Command::new("pkg-config")
            .args(["--cflags", "--libs", "hiber"])
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")),
    )
    .expect("pkg-config must be installed");
    assert!(
        out.status.success(),
        "pkg-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The only image in the test directory whose name starts with `prefix`.
fn only_image(env: &Env, prefix: &str) -> PathBuf {
    let images: Vec<PathBuf> = std::fs::read_dir(&env.dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(prefix) && n.ends_with(".hiber")
        })
        .collect();
    assert_eq!(images.len(), 1, "expected one {prefix}*.hiber: {images:?}");
    images.into_iter().next().unwrap()
}

/// Replaces the outcome of the checkpoint call, the one line that differs
/// between a run without hiber, the run that took the checkpoint and the
/// restarted one, so the rest can be compared line for line.
fn normalize(text: &str, marker: &str) -> String {
    text.lines()
        .map(|l| match l.split_once(marker) {
            Some((head, _)) => format!("{head}{marker}<outcome>\n"),
            None => format!("{l}\n"),
        })
        .collect()
}

fn position(text: &str, line: &str) -> usize {
    text.lines()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no line {line:?} in {text:?}"))
}

#[test]
fn install_and_pkg_config() {
    let env = Env::new("install");
    let prefix = env.dir.join("prefix");
    let said = install(&env, &prefix, None);
    assert!(said.contains(&prefix.display().to_string()), "{said}");
    let modes = [
        ("bin/hiber", 0o755),
        ("lib/libhiber.so", 0o755),
        ("lib/hiber/hiber-restore", 0o755),
        ("include/hiber.h", 0o644),
        ("lib/pkgconfig/hiber.pc", 0o644),
    ];
    for (f, mode) in modes {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(prefix.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{f}");
    }
    assert_eq!(
        std::fs::read(prefix.join("include/hiber.h")).unwrap(),
        std::fs::read(repo().join("include/hiber.h")).unwrap()
    );
    let p = prefix.display();
    assert_eq!(
        pkg_config(&prefix),
        vec![
            format!("-I{p}/include"),
            format!("-L{p}/lib"),
            "-lhiber".into(),
            format!("-Wl,-rpath,{p}/lib"),
        ]
    );

    // DESTDIR stages the files; everything inside still names the prefix.
    let stage = env.dir.join("stage");
    install(&env, Path::new("/opt/hiber-test"), Some(&stage));
    let pc = std::fs::read_to_string(stage.join("opt/hiber-test/lib/pkgconfig/hiber.pc")).unwrap();
    assert!(pc.contains("prefix=/opt/hiber-test\n"), "{pc}");
    assert!(
        pc.contains("Libs: -L${libdir} -lhiber -Wl,-rpath,${libdir}"),
        "{pc}"
    );
    for f in ["bin/hiber", "lib/libhiber.so", "lib/hiber/hiber-restore"] {
        assert!(stage.join("opt/hiber-test").join(f).is_file(), "{f}");
    }

    // A program built from the installed copy runs without hiber: every
    // call reports "not enabled" and nothing else happens.
    let src = env.dir.join("notenabled.c");
    std::fs::write(
        &src,
        r#"#include <hiber.h>
#include <stdio.h>
static void cb(hiber_event_t e, void *d) { (void)e; (void)d; }
int main(void) {
    char buf[256];
    hiber_status_t st;
    int r = hiber_checkpoint();
    printf("enabled %d\n", hiber_is_enabled());
    printf("checkpoint %d %s\n", r, r == HIBER_ENOTENABLED ? "not enabled" : hiber_strerror(r));
    printf("others %d %d %d %lld %d %d %d %d %d %ld\n",
           hiber_disable_checkpoint(), hiber_enable_checkpoint(),
           hiber_register_callback(cb, 0), hiber_generation(),
           hiber_image_path(buf, sizeof buf), hiber_coordinator_status(&st),
           hiber_barrier("x"), hiber_kv_put("k", "v", 1), hiber_get_ckpt_dir(buf, sizeof buf),
           hiber_kv_get("k", buf, sizeof buf));
    printf("message %s\n", hiber_strerror(HIBER_ENOTENABLED));
    return 0;
}
"#,
    )
    .unwrap();
    let prog = env.dir.join("notenabled");
    let flags = pkg_config(&prefix);
    let st = status(
        Command::new("cc")
            .arg("-o")
            .arg(&prog)
            .arg(&src)
            .args(&flags),
    )
    .unwrap();
    assert!(st.success());
    let out = run_plain(&env, &prog, &[]);
    assert_eq!(
        out,
        "enabled 0\ncheckpoint -1 not enabled\nothers -1 -1 -1 -1 -1 -1 -1 -1 -1 -1\n\
         message not running under hiber\n"
    );

    // HIBER_WEAK: no -lhiber at all. Without hiber the functions are
    // absent; under the installed `hiber launch` (which preloads the agent)
    // they are there and enabled.
    let weak_src = env.dir.join("weak.c");
    std::fs::write(
        &weak_src,
        r#"#define HIBER_WEAK
#include <hiber.h>
#include <stdio.h>
int main(void) {
    if (hiber_is_enabled && hiber_is_enabled())
        printf("weak: enabled, checkpoint %s\n",
               hiber_checkpoint() == HIBER_RESUMED ? "resumed" : "failed");
    else
        printf("weak: %s\n", hiber_is_enabled ? "agent present, not enabled" : "no agent");
    return 0;
}
"#,
    )
    .unwrap();
    let weak = env.dir.join("weak");
    let cflags: Vec<&String> = flags.iter().filter(|f| f.starts_with("-I")).collect();
    let st = status(
        Command::new("cc")
            .arg("-o")
            .arg(&weak)
            .arg(&weak_src)
            .args(cflags),
    )
    .unwrap();
    assert!(st.success(), "HIBER_WEAK program must link without -lhiber");
    assert_eq!(run_plain(&env, &weak, &[]), "weak: no agent\n");
    let mut env = env;
    env.bin = prefix.join("bin");
    let out = env.run(&["launch", weak.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "weak: enabled, checkpoint resumed\n"
    );
}

/// The acceptance cycle: the program checkpoints itself in its main loop
/// and is SIGKILLed (with its coordinator) right after `RESUMED`; the
/// restarted process sees `RESTARTED` with all its state.
#[test]
fn api_checkpoint_restarted() {
    let env = Env::new("api-ckpt");
    let prog = env.compile("api_loop", &strs(&tree_flags()));
    let args = ["30", "8", "40"];
    // Without hiber: "not enabled" at step 8, and on it goes.
    let full = run_plain(&env, &prog, &["30", "8", "0"]);
    assert_eq!(full.lines().next(), Some("enabled 0"));
    assert_eq!(position(&full, "ckpt -> not enabled"), 8);
    assert!(full.ends_with("\ndone\n"), "{full}");

    let mut c = env.launch(&[], &prog, &args, "run.out");
    env.wait_for_line("run.out", "ckpt -> RESUMED", T);
    env.kill_all(&mut [&mut c]);
    let before = env.read("run.out");
    assert_eq!(before.lines().next(), Some("enabled 1"));
    let image = only_image(&env, "ckpt_api_loop");

    let mut r = env.restart(&[image], "restart.out");
    let st = env.wait(&mut r, T);
    assert!(st.success(), "restarted program failed: {st:?}");
    let restarted = env.read("restart.out");
    assert_eq!(
        restarted.lines().next(),
        Some("ckpt -> RESTARTED"),
        "{restarted}"
    );
    let m = "ckpt -> ";
    assert_continuation(
        &normalize(&full, m).replacen("enabled 0", "enabled 1", 1),
        &normalize(&before, m),
        &normalize(&restarted, m),
        true,
    );
}

/// MTCP's use: no `hiber launch`, no coordinator, before or after.
#[test]
fn standalone_self_checkpoint() {
    let mut env = Env::new("standalone");
    let prefix = env.dir.join("prefix");
    install(&env, &prefix, None);
    let prog = env.compile("standalone", &strs(&pkg_config(&prefix)));
    env.bin = prefix.join("bin");

    let ref_image = env.dir.join("ref.hiber");
    let full = run_plain(&env, &prog, &["30", "10", "0", ref_image.to_str().unwrap()]);
    assert!(
        full.starts_with("init -> 0 (success), enabled 1\nimage as requested\n"),
        "{full}"
    );
    assert_eq!(position(&full, "ckpt -> RESUMED"), 11);
    assert!(ref_image.is_file(), "the reference run wrote no image");

    let image = env.dir.join("self.hiber");
    let mut cmd = Command::new(&prog);
    without_hiber(&mut cmd)
        .current_dir(&env.dir)
        .args(["30", "10", "40"])
        .arg(&image);
    let mut c = env.spawn(cmd, "run.out");
    env.wait_for_line("run.out", "ckpt -> RESUMED", T);
    let _ = c.kill();
    let _ = c.wait();
    let before = env.read("run.out");
    assert!(image.is_file(), "no image at {}", image.display());

    // `hiber restart IMAGE`, with a coordinator address where nothing
    // listens: a standalone image needs none and must not start one.
    let mut cmd = Command::new(env.bin.join("hiber"));
    without_hiber(&mut cmd)
        .env("HIBER_COORD", env.coord())
        .env("HIBER_COOKIE", env.dir.join("cookie"))
        .current_dir(&env.dir)
        .arg("restart")
        .arg(&image);
    let mut r = env.spawn(cmd, "restart.out");
    env.wait_lines("restart.out", 3, T);
    assert!(
        std::net::TcpStream::connect(env.coord()).is_err(),
        "a coordinator is running for a standalone restart"
    );
    let st = env.wait(&mut r, T);
    assert!(st.success(), "restarted program failed: {st:?}");
    let restarted = env.read("restart.out");
    assert_eq!(
        restarted.lines().next(),
        Some("ckpt -> RESTARTED"),
        "{restarted}"
    );
    let m = "ckpt -> ";
    assert_continuation(
        &normalize(&full, m),
        &normalize(&before, m),
        &normalize(&restarted, m),
        true,
    );
}

/// A checkpoint requested while a thread is inside a critical section
/// starts only when it closes: the callback's PRE_CHECKPOINT comes after
/// "leaving", and the checkpoint command waited for it.
#[test]
fn critical_section_delays_checkpoint() {
    let env = Env::new("critical");
    let mut flags = tree_flags();
    flags.push("-pthread".into());
    let prog = env.compile("critical", &strs(&flags));
    let mut c = env.launch(&[], &prog, &["1500", "4000"], "run.out");
    env.wait_for_line("run.out", "inside (disable -> 0 0)", T);
    let asked = Instant::now();
    let images = env.checkpoint(&[]);
    let took = asked.elapsed();
    assert_eq!(images.len(), 1);
    let out = env.read("run.out");
    let leaving = position(&out, "leaving");
    let pre = position(&out, "callback PRE_CHECKPOINT from main");
    let resume = position(&out, "callback RESUME from main");
    assert!(
        leaving < pre && pre < resume,
        "the checkpoint did not wait for the critical section:\n{out}"
    );
    assert!(
        took > Duration::from_millis(700),
        "hiber checkpoint returned after {took:?}, inside a 1.5 s critical section"
    );
    // hiber_checkpoint() inside a critical section would wait for itself.
    assert!(
        out.contains("checkpoint inside -> -6\n"),
        "expected HIBER_EDEADLK:\n{out}"
    );
    assert!(out.contains("left (enable -> 0 0)\n"), "{out}");

    // The same callback gets RESTART in the restarted process.
    env.kill_all(&mut [&mut c]);
    let mut r = env.restart(&images, "restart.out");
    let st = env.wait(&mut r, T);
    assert!(st.success(), "{st:?}");
    let restarted = env.read("restart.out");
    assert_eq!(
        restarted.lines().collect::<Vec<_>>(),
        ["callback RESTART from main", "done"],
        "{restarted}"
    );
}

/// Reads `plugin.NAME.*.log`, the only one.
fn plugin_log(env: &Env, name: &str) -> Vec<String> {
    let start = format!("plugin.{name}.");
    let logs: Vec<PathBuf> = std::fs::read_dir(&env.dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&start))
        .collect();
    assert_eq!(logs.len(), 1, "expected one log of {name}: {logs:?}");
    std::fs::read_to_string(&logs[0])
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Two processes with a C plugin: events in the documented order, a barrier
/// and the key-value store across both, and RESTART after one `hiber
/// restart A B`.
#[test]
fn plugin_events_and_barrier() {
    let env = Env::new("plugin");
    let prog = env.compile("api_loop", &strs(&tree_flags()));
    let plugin = env.dir.join("plugin.so");
    let st = status(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-g"])
            .arg(format!("-I{}", repo().join("include").display()))
            .arg("-o")
            .arg(&plugin)
            .arg(repo().join("tests/programs/plugin.c")),
    )
    .unwrap();
    assert!(st.success(), "building the plugin");

    let launch = |name: &str, peer: &str| {
        let mut cmd = env.cmd();
        cmd.arg("launch")
            .arg("--with-plugin")
            .arg(&plugin)
            .arg(&prog)
            .args(["100", "0", "50"])
            .env("PLUGIN_NAME", name)
            .env("PLUGIN_PEER", peer)
            .env("PLUGIN_LOG_DIR", &env.dir);
        env.spawn(cmd, &format!("{name}.out"))
    };
    let mut a = launch("a", "b");
    env.wait_lines("a.out", 2, T);
    let mut b = launch("b", "a");
    env.wait_lines("b.out", 3, T);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 2, "{images:?}");
    let checkpointed = [
        "PRE_SUSPEND",
        "kv put ok",
        "barrier ok",
        "kv got hello from PEER",
        "PRE_CHECKPOINT",
        "RESUME",
    ];
    for (name, peer) in [("a", "b"), ("b", "a")] {
        let expect: Vec<String> = checkpointed
            .iter()
            .map(|l| l.replace("PEER", peer))
            .collect();
        assert_eq!(plugin_log(&env, name), expect, "plugin log of {name}");
    }
    let n = env.read("b.out").lines().count();
    env.wait_lines("b.out", n + 2, T);
    env.kill_all(&mut [&mut a, &mut b]);

    let mut r = env.restart(&images, "restart.out");
    let st = env.wait(&mut r, T);
    assert!(st.success(), "{st:?}");
    let restarted = env.read("restart.out");
    assert_eq!(
        restarted.lines().filter(|l| *l == "done").count(),
        2,
        "both processes must finish:\n{restarted}"
    );
    for (name, peer) in [("a", "b"), ("b", "a")] {
        let mut expect: Vec<String> = checkpointed
            .iter()
            .map(|l| l.replace("PEER", peer))
            .collect();
        expect.push("RESTART".into());
        expect.push("restart barrier ok".into());
        assert_eq!(plugin_log(&env, name), expect, "plugin log of {name}");
    }
}

/// examples/crs: built with its Makefile against an installed hiber found by
/// pkg-config, checkpointed through the adapter, killed, and restarted
/// through the adapter's restart (which execs `hiber restart`).
#[test]
fn crs_example_cycle() {
    let mut env = Env::new("crs");
    let prefix = env.dir.join("prefix");
    install(&env, &prefix, None);
    env.bin = prefix.join("bin");
    let out = output(
        Command::new("make")
            .arg("-C")
            .arg(repo().join("examples/crs"))
            .arg(format!("OUT={}", env.dir.display()))
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")),
    )
    .expect("make must be installed");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "make: {log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        log.contains(&format!("-I{}/include", prefix.display())),
        "the Makefile did not use pkg-config: {log}"
    );
    let prog = env.dir.join("crs_example");

    let full = run_plain(&env, &prog, &["40", "10", "0"]);
    assert_eq!(full.lines().next(), Some("crs init: RUNNING"));
    assert_eq!(position(&full, "checkpoint 1: not enabled"), 10);

    let mut c = env.launch(&[], &prog, &["40", "10", "60"], "run.out");
    env.wait_for_line("run.out", "checkpoint 1: CONTINUE", T);
    env.kill_all(&mut [&mut c]);
    let before = env.read("run.out");
    let image = only_image(&env, "ckpt_crs_example");

    let mut restart = Command::new(&prog);
    without_hiber(&mut restart)
        .env("HIBER_COORD", env.coord())
        .env("HIBER_COOKIE", env.dir.join("cookie"))
        .env("CRS_HIBER_HIBER", env.bin.join("hiber"))
        .current_dir(&env.dir)
        .arg("--restart")
        .arg(&image);
    let mut r = env.spawn(restart, "restart.out");
    let st = env.wait(&mut r, T);
    assert!(st.success(), "{st:?}");
    let restarted = env.read("restart.out");
    let lines: Vec<&str> = restarted.lines().collect();
    assert_eq!(lines.first(), Some(&"checkpoint 1: RESTART"), "{restarted}");
    // The restarted process keeps checkpointing through the coordinator
    // `hiber restart` started.
    assert!(lines.contains(&"checkpoint 2: CONTINUE"), "{restarted}");
    assert!(lines.contains(&"checkpoint 3: CONTINUE"), "{restarted}");
    let m = ": ";
    let norm = |t: &str| {
        t.lines()
            .map(|l| {
                if l.starts_with("checkpoint ") {
                    normalize(l, m)
                } else {
                    format!("{l}\n")
                }
            })
            .collect::<String>()
    };
    assert_continuation(&norm(&full), &norm(&before), &norm(&restarted), true);
}
