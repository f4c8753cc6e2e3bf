//! Settings the agent reads from its environment once, at start-up.
//! `hiber launch` sets them; they are inherited by children.

use std::sync::OnceLock;

#[derive(Debug, Clone)]
pub struct Config {
    pub enabled: bool,
    pub coord: String,
    pub ckpt_dir: String,
    pub compress: bool,
    pub sync: bool,
    pub ckpt_signal: u32,
    pub debug: bool,
    /// `LD_PRELOAD` and every `HIBER_*` variable as the process started
    /// with them: carried across an `exec` whose environment lacks them.
    pub carried: Vec<(String, String)>,
    /// `hiber launch --ckpt-open-files`: save the contents of open files.
    pub ckpt_open_files: bool,
    /// The coordinator connection the image before `exec` left open for
    /// this one (`HIBER_CONN`, see `exec.rs`).
    pub adopt: Option<Adopt>,
}

/// What `HIBER_CONN` carries across an `exec`: the connection's descriptor
/// and who this process is in the computation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopt {
    /// The process that exec'd: only the image right after its exec (same
    /// pid) takes the connection, never a child that inherited the
    /// variable through a program that did not load the agent.
    pub pid: u32,
    pub fd: i32,
    pub computation: u64,
    pub process_id: u64,
    pub generation: u64,
    pub host_pid: u32,
    /// The coordinator's local socket name (may be empty).
    pub local: String,
}

/// The variable that hands the connection to the next image.
pub const CONN_VAR: &str = "HIBER_CONN";

impl Adopt {
    pub fn encode(&self) -> String {
        format!(
            "{}:{}:{:x}:{}:{}:{}:{}",
            self.pid,
            self.fd,
            self.computation,
            self.process_id,
            self.generation,
            self.host_pid,
            self.local
        )
    }

    pub fn decode(v: &str) -> Option<Adopt> {
        let mut it = v.split(':');
        let a = Adopt {
            pid: it.next()?.parse().ok()?,
            fd: it.next()?.parse().ok()?,
            computation: u64::from_str_radix(it.next()?, 16).ok()?,
            process_id: it.next()?.parse().ok()?,
            generation: it.next()?.parse().ok()?,
            host_pid: it.next()?.parse().ok()?,
            local: it.next()?.to_string(),
        };
        (it.next().is_none() && a.fd >= 0).then_some(a)
    }
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Default checkpoint signal: a real-time signal, because `mpirun` and many
/// programs use SIGUSR1/SIGUSR2 themselves. glibc reserves 32 and 33.
pub const DEFAULT_SIGNAL: u32 = 62;

pub fn init() {
    // Every exec'd program of the computation runs this: no allocation and
    // no Rust environment lock until we know the agent is on.
    if getenv(c"HIBER_LAUNCHED").is_none() {
        if let Some(v) = getenv(c"HIBER_CONN") {
            // Not ours to keep (see `lib.rs`), but still to close.
            let _ = CONFIG.set(Config {
                adopt: std::str::from_utf8(v)
                    .ok()
                    .and_then(Adopt::decode)
                    .filter(|a| a.pid == hiber_sys::getpid()),
                ..disabled()
            });
            remove_conn_var();
        }
        return;
    }
    // One pass over the environment: every variable we read is in here.
    let carried = ours_in_environ();
    let var = |k: &str| {
        carried
            .iter()
            .find(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let flag = |k: &str, default: bool| match var(k).as_deref() {
        Some("0") | Some("no") | Some("false") => false,
        Some(_) => true,
        None => default,
    };
    let cfg = Config {
        // Only under `hiber launch` (which sets HIBER_LAUNCHED): users
        // export HIBER_COORD for the command line, and a program linked
        // with -lhiber must not join a computation because of that.
        enabled: var("HIBER_LAUNCHED").is_some()
            && var("HIBER_COORD").is_some()
            && !flag("HIBER_DISABLE", false)
            && !is_hiber_cli(),
        coord: var("HIBER_COORD").unwrap_or_default(),
        ckpt_dir: var("HIBER_CKPT_DIR").unwrap_or_else(|| {
            std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| ".".into())
        }),
        compress: flag("HIBER_COMPRESS", true),
        sync: flag("HIBER_SYNC", true),
        ckpt_signal: var("HIBER_CKPT_SIGNAL")
            .and_then(|s| s.parse().ok())
            .filter(|&s| (1..=64).contains(&s) && s != 9 && s != 19 && s != 32 && s != 33)
            .unwrap_or(DEFAULT_SIGNAL),
        debug: flag("HIBER_DEBUG", false),
        ckpt_open_files: flag("HIBER_CKPT_OPEN_FILES", false),
        adopt: var(CONN_VAR)
            .and_then(|v| Adopt::decode(&v))
            .filter(|a| a.pid == hiber_sys::getpid()),
        carried: carried
            .iter()
            .filter(|(k, _)| k != CONN_VAR)
            .cloned()
            .collect(),
    };
    if carried.iter().any(|(k, _)| k == CONN_VAR) {
        remove_conn_var();
    }
    let _ = CONFIG.set(cfg);
}

/// `HIBER_CONN` is meant for this image only: the program and its children
/// must not see it (a child would take a descriptor number for our socket).
fn remove_conn_var() {
    // In the library's constructor, before any thread of ours
    // exists and before the program's main.
    // SAFETY: see just above.
    unsafe { std::env::remove_var(CONN_VAR) };
}

/// The value of `name` in the environment, without allocating.
fn getenv(name: &std::ffi::CStr) -> Option<&'static [u8]> {
    // A NUL-terminated name; the constructor runs before the
    // program can change the environment, and the bytes are only read
    // right away.
    // SAFETY: see just above.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: getenv returns null or a NUL-terminated string.
    (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes())
}

/// `LD_PRELOAD` and every `HIBER_*` variable, straight from `environ`.
fn ours_in_environ() -> Vec<(String, String)> {
    unsafe extern "C" {
        static environ: *const *const libc::c_char;
    }
    let mut out = Vec::new();
    // `environ` is a null-terminated array of NUL-terminated
    // strings, not changed while the constructor runs.
    // SAFETY: see just above.
    unsafe {
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            let entry = std::ffi::CStr::from_ptr(*p).to_bytes();
            p = p.add(1);
            if !(entry.starts_with(b"HIBER_") || entry.starts_with(b"LD_PRELOAD=")) {
                continue;
            }
            let Some(eq) = entry.iter().position(|&b| b == b'=') else {
                continue;
            };
            if let (Ok(k), Ok(v)) = (
                std::str::from_utf8(&entry[..eq]),
                std::str::from_utf8(&entry[eq + 1..]),
            ) {
                out.push((k.to_string(), v.to_string()));
            }
        }
    }
    out
}

pub fn get() -> &'static Config {
    CONFIG.get_or_init(disabled)
}

fn disabled() -> Config {
    Config {
        enabled: false,
        coord: String::new(),
        ckpt_dir: ".".into(),
        compress: true,
        sync: true,
        ckpt_signal: DEFAULT_SIGNAL,
        debug: false,
        carried: Vec::new(),
        ckpt_open_files: false,
        adopt: None,
    }
}

/// Whether this process is the `hiber` command itself (which exports
/// `HIBER_CLI`): run from inside a computation, it must not join it.
fn is_hiber_cli() -> bool {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
    !unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"HIBER_CLI".as_ptr()) }.is_null()
}

#[cfg(test)]
mod tests {
    use super::Adopt;

    #[test]
    fn the_connection_handover_round_trips() {
        let a = Adopt {
            pid: 77,
            fd: 900,
            computation: 0xdead_beef_0123_4567,
            process_id: 12,
            generation: 3,
            host_pid: 0,
            local: "hiber-coordinator-7779-12".into(),
        };
        assert_eq!(Adopt::decode(&a.encode()), Some(a));
        assert_eq!(Adopt::decode("77:900:1:2:3:4"), None);
        assert_eq!(Adopt::decode("77:-1:1:2:3:4:"), None);
        assert_eq!(Adopt::decode("77:900:1:2:3:4::5"), None);
        assert!(Adopt::decode("77:900:1:2:3:4:").is_some());
    }
}
