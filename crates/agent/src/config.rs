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
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Default checkpoint signal: a real-time signal, because `mpirun` and many
/// programs use SIGUSR1/SIGUSR2 themselves. glibc reserves 32 and 33.
pub const DEFAULT_SIGNAL: u32 = 62;

pub fn init() {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
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
        carried: std::env::vars()
            .filter(|(k, _)| k == "LD_PRELOAD" || k.starts_with("HIBER_"))
            .collect(),
    };
    let _ = CONFIG.set(cfg);
}

pub fn get() -> &'static Config {
    CONFIG.get_or_init(|| Config {
        enabled: false,
        coord: String::new(),
        ckpt_dir: ".".into(),
        compress: true,
        sync: true,
        ckpt_signal: DEFAULT_SIGNAL,
        debug: false,
        carried: Vec::new(),
        ckpt_open_files: false,
    })
}

/// Whether this process is the `hiber` command itself (which exports
/// `HIBER_CLI`): run from inside a computation, it must not join it.
fn is_hiber_cli() -> bool {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
    !unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"HIBER_CLI".as_ptr()) }.is_null()
}
