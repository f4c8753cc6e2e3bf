//! Carrying the agent across `exec`.
//!
//! A process of the computation that execs stays in it: the new program
//! loads the agent again through `LD_PRELOAD` and goes on as the same
//! process of the computation before `main`. Programs that build a fresh
//! environment for their children (`env -i`, `execle` with a short list,
//! daemons clearing `environ`) would drop it; so the exec wrappers add back
//! `LD_PRELOAD` (with the agent first if the program set its own) and every
//! `HIBER_*` variable the process started with, and give `HIBER_COORD` the
//! coordinator's current address (after a restart it may have moved).
//!
//! The coordinator connection itself is handed over: the wrapper clears its
//! close-on-exec flag and names it in `HIBER_CONN`, and the new image's
//! agent adopts it (`checkpoint::start`). That saves a connect and a round
//! trip per exec, and the process never leaves the computation, so a
//! checkpoint racing with the exec cannot miss it. Only when the new
//! program will load the agent: a dynamically linked executable or a
//! script, not set-user/group-ID (those ignore `LD_PRELOAD`); a static
//! program would otherwise inherit a socket it knows nothing of, and keep
//! the coordinator waiting for it.

use std::ffi::{CStr, CString, c_char, c_int};
use std::sync::atomic::Ordering::{Acquire, Relaxed};

use crate::config::{Adopt, CONN_VAR};

/// What an exec wrapper is about to run.
pub enum Target {
    /// A path, as `execve` takes it.
    Path(*const c_char),
    /// A file name searched in `PATH` when it has no slash (`execvp`).
    Search(*const c_char),
    /// An open file (`fexecve`).
    Fd(c_int),
}

/// The environment for one exec, and the connection handed over in it.
pub struct Prepared {
    env: Option<Env>,
    /// Descriptor whose close-on-exec flag was cleared for the new image.
    handed: Option<i32>,
    /// A dormant process's socket was set back to plain I/O for the exec.
    quieted: bool,
}

impl Prepared {
    /// The environment to pass: ours if we built one, else `default`.
    pub fn envp(&self, default: *const *const c_char) -> *const *const c_char {
        self.env.as_ref().map_or(default, Env::as_ptr)
    }

    /// The exec returned, so it failed: the connection stays ours and
    /// close-on-exec again. Leaves `errno` alone.
    pub fn failed(self) {
        if let Some(fd) = self.handed {
            let _ = hiber_sys::fcntl(fd, libc::F_SETFD as u32, libc::FD_CLOEXEC as u64);
        }
        if self.quieted {
            crate::threads::dormant::exec_failed();
        }
    }
}

/// Builds the environment for an exec of `target` (see the module docs).
///
/// # Safety
/// `envp` is null or a null-terminated array of NUL-terminated strings;
/// the pointer in `target` is a NUL-terminated string.
pub unsafe fn prepare(envp: *const *const c_char, target: Target) -> Prepared {
    let cfg = crate::config::get();
    if !cfg.enabled || !crate::capi::STARTED.load(Acquire) {
        return Prepared {
            env: None,
            handed: None,
            quieted: false,
        };
    }
    let s = crate::checkpoint::shared();
    let fd = crate::checkpoint::COORD_FD.load(Relaxed);
    let hand_over = fd >= 0 && !s.standalone && !s.coord.is_empty() && crate::gate::is_owner() && {
        // SAFETY: caller's contract.
        unsafe { loads_agent(&target) }
    };
    let conn = hand_over.then(|| {
        Adopt {
            pid: hiber_sys::getpid(),
            fd,
            computation: s.computation,
            process_id: s.process_id,
            generation: s.generation,
            host_pid: s.host_pid,
            local: s.local.clone(),
        }
        .encode()
    });
    // SAFETY: caller's contract.
    let env = unsafe { build(envp, &cfg.carried, &s.coord, conn.as_deref()) };
    let handed = if hand_over && hiber_sys::fcntl(fd, libc::F_SETFD as u32, 0).is_ok() {
        Some(fd)
    } else {
        None
    };
    // Not in a vfork child: the socket's flags are its parent's too.
    let quieted = crate::gate::is_owner() && crate::threads::dormant::before_exec();
    // A handover we could not arm must not be announced.
    let env = if hand_over && handed.is_none() {
        // SAFETY: caller's contract.
        unsafe { build(envp, &cfg.carried, &s.coord, None) }
    } else {
        env
    };
    Prepared {
        env,
        handed,
        quieted,
    }
}

/// Whether the program `target` names will load the agent: a dynamically
/// linked ELF executable (it has an interpreter) or a `#!` script, and not
/// set-user/group-ID. Unreadable or unknown: no.
///
/// # Safety
/// The pointer in `target` is a NUL-terminated string.
unsafe fn loads_agent(target: &Target) -> bool {
    let (fd, owned) = match target {
        Target::Fd(fd) => (*fd, false),
        // SAFETY: caller's contract.
        Target::Path(p) => match hiber_sys::open(unsafe { CStr::from_ptr(*p) }, OPEN_FLAGS, 0) {
            Ok(fd) => (fd as i32, true),
            Err(_) => return false,
        },
        // SAFETY: caller's contract.
        Target::Search(f) => match search_path(unsafe { CStr::from_ptr(*f) }) {
            Some(fd) => (fd, true),
            None => return false,
        },
    };
    let yes = runs_with_agent(fd);
    if owned {
        let _ = hiber_sys::close(fd);
    }
    yes
}

const OPEN_FLAGS: u32 = (libc::O_RDONLY | libc::O_CLOEXEC) as u32;

/// Opens the file `execvp` would run: `file` itself if it has a slash, else
/// the first executable regular file of that name in `PATH`.
fn search_path(file: &CStr) -> Option<i32> {
    let name = file.to_bytes();
    if name.contains(&b'/') {
        return hiber_sys::open(file, OPEN_FLAGS, 0)
            .ok()
            .map(|fd| fd as i32);
    }
    if name.is_empty() {
        return None;
    }
    let path = std::env::var_os("PATH");
    let path = path
        .as_ref()
        .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
        .unwrap_or(b"/bin:/usr/bin");
    for dir in path.split(|&b| b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let mut full = Vec::with_capacity(dir.len() + name.len() + 2);
        full.extend_from_slice(dir);
        full.push(b'/');
        full.extend_from_slice(name);
        let Ok(full) = CString::new(full) else {
            continue;
        };
        // SAFETY: a NUL-terminated path.
        if unsafe { libc::access(full.as_ptr(), libc::X_OK) } != 0 {
            continue;
        }
        if let Ok(fd) = hiber_sys::open(&full, OPEN_FLAGS, 0) {
            return Some(fd as i32);
        }
    }
    None
}

/// See [`loads_agent`], for an open file.
fn runs_with_agent(fd: i32) -> bool {
    // SAFETY: fstat into a local.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0
        || st.st_mode & libc::S_IFMT != libc::S_IFREG
        || st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0
    {
        return false;
    }
    // File capabilities put the program in secure-execution mode, where
    // the loader ignores LD_PRELOAD with a path.
    // SAFETY: a size query (null buffer) on our descriptor.
    if unsafe { libc::fgetxattr(fd, c"security.capability".as_ptr(), std::ptr::null_mut(), 0) } > 0
    {
        return false;
    }
    let mut head = [0u8; 64];
    match hiber_sys::pread(fd, &mut head, 0) {
        Ok(n) if n >= 2 && head.starts_with(b"#!") => return true,
        Ok(64) => {}
        _ => return false,
    }
    if !head.starts_with(b"\x7fELF") {
        return false;
    }
    let phoff = u64::from_le_bytes(head[0x20..0x28].try_into().unwrap_or_default());
    let phentsize = u16::from_le_bytes([head[0x36], head[0x37]]) as usize;
    let phnum = (u16::from_le_bytes([head[0x38], head[0x39]]) as usize).min(64);
    if phentsize < 56 {
        return false;
    }
    let mut ph = vec![0u8; phentsize * phnum];
    if hiber_sys::pread(fd, &mut ph, phoff) != Ok(ph.len()) {
        return false;
    }
    const PT_INTERP: u32 = 3;
    ph.chunks_exact(phentsize)
        .any(|e| u32::from_le_bytes([e[0], e[1], e[2], e[3]]) == PT_INTERP)
}

/// A replacement environment, kept alive until the exec.
pub struct Env {
    _strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl Env {
    pub fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

/// The environment `envp` with the agent's variables added back, or
/// `None` when nothing needs to change (or the agent is not active here).
/// For a new process (`posix_spawn`): no connection is handed over.
///
/// # Safety
/// `envp` is null or a null-terminated array of NUL-terminated strings.
pub unsafe fn with_agent(envp: *const *const c_char) -> Option<Env> {
    let cfg = crate::config::get();
    if !cfg.enabled || !crate::capi::STARTED.load(Acquire) {
        return None;
    }
    let coord = crate::checkpoint::shared().coord;
    // SAFETY: caller's contract.
    unsafe { build(envp, &cfg.carried, &coord, None) }
}

/// `envp` merged with the agent's variables (see [`merge`]); `None` when
/// that changes nothing.
///
/// # Safety
/// `envp` is null or a null-terminated array of NUL-terminated strings.
unsafe fn build(
    envp: *const *const c_char,
    carried: &[(String, String)],
    coord: &str,
    conn: Option<&str>,
) -> Option<Env> {
    let mut vars: Vec<Vec<u8>> = Vec::new();
    if !envp.is_null() {
        let mut p = envp;
        // SAFETY: a null-terminated array of C strings (caller's contract).
        unsafe {
            while !(*p).is_null() {
                vars.push(CStr::from_ptr(*p).to_bytes().to_vec());
                p = p.add(1);
            }
        }
    }
    if !merge(&mut vars, carried, coord, conn) {
        return None;
    }
    let strings: Vec<CString> = vars
        .into_iter()
        .filter_map(|v| CString::new(v).ok())
        .collect();
    let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    Some(Env {
        _strings: strings,
        ptrs,
    })
}

/// Adds the `carried` variables missing from `vars`, makes sure
/// `LD_PRELOAD` names the agent, sets `HIBER_COORD` to `coord` (when
/// known) and `HIBER_CONN` to `conn` (removing any other). Returns whether
/// anything changed.
fn merge(
    vars: &mut Vec<Vec<u8>>,
    carried: &[(String, String)],
    coord: &str,
    conn: Option<&str>,
) -> bool {
    let find = |vars: &[Vec<u8>], k: &str| {
        vars.iter()
            .position(|v| v.len() > k.len() && v.starts_with(k.as_bytes()) && v[k.len()] == b'=')
    };
    let before = vars.len();
    vars.retain(|v| !(v.starts_with(CONN_VAR.as_bytes()) && v.get(CONN_VAR.len()) == Some(&b'=')));
    let mut changed = vars.len() != before;
    if let Some(c) = conn {
        vars.push(format!("{CONN_VAR}={c}").into_bytes());
        changed = true;
    }
    for (k, v) in carried {
        let value = if k == "HIBER_COORD" && !coord.is_empty() {
            coord
        } else {
            v.as_str()
        };
        let entry = format!("{k}={value}").into_bytes();
        match find(vars, k) {
            None => {
                vars.push(entry);
                changed = true;
            }
            Some(i) if k == "HIBER_COORD" && vars[i] != entry => {
                vars[i] = entry;
                changed = true;
            }
            Some(i) if k == "LD_PRELOAD" => {
                // The agent's path is the first element of the launched
                // LD_PRELOAD; the program's own list may lack it.
                let agent = v.split([':', ' ']).find(|p| p.ends_with("libhiber.so"));
                let current = String::from_utf8_lossy(&vars[i][k.len() + 1..]).into_owned();
                if let Some(agent) = agent
                    && !current.split([':', ' ']).any(|p| p == agent)
                {
                    vars[i] = format!("{k}={agent}:{current}").into_bytes();
                    changed = true;
                }
            }
            Some(_) => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::{merge, runs_with_agent};

    fn carried() -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), "/opt/hiber/libhiber.so".into()),
            ("HIBER_LAUNCHED".into(), "1".into()),
            ("HIBER_COORD".into(), "127.0.0.1:7779".into()),
        ]
    }

    #[test]
    fn a_cleared_environment_gets_the_agent_back() {
        let mut v = Vec::new();
        assert!(merge(&mut v, &carried(), "127.0.0.1:9000", None));
        assert_eq!(
            v,
            vec![
                b"LD_PRELOAD=/opt/hiber/libhiber.so".to_vec(),
                b"HIBER_LAUNCHED=1".to_vec(),
                b"HIBER_COORD=127.0.0.1:9000".to_vec(),
            ]
        );
    }

    #[test]
    fn a_complete_environment_is_left_alone() {
        let mut v = vec![
            b"PATH=/bin".to_vec(),
            b"LD_PRELOAD=/opt/hiber/libhiber.so:/x/libfoo.so".to_vec(),
            b"HIBER_LAUNCHED=1".to_vec(),
            b"HIBER_COORD=127.0.0.1:9000".to_vec(),
        ];
        assert!(!merge(&mut v, &carried(), "127.0.0.1:9000", None));
    }

    #[test]
    fn the_programs_own_preload_keeps_the_agent_first() {
        let mut v = vec![b"LD_PRELOAD=/x/libfoo.so".to_vec()];
        assert!(merge(&mut v, &carried(), "", None));
        assert_eq!(
            v[0],
            b"LD_PRELOAD=/opt/hiber/libhiber.so:/x/libfoo.so".to_vec()
        );
        assert!(v.contains(&b"HIBER_COORD=127.0.0.1:7779".to_vec()));
    }

    #[test]
    fn the_connection_goes_to_the_next_image_only() {
        let mut v = vec![b"PATH=/bin".to_vec(), b"HIBER_CONN=5:1:2:3:0".to_vec()];
        assert!(merge(&mut v, &[], "", Some("7:900:a:1:0:0:")));
        assert_eq!(
            v,
            vec![b"PATH=/bin".to_vec(), b"HIBER_CONN=7:900:a:1:0:0:".to_vec()]
        );
        assert!(merge(&mut v, &[], "", None));
        assert_eq!(v, vec![b"PATH=/bin".to_vec()]);
    }

    fn opens(path: &str) -> i32 {
        let c = std::ffi::CString::new(path).unwrap();
        // SAFETY: a NUL-terminated path.
        unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }
    }

    #[test]
    fn dynamic_programs_and_scripts_load_the_agent() {
        let sh = opens("/bin/sh");
        assert!(sh >= 0);
        assert!(runs_with_agent(sh), "/bin/sh is dynamically linked");
        // SAFETY: our descriptor.
        unsafe { libc::close(sh) };
        let dir = std::env::temp_dir().join(format!("hiber-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("s");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        let text = dir.join("t");
        std::fs::write(&text, vec![0u8; 100]).unwrap();
        let fd = opens(script.to_str().unwrap());
        assert!(runs_with_agent(fd));
        // SAFETY: our descriptor.
        unsafe { libc::close(fd) };
        let fd = opens(text.to_str().unwrap());
        assert!(!runs_with_agent(fd), "not an executable format");
        // SAFETY: our descriptor.
        unsafe { libc::close(fd) };
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
