//! The checkpoint thread: joins the coordinator, waits for checkpoint
//! requests and runs each through the coordinator's barriers:
//!
//! 1. prepare (open the temporary image, allocate every buffer), then stop
//!    the program's threads → barrier `suspended`;
//! 2. capture kernel state and write the image to `*.tmp` (fsynced unless
//!    `--no-sync`) → barrier `written`;
//! 3. rename the image to its final name (only now, once every process of
//!    the computation has written its own), resume the threads, report.
//!
//! An `Abort` at any barrier discards the temporary file and resumes: the
//! previous good image is never touched.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hiber_image::format::{AreaKind, area_flags};
use hiber_image::meta::{ProcessMeta, ThreadMeta};
use hiber_image::{AreaDesc, Identity, Scratch, VdsoIdentity, WriteOptions, Writer};
use hiber_protocol::client::Connection;
use hiber_protocol::cookie::{self, COOKIE_LEN};
use hiber_protocol::{
    CheckpointOptions, FromCoord, ProcessHello, RestartedFrom, Role, TcpRole, ToCoord, barrier,
};

use crate::mechanisms::{self, Capture, Saved};
use crate::mem::{maps, pages};
use crate::threads::{restore, suspend};
use crate::{config, fd, log, state};

/// How long threads get to reach the handler.
const SUSPEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Who this process is in its computation; read again after a restart.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    pub computation: u64,
    pub process_id: u64,
    pub generation: u64,
    pub program: String,
    pub coord: String,
    pub ckpt_dir: String,
    pub compress: bool,
    pub sync: bool,
    pub virtual_pid: u32,
    /// This process's pid as the coordinator's host sees it, when it runs in
    /// a pid namespace of its own (0: the same as `getpid()`).
    pub host_pid: u32,
    /// Checkpointing without a coordinator (`hiber_init_standalone`).
    pub standalone: bool,
    /// Image path chosen by the program (standalone mode).
    pub image_override: Option<String>,
    /// The coordinator's local socket (`Welcome::local`; empty: none).
    pub local: String,
}

impl Shared {
    /// Opens a new connection with `open`: to the local socket when there
    /// is one (falling back to TCP if it cannot be reached, e.g. from
    /// another network namespace), else to the coordinator's address.
    pub fn connect<T>(
        &self,
        open: impl Fn(&str) -> Result<T, hiber_protocol::client::ClientError>,
    ) -> Result<T, String> {
        if !self.local.is_empty()
            && let Ok(t) = open(&hiber_protocol::client::local_addr(&self.local))
        {
            return Ok(t);
        }
        open(&self.coord).map_err(|e| e.to_string())
    }
}

pub static SHARED: Mutex<Option<Shared>> = Mutex::new(None);

/// The checkpoint thread's coordinator socket (-1: none). A fork child
/// closes its copy: the connection is the parent's.
pub static COORD_FD: AtomicI32 = AtomicI32::new(-1);

/// State saved at the last checkpoint that the restart path needs; it is in
/// memory, so a restarted process finds it here.
pub static SAVED: Mutex<Option<Saved>> = Mutex::new(None);

pub fn shared() -> Shared {
    SHARED
        .lock()
        .map(|g| g.clone().unwrap_or_default())
        .unwrap_or_default()
}

pub fn set_shared(f: impl FnOnce(&mut Shared)) {
    if let Ok(mut g) = SHARED.lock() {
        let s = g.get_or_insert_with(Shared::default);
        f(s);
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The program's `comm` (one `prctl`, no file to open).
pub fn program_name() -> String {
    let mut name = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL-terminated.
    let r = unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    let len = name.iter().position(|&b| b == 0).unwrap_or(16);
    if r != 0 || len == 0 {
        return "prog".into();
    }
    String::from_utf8_lossy(&name[..len]).into_owned()
}

/// The coordinator connection an `exec` left us (`config::Adopt`), if it
/// is still the open socket it should be.
fn adopt(a: &config::Adopt) -> Option<Connection> {
    // SAFETY: fstat into a local.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer.
    if unsafe { libc::fstat(a.fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        log::debug("the coordinator connection did not survive exec; joining afresh");
        return None;
    }
    // Back to close-on-exec: the program must not see it.
    let _ = hiber_sys::fcntl(a.fd, libc::F_SETFD as u32, libc::FD_CLOEXEC as u64);
    // The descriptor was our agent's coordinator socket before the
    // exec, handed over through HIBER_CONN; nothing else in this new image
    // knows it.
    // SAFETY: see just above.
    Some(unsafe { Connection::from_raw_fd(a.fd, &config::get().coord) })
}

/// Closes the connection handed over by the image before `exec` (if it
/// is still a socket) in an image that does not take part.
pub fn drop_handed_over(fd: i32) {
    // SAFETY: fstat into a local.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer.
    if unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK {
        let _ = hiber_sys::close(fd);
    }
}

/// Goes on with the connection of the image before `exec`: no connect, no
/// round trip, the coordinator keeps this process as the member it was.
fn start_adopted(mut conn: Connection, a: &config::Adopt, program: String) -> Result<(), String> {
    let cfg = config::get();
    set_shared(|s| {
        *s = Shared {
            computation: a.computation,
            process_id: a.process_id,
            generation: a.generation,
            program: program.clone(),
            coord: cfg.coord.clone(),
            ckpt_dir: cfg.ckpt_dir.clone(),
            compress: cfg.compress,
            sync: cfg.sync,
            virtual_pid: std::process::id(),
            host_pid: a.host_pid,
            standalone: false,
            image_override: None,
            local: a.local.clone(),
        }
    });
    conn.send(&ToCoord::Execd { program })
        .map_err(|e| format!("coordinator connection lost across exec: {e}"))?;
    let fd = conn.raw_fd();
    COORD_FD.store(fd, Relaxed);
    start_or_sleep(Link::Coord(conn), fd)
}

/// The user's cookie, read once per process image.
fn cookie() -> Result<[u8; COOKIE_LEN], String> {
    static COOKIE: OnceLock<[u8; COOKIE_LEN]> = OnceLock::new();
    if let Some(c) = COOKIE.get() {
        return Ok(*c);
    }
    let c = cookie::load_or_create().map_err(|e| e.to_string())?;
    Ok(*COOKIE.get_or_init(|| c))
}

/// A connection opened ahead of this process's next fork (`Role::Spare`),
/// and the child's process id once its `Welcome` was read.
pub struct Spare {
    conn: Connection,
    id: Option<u64>,
}

static SPARE: Mutex<Option<Spare>> = Mutex::new(None);
/// The spare's descriptor (-1: none), kept out of images.
pub static SPARE_FD: AtomicI32 = AtomicI32::new(-1);

/// Opens a spare connection if this process has none (after a fork, so
/// the next fork finds one; its hello is answered meanwhile).
pub fn refill_spare() {
    let s = shared();
    if s.standalone || s.coord.is_empty() || COORD_FD.load(Relaxed) < 0 {
        return;
    }
    let Ok(mut g) = SPARE.lock() else { return };
    if g.is_some() {
        return;
    }
    let opened = cookie().and_then(|c| {
        let mut conn = s.connect(|addr| Connection::open_spare(addr, s.process_id, &c))?;
        conn.relocate_fd(fd::AGENT_FD_BASE)
            .map_err(|e| e.to_string())?;
        Ok(conn)
    });
    match opened {
        Ok(conn) => {
            SPARE_FD.store(conn.raw_fd(), Relaxed);
            *g = Some(Spare { conn, id: None });
        }
        Err(e) => log::debug(&format!("no spare coordinator connection: {e}")),
    }
}

/// Takes the spare for a fork child: the connection and the child's
/// process id, or `None` (the child then joins with a hello of its own).
fn take_spare(computation: u64) -> Option<(Connection, u64)> {
    let mut sp = SPARE.lock().ok()?.take()?;
    SPARE_FD.store(-1, Relaxed);
    let id = match sp.id {
        Some(id) => id,
        None => match sp.conn.welcome() {
            Ok(w) if w.computation == computation => w.process_id,
            Ok(_) => return None,
            Err(e) => {
                log::debug(&format!("spare coordinator connection refused: {e}"));
                return None;
            }
        },
    };
    Some((sp.conn, id))
}

/// In a restarted process: the spare of the image is not open any more,
/// and its number may be in use again; forget it without closing.
pub fn forget_spare() {
    if let Ok(mut g) = SPARE.lock()
        && let Some(sp) = g.take()
    {
        std::mem::forget(sp);
    }
    SPARE_FD.store(-1, Relaxed);
}

/// In the parent of a fork whose child took over our spare connection:
/// tells the coordinator, before `fork` returns (see `ToCoord::Forked`).
/// Encoded on the stack, so the parent writes no heap page after the fork.
pub fn child_forked(parent: &Shared, spare: u64, pid: u32) {
    let msg = ToCoord::Forked {
        spare,
        // In a pid namespace of a restart the host pid is unknown here; 0
        // tells the coordinator not to signal it by pid.
        real_pid: if parent.host_pid != 0 { 0 } else { pid },
        virtual_pid: pid,
    };
    let fd = COORD_FD.load(Relaxed);
    let mut buf = [0u8; 64];
    if fd >= 0
        && let Ok(frame) = hiber_protocol::frame::encode_into(&msg, &mut buf)
    {
        let _ = hiber_sys::write_all(fd, frame);
    }
}

/// Starts checkpointing in a freshly launched process.
pub fn start() -> Result<(), String> {
    let cfg = config::get();
    suspend::install(cfg.ckpt_signal)
        .map_err(|e| format!("cannot install the checkpoint signal handler: {e}"))?;
    let pid = std::process::id();
    let program = program_name();
    if let Some(a) = &cfg.adopt
        && let Some(conn) = adopt(a)
    {
        return start_adopted(conn, a, program);
    }
    let hello = ProcessHello {
        real_pid: pid,
        virtual_pid: pid,
        host: hostname(),
        program: program.clone(),
        restarted: None,
        dormant: true,
    };
    let cookie = cookie()?;
    let (mut conn, welcome) =
        Connection::connect_with_cookie(&cfg.coord, Role::Process(hello), &cookie)
            .map_err(|e| e.to_string())?;
    conn.relocate_fd(fd::AGENT_FD_BASE)
        .map_err(|e| format!("moving the coordinator socket: {e}"))?;
    set_shared(|s| {
        *s = Shared {
            computation: welcome.computation,
            process_id: welcome.process_id,
            generation: welcome.generation,
            program,
            coord: cfg.coord.clone(),
            local: welcome.local,
            ckpt_dir: cfg.ckpt_dir.clone(),
            compress: cfg.compress,
            sync: cfg.sync,
            virtual_pid: pid,
            host_pid: 0,
            standalone: false,
            image_override: None,
        }
    });
    send_settings(&mut conn);
    let fd = conn.raw_fd();
    COORD_FD.store(fd, Relaxed);
    start_or_sleep(Link::Coord(conn), fd)
}

/// What a fork child needs from its parent's agent, taken before `fork`
/// with the parent's lock on it (so the child never inherits it locked).
pub struct ForkState {
    pub parent: Shared,
    /// The descriptor of the parent's spare connection and the child's
    /// process id: the child takes it over, and the parent tells the
    /// coordinator (`Forked`).
    pub spare: Option<(i32, u64)>,
}

/// The agent's locks a fork child takes (see `fork::Fork`).
pub type ForkLocks = (
    std::sync::MutexGuard<'static, Option<Shared>>,
    std::sync::MutexGuard<'static, Option<Spare>>,
    std::sync::MutexGuard<'static, Vec<crate::fd::inotify::Recorded>>,
);

/// Takes the locks of [`ForkLocks`] (in this order everywhere).
pub fn fork_locks() -> Option<ForkLocks> {
    let shared = SHARED.lock().ok()?;
    let spare = SPARE.lock().ok()?;
    let watches = crate::fd::inotify::WATCHES.lock().ok()?;
    Some((shared, spare, watches))
}

/// Called by the `fork` wrapper before forking; `None` when this process
/// takes part in no computation through a coordinator (its children don't
/// either).
pub fn fork_prepare() -> Option<ForkState> {
    if !crate::capi::STARTED.load(std::sync::atomic::Ordering::Acquire) {
        return None;
    }
    let parent = shared();
    if parent.standalone || parent.coord.is_empty() || COORD_FD.load(Relaxed) < 0 {
        return None;
    }
    let spare = take_spare(parent.computation).map(|(conn, id)| (conn.into_raw_fd(), id));
    // The next fork's spare, opened now, and what a dormant child needs
    // resolved: whatever the agent writes in memory after the fork costs a
    // copied page in each process.
    refill_spare();
    crate::threads::dormant::prepare();
    Some(ForkState { parent, spare })
}

/// In a fork child, before `fork` returns to the program: the child is a
/// new process of the same computation. It drops the parent's agent
/// connections, joins the coordinator (which, if a checkpoint is stopping
/// processes right now, makes it take part), and starts its own checkpoint
/// thread. If the coordinator cannot be reached the child runs without
/// checkpoints, with a warning.
pub fn fork_child(st: ForkState) {
    // The parent's dormant state (its socket, its pending thread) is not
    // this process's.
    crate::threads::dormant::forget_in_child();
    let fd = COORD_FD.swap(-1, Relaxed);
    if fd >= 0 {
        let _ = hiber_sys::close(fd);
    }
    for fd in crate::capi::agent_fds() {
        let _ = hiber_sys::close(fd);
    }
    crate::capi::forget_api_fds();
    suspend::forget_agent_threads();
    // The spare opened for the parent's next fork is the parent's.
    if let Ok(mut g) = SPARE.lock()
        && let Some(sp) = g.take()
    {
        SPARE_FD.store(-1, Relaxed);
        drop(sp);
    }
    let pid = std::process::id();
    let parent = st.parent;
    if let Some((fd, id)) = st.spare {
        // The spare's descriptor, which the parent gave up for us
        // (`fork_prepare`); only this connection owns it now.
        // SAFETY: see just above.
        let conn = unsafe { Connection::from_raw_fd(fd, &parent.coord) };
        set_shared(|s| {
            *s = Shared {
                process_id: id,
                virtual_pid: pid,
                host_pid: 0,
                image_override: None,
                ..parent
            }
        });
        COORD_FD.store(conn.raw_fd(), Relaxed);
        if let Err(e) = start_or_sleep(Link::Coord(conn), fd) {
            log::warn(&format!("forked child not checkpointed: {e}"));
        }
        return;
    }
    let hello = ProcessHello {
        // In a pid namespace of a restart the host pid is unknown here; 0
        // tells the coordinator not to signal it by pid.
        real_pid: if parent.host_pid != 0 { 0 } else { pid },
        virtual_pid: pid,
        host: hostname(),
        program: parent.program.clone(),
        restarted: None,
        dormant: true,
    };
    let joined = cookie()
        .and_then(|c| {
            parent.connect(|addr| {
                Connection::connect_with_cookie(addr, Role::Process(hello.clone()), &c)
            })
        })
        .and_then(|(mut conn, welcome)| {
            conn.relocate_fd(fd::AGENT_FD_BASE)
                .map_err(|e| format!("moving the coordinator socket: {e}"))?;
            Ok((conn, welcome))
        });
    let (mut conn, welcome) = match joined {
        Ok(j) => j,
        Err(e) => {
            set_shared(|s| s.coord.clear());
            log::warn(&format!(
                "forked child not checkpointed: cannot join the coordinator ({e})"
            ));
            return;
        }
    };
    set_shared(|s| {
        *s = Shared {
            computation: welcome.computation,
            process_id: welcome.process_id,
            generation: welcome.generation,
            local: welcome.local,
            virtual_pid: pid,
            host_pid: 0,
            image_override: None,
            ..parent
        }
    });
    send_settings(&mut conn);
    let fd = conn.raw_fd();
    COORD_FD.store(fd, Relaxed);
    if let Err(e) = start_or_sleep(Link::Coord(conn), fd) {
        log::warn(&format!("forked child not checkpointed: {e}"));
    }
}

/// Starts checkpointing without a coordinator (`hiber_init_standalone`).
pub fn start_standalone(image: String, compress: bool, sync: bool) -> Result<(), String> {
    let cfg = config::get();
    suspend::install(cfg.ckpt_signal)
        .map_err(|e| format!("cannot install the checkpoint signal handler: {e}"))?;
    let pid = std::process::id();
    let mut seed = [0u8; 8];
    // SAFETY: getrandom into a local buffer.
    unsafe { libc::getrandom(seed.as_mut_ptr().cast(), 8, 0) };
    let dir = Path::new(&image)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    set_shared(|s| {
        *s = Shared {
            computation: u64::from_le_bytes(seed),
            process_id: 1,
            generation: 0,
            program: program_name(),
            coord: String::new(),
            ckpt_dir: dir,
            compress,
            sync,
            virtual_pid: pid,
            host_pid: 0,
            standalone: true,
            image_override: Some(image),
            local: String::new(),
        }
    });
    spawn_thread(Link::Alone)
}

/// Starts the checkpoint thread with `pthread_create` itself, not
/// `std::thread`: std's start-up registers a thread-local destructor, and
/// glibc allocates that record with `calloc` on the new thread, which gives
/// it a malloc arena of its own (a 64 MiB reservation, and one more arena
/// for glibc's `fork` to lock and unlock in every fork after).
fn spawn_thread(link: Link) -> Result<(), String> {
    type PthreadCreateFn = unsafe extern "C" fn(
        *mut libc::pthread_t,
        *const libc::pthread_attr_t,
        extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
        *mut libc::c_void,
    ) -> libc::c_int;
    let create = crate::next::real!("pthread_create", PthreadCreateFn);
    let arg = Box::into_raw(Box::new(link)).cast::<libc::c_void>();
    // Attribute object initialised before use and destroyed after;
    // `thread_main` takes ownership of `arg` only if the thread was created.
    // SAFETY: see just above.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, CKPT_STACK);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        let mut tid: libc::pthread_t = 0;
        let r = create(&mut tid, &attr, thread_main, arg);
        libc::pthread_attr_destroy(&mut attr);
        if r != 0 {
            drop(Box::from_raw(arg.cast::<Link>()));
            return Err(format!(
                "cannot start the checkpoint thread: {}",
                std::io::Error::from_raw_os_error(r)
            ));
        }
    }
    Ok(())
}

/// The checkpoint thread's start routine; `arg` is a boxed [`Link`] that
/// it owns from now on.
pub extern "C" fn thread_main(arg: *mut libc::c_void) -> *mut libc::c_void {
    // `arg` is the box leaked for this thread (`spawn_thread`,
    // `dormant::start`), taken back exactly once, here.
    // SAFETY: see just above.
    let link = unsafe { Box::from_raw(arg.cast::<Link>()) };
    hiber_sys::set_thread_name(b"hiber-ckpt\0");
    thread_setup();
    serve(*link)
}

/// Starts the checkpoint thread now, or leaves the process dormant until
/// the coordinator needs it (a fork child, an exec'd image: see
/// `threads::dormant`).
fn start_or_sleep(link: Link, fd: i32) -> Result<(), String> {
    match crate::threads::dormant::enter(link, fd) {
        Ok(()) => Ok(()),
        Err(link) => spawn_thread(link),
    }
}

/// The checkpoint thread's stack (std's default for its threads).
pub const CKPT_STACK: usize = 2 << 20;

/// How this process takes part in a checkpoint: through the coordinator's
/// barriers, or alone (standalone mode: every barrier passes at once).
pub enum Link {
    Coord(Connection),
    Alone,
}

impl Link {
    pub fn send(&mut self, msg: &ToCoord) {
        if let Link::Coord(c) = self {
            let _ = c.send(msg);
        }
    }

    fn raw_fd(&self) -> i32 {
        match self {
            Link::Coord(c) => c.raw_fd(),
            Link::Alone => -1,
        }
    }

    /// Waits for `Release{name}`; `false` if the checkpoint was aborted.
    fn wait_release(&mut self, generation: u64, name: &str) -> Result<bool, String> {
        self.wait_release_with(generation, name, &mut None)
    }

    /// [`Link::wait_release`], keeping the `TcpPlan` that comes before it.
    fn wait_release_with(
        &mut self,
        generation: u64,
        name: &str,
        tcp_plan: &mut Option<(Vec<u8>, Vec<TcpRole>)>,
    ) -> Result<bool, String> {
        match self {
            Link::Coord(c) => wait_release(c, generation, name, tcp_plan),
            Link::Alone => Ok(true),
        }
    }
}

pub fn send_settings(conn: &mut Connection) {
    let s = shared();
    let _ = conn.send(&ToCoord::Settings {
        ckpt_dir: s.ckpt_dir,
        compress: s.compress,
        sync: s.sync,
    });
}

/// Records what a restart needs to recreate this thread, blocks signals.
fn thread_setup() {
    let sp: u64;
    // SAFETY: reads the stack pointer.
    unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack)) };
    // A restart starts this thread afresh a little below the current frame.
    restore::CKPT_STACK_TOP.store((sp - 512) & !15, Relaxed);
    restore::CKPT_FS.store(hiber_sys::arch_get_fs(), Relaxed);
    restore::CKPT_TID_ADDR.store(hiber_sys::get_tid_address(), Relaxed);
    restore::CKPT_TID.store(hiber_sys::gettid(), Relaxed);
    suspend::register_agent_thread(hiber_sys::gettid());
    hiber_sys::sigprocmask(hiber_sys::consts::SIG_SETMASK, !0);
}

/// The checkpoint thread's loop; never returns.
pub fn serve(mut link: Link) -> ! {
    loop {
        let msg = match &mut link {
            // Whole messages only: another thread's exec may end this one
            // at any point, and the next image goes on reading the socket.
            Link::Coord(conn) => conn.recv_whole(),
            Link::Alone => {
                let generation = crate::capi::wait_standalone_request();
                let (ok, error) =
                    match checkpoint(&mut link, generation, &CheckpointOptions::default()) {
                        Ok(()) => (true, String::new()),
                        Err(e) => (false, e),
                    };
                crate::capi::standalone_done(ok, error);
                continue;
            }
        };
        match msg {
            Ok(FromCoord::Checkpoint {
                generation,
                options,
            }) => {
                let _ = checkpoint(&mut link, generation, &options);
            }
            Ok(_) => {}
            Err(e) => {
                log::debug(&format!(
                    "coordinator connection lost ({e}); no more checkpoints"
                ));
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
        }
    }
}

/// Waits for `Release{name}`; `false` if the checkpoint was aborted.
fn wait_release(
    conn: &mut Connection,
    generation: u64,
    name: &str,
    tcp_plan: &mut Option<(Vec<u8>, Vec<TcpRole>)>,
) -> Result<bool, String> {
    loop {
        match conn.recv() {
            Ok(FromCoord::TcpPlan {
                generation: g,
                marker,
                ends,
            }) if g == generation => *tcp_plan = Some((marker, ends)),
            Ok(FromCoord::Release {
                generation: g,
                name: n,
            }) if g == generation && n == name => return Ok(true),
            Ok(FromCoord::Abort {
                generation: g,
                reason,
            }) if g == generation => {
                log::debug(&format!("checkpoint {generation} aborted: {reason}"));
                return Ok(false);
            }
            // Including a repeat of this checkpoint's request, sent when the
            // process exec'd before the old image could read the first (the
            // coordinator's `on_execd`: it asks before this image suspends,
            // so the repeat always arrives before a release).
            Ok(_) => {}
            Err(e) => return Err(format!("coordinator connection lost: {e}")),
        }
    }
}

pub fn image_path(dir: &str, s: &Shared) -> PathBuf {
    if let Some(p) = &s.image_override {
        return PathBuf::from(p);
    }
    let prog: String = s
        .program
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Path::new(dir).join(format!(
        "ckpt_{prog}_{:08x}-{}.hiber",
        s.computation as u32, s.process_id
    ))
}

/// Runs one checkpoint through its barriers (see the module docs).
fn checkpoint(link: &mut Link, generation: u64, opts: &CheckpointOptions) -> Result<(), String> {
    let s = shared();
    let dir = if opts.dir.is_empty() {
        s.ckpt_dir.clone()
    } else {
        opts.dir.clone()
    };
    let compress = opts.compress.unwrap_or(s.compress);
    let sync = opts.sync.unwrap_or(s.sync);
    let final_path = image_path(&dir, &s);
    let tmp = final_path.with_extension("hiber.tmp");
    let fail = |link: &mut Link, error: String| -> Result<(), String> {
        let _ = std::fs::remove_file(&tmp);
        link.send(&ToCoord::CheckpointFailed {
            generation,
            error: error.clone(),
        });
        Err(error)
    };

    // The program's threads still run: a checkpoint starts only once no
    // critical section is open (one opened later defers its thread's stop),
    // then callbacks and plugins get their chance.
    crate::capi::wait_no_critical_sections();
    crate::events::pre_suspend(link);
    if crate::capi::ABORTED.load(std::sync::atomic::Ordering::Acquire) == generation {
        return Err("checkpoint aborted by the coordinator during PRE_SUSPEND".into());
    }

    // Everything that allocates a lot or may block goes before the stop.
    let wopts = WriteOptions {
        compress_level: compress.then_some(1),
        ..WriteOptions::default()
    };
    let mut scratch = match Scratch::new(&wopts) {
        Ok(s) => s,
        Err(e) => return fail(link, format!("preparing the image writer: {e}")),
    };
    // A fresh file (a leftover .tmp is removed first), never a truncated
    // one: see hiber_image::Writer::new.
    let _ = std::fs::remove_file(&tmp);
    let file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
    {
        Ok(f) => f,
        Err(e) => return fail(link, format!("cannot create {}: {e}", tmp.display())),
    };
    let mut scanner = match pages::Scanner::new() {
        Ok(s) => s,
        Err(e) => return fail(link, format!("cannot open /proc/self/pagemap: {e}")),
    };
    let mut bufs = Buffers::default();
    bufs.ranges.reserve(1 << 16);
    bufs.runs.reserve(1 << 16);
    bufs.slices.reserve(1 << 16);

    // No thread may be inside pthread_create, fork, exec or dlopen.
    if !crate::gate::close(SUSPEND_TIMEOUT) {
        return fail(
            link,
            "a thread stayed inside pthread_create/fork/exec/dlopen".into(),
        );
    }
    if let Err(e) = suspend::suspend_all(config::get().ckpt_signal, SUSPEND_TIMEOUT) {
        crate::gate::open();
        return fail(link, e);
    }
    // Connected TCP sockets: the coordinator pairs them across the
    // computation (fd/tcp.rs).
    let tcp_ends = crate::fd::tcp::ends();
    if !tcp_ends.is_empty() {
        link.send(&ToCoord::TcpEnds {
            generation,
            ends: tcp_ends.iter().map(|(_, e)| e.clone()).collect(),
        });
    }
    link.send(&ToCoord::Barrier {
        generation,
        name: barrier::SUSPENDED.into(),
    });
    let aborted = |why: String| -> Result<(), String> {
        suspend::resume_all();
        crate::gate::open();
        let _ = std::fs::remove_file(&tmp);
        Err(why)
    };
    let mut tcp_plan = None;
    match link.wait_release_with(generation, barrier::SUSPENDED, &mut tcp_plan) {
        Ok(true) => {}
        Ok(false) => return aborted("checkpoint aborted by the coordinator".into()),
        Err(e) => {
            log::warn(&e);
            return aborted(e);
        }
    }
    crate::events::pre_checkpoint();
    if !tcp_ends.is_empty() {
        let plan = tcp_plan
            .as_ref()
            .map(|(m, r): &(Vec<u8>, Vec<_>)| (&m[..], &r[..]));
        for w in crate::fd::tcp::prepare(&tcp_ends, plan) {
            log::warn(&w);
        }
    }

    set_shared(|sh| sh.generation = generation);
    let mut exclude = vec![
        link.raw_fd(),
        file.as_raw_fd(),
        scanner.raw_fd(),
        SPARE_FD.load(Relaxed),
    ];
    exclude.extend(crate::capi::agent_fds());
    let written = write_image(
        file,
        &exclude,
        generation,
        &wopts,
        &mut scratch,
        &mut scanner,
        &mut bufs,
        sync,
    );
    crate::fd::tcp::clear();
    let bytes = match written {
        Ok(b) => b,
        Err(e) => {
            suspend::resume_all();
            crate::gate::open();
            set_shared(|sh| sh.generation = s.generation);
            return fail(link, e);
        }
    };
    link.send(&ToCoord::Barrier {
        generation,
        name: barrier::WRITTEN.into(),
    });
    let go = link.wait_release(generation, barrier::WRITTEN);
    if !matches!(go, Ok(true)) {
        set_shared(|sh| sh.generation = s.generation);
        return aborted("checkpoint aborted by the coordinator".into());
    }
    let committed = hiber_image::commit(&tmp, &final_path, sync);
    // Reported before the program runs again: a program that exits right
    // away would otherwise close the connection first, and the coordinator
    // would take the checkpoint for failed.
    if committed.is_ok() {
        link.send(&ToCoord::CheckpointDone {
            generation,
            image: final_path.display().to_string(),
            bytes,
        });
    }
    suspend::resume_all();
    crate::gate::open();
    match committed {
        Ok(()) => {
            crate::events::resume(link);
            Ok(())
        }
        Err(e) => fail(link, format!("cannot commit {}: {e}", final_path.display())),
    }
}

#[derive(Default)]
struct Buffers {
    ranges: Vec<(u64, u64)>,
    runs: Vec<(u64, u64)>,
    slices: Vec<&'static [u8]>,
}

fn vdso_identity(maps: &[maps::Mapping]) -> VdsoIdentity {
    let mut id = VdsoIdentity::default();
    for m in maps {
        match m.kind() {
            AreaKind::Vdso => {
                id.vdso_len = m.end - m.start;
                // SAFETY: the vDSO is mapped readable for the process's life.
                let bytes = unsafe {
                    std::slice::from_raw_parts(m.start as *const u8, (m.end - m.start) as usize)
                };
                id.vdso_crc = crc32c::crc32c(bytes);
            }
            AreaKind::Vvar => id.vvar_len = m.end - m.start,
            AreaKind::VvarVclock => id.vvar_vclock_len = m.end - m.start,
            _ => {}
        }
    }
    id
}

fn threads_meta() -> Vec<ThreadMeta> {
    let pid = hiber_sys::getpid();
    let mut out: Vec<ThreadMeta> = suspend::slots()
        .iter()
        .map(|s| {
            let tid = s.tid.load(Relaxed);
            let (rip, rsp) = s.rip_rsp();
            ThreadMeta {
                tid,
                is_main: tid == pid,
                is_agent: false,
                name: {
                    let n = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                        .map(|n| n.trim_end_matches('\n').to_string())
                        .unwrap_or_default();
                    s.set_name(&n);
                    n
                },
                fs_base: s.fs_base.load(Relaxed),
                tid_address: s.tid_addr.load(Relaxed),
                robust_list: s.robust_head.load(Relaxed),
                robust_len: s.robust_len.load(Relaxed),
                rseq_addr: s.rseq_area(),
                rseq_len: suspend::rseq_len(),
                altstack_sp: s.alt_sp.load(Relaxed),
                altstack_size: s.alt_size.load(Relaxed),
                altstack_flags: s.alt_flags.load(Relaxed),
                sigmask: s.sigmask(),
                pending: {
                    let p = state::signals::thread_pending(tid);
                    s.pending.store(p, Relaxed);
                    p
                },
                rip,
                rsp,
            }
        })
        .collect();
    out.push(ThreadMeta {
        tid: hiber_sys::gettid(),
        is_agent: true,
        name: "hiber-ckpt".into(),
        fs_base: restore::CKPT_FS.load(Relaxed),
        tid_address: restore::CKPT_TID_ADDR.load(Relaxed),
        ..Default::default()
    });
    out
}

/// The process's identity; the mechanisms fill in the rest.
fn process_meta() -> ProcessMeta {
    let argv = std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into())
                .collect()
        })
        .unwrap_or_default();
    ProcessMeta {
        program: shared().program,
        argv,
        exe: std::fs::read_link("/proc/self/exe")
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        restart_entry: restore::hiber_restart_entry as *const () as u64,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        standalone: shared().standalone,
        // SAFETY: getppid/getpgid/getsid of this process cannot fail.
        ppid: unsafe { libc::getppid() } as u32,
        // SAFETY: as above.
        pgid: unsafe { libc::getpgid(0) } as u32,
        // SAFETY: as above.
        sid: unsafe { libc::getsid(0) } as u32,
        zombies: zombies(),
        ..ProcessMeta::default()
    }
}

/// Our children that have exited and wait to be reaped: (pid, wait status
/// from the `exit_code` field of /proc/PID/stat).
fn zombies() -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    for tid in crate::procfs::numeric_entries(c"/proc/self/task") {
        let Ok(list) = std::fs::read_to_string(format!("/proc/self/task/{tid}/children")) else {
            continue;
        };
        for pid in list
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the command name (which may hold spaces).
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            // f[0] is field 3 (state); exit_code is field 52.
            if f.first() == Some(&"Z")
                && let Some(code) = f.get(49).and_then(|c| c.parse::<i32>().ok())
            {
                out.push((pid, code));
            }
        }
    }
    out
}

fn glibc_version() -> String {
    // SAFETY: returns a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }
        .to_string_lossy()
        .into_owned()
}

/// Captures everything and writes the temporary image. Runs while the
/// program's threads are parked: no glibc malloc (ours is private), no
/// stdio, nothing that can wait for a parked thread.
#[allow(clippy::too_many_arguments)]
fn write_image(
    file: std::fs::File,
    exclude: &[i32],
    generation: u64,
    wopts: &WriteOptions,
    scratch: &mut Scratch,
    scanner: &mut pages::Scanner,
    bufs: &mut Buffers,
    sync: bool,
) -> Result<u64, String> {
    let s = shared();
    let mut saved = Saved {
        process: process_meta(),
        fds: Vec::new(),
    };
    mechanisms::capture(&mut Capture {
        saved: &mut saved,
        exclude_fds: exclude,
    })?;
    let threads = threads_meta();
    restore::prepare_for_image(hiber_sys::getpid());
    if let Ok(mut g) = SAVED.lock() {
        *g = Some(saved.clone());
    }
    let Saved { process, fds } = saved;
    let parent_shared = parent_saves_shared();
    // Read the map last: everything allocated above is in it.
    let all = maps::read_self()?;
    // Until the areas are written, the agent's allocator is frozen (see
    // alloc.rs): its metadata is in the pages being saved.
    let frozen = crate::alloc::Frozen::new();
    let identity = Identity {
        computation: s.computation,
        generation,
        process_id: s.process_id,
        virtual_pid: s.virtual_pid,
        real_pid: std::process::id(),
        created_unix_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        program: s.program.clone(),
        hostname: hostname(),
        kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|v| v.trim().to_string())
            .unwrap_or_default(),
        glibc_version: glibc_version(),
        vdso: vdso_identity(&all),
    };
    let mut w =
        Writer::new(file, &identity, wopts, scratch).map_err(|e| format!("writing image: {e}"))?;
    for m in &all {
        let kind = m.kind();
        if kind == AreaKind::Vsyscall {
            continue;
        }
        let mut flags = if m.shared {
            area_flags::SHARED
        } else {
            area_flags::PRIVATE
        };
        if !m.file_backed() {
            flags |= area_flags::ANONYMOUS;
        }
        if kind == AreaKind::Stack {
            flags |= area_flags::GROWSDOWN;
        }
        let saveable = m.read
            && !matches!(kind, AreaKind::Vdso | AreaKind::Vvar | AreaKind::VvarVclock)
            && !(m.shared && parent_shared.contains(&(m.dev, m.inode)));
        bufs.runs.clear();
        if saveable {
            select_pages(m, scanner, bufs);
            let present: u64 = bufs.ranges.iter().map(|(a, b)| b - a).sum();
            if m.end - m.start > 64 << 20 && present < (m.end - m.start) / 4 {
                flags |= area_flags::SPARSE;
            }
        }
        bufs.slices.clear();
        for &(a, b) in &bufs.runs {
            // The run lies in a readable mapping of this process that stays
            // mapped while we write (program threads are parked and the
            // agent frees nothing large until the image is done).
            // SAFETY: see just above.
            let run = unsafe { std::slice::from_raw_parts(a as *const u8, (b - a) as usize) };
            bufs.slices.push(run);
        }
        let desc = AreaDesc {
            start: m.start,
            end: m.end,
            prot: m.prot(),
            flags,
            kind,
            file_offset: m.offset,
            dev: m.dev,
            inode: m.inode,
            path: &m.path,
        };
        w.add_area(&desc, &bufs.slices)
            .map_err(|e| format!("writing area {:#x}: {e}", m.start))?;
    }
    bufs.slices.clear();
    drop(frozen);
    w.add_process(&process).map_err(|e| e.to_string())?;
    w.add_threads(&threads).map_err(|e| e.to_string())?;
    w.add_fds(&fds).map_err(|e| e.to_string())?;
    let summary = w
        .finish(sync)
        .map_err(|e| format!("finishing image: {e}"))?;
    Ok(summary.bytes_written)
}

/// Shared memory objects (device, inode) our parent maps too, when the
/// parent is in the computation (launched by hiber): the parent saves them,
/// so each object is saved once, by the topmost process of the tree that
/// maps it.
fn parent_saves_shared() -> Vec<(u64, u64)> {
    // SAFETY: getppid cannot fail.
    let ppid = unsafe { libc::getppid() };
    if ppid <= 1 {
        return Vec::new();
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{ppid}/maps")) else {
        return Vec::new();
    };
    let Ok(maps) = maps::parse(&text) else {
        return Vec::new();
    };
    let launched = std::fs::read(format!("/proc/{ppid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == b"HIBER_LAUNCHED=1"));
    if !launched {
        return Vec::new();
    }
    // Not a kernel object's mapping: perf events share one anonymous inode,
    // and each process's ring buffer is its own (a restart makes it plain
    // memory from the pages saved here, see the CLI's `shm.rs`).
    maps.iter()
        .filter(|m| m.shared && !m.path.starts_with("anon_inode:"))
        .map(|m| (m.dev, m.inode))
        .collect()
}

/// Fills `bufs.runs` with the non-zero runs of `m` worth saving.
fn select_pages(m: &maps::Mapping, scanner: &mut pages::Scanner, bufs: &mut Buffers) {
    bufs.ranges.clear();
    // A private file mapping's absent pages read as the file: save them
    // all, but never past the file's end (touching those pages is SIGBUS).
    let file_len = if m.file_backed() && !m.path.starts_with("/dev/") {
        match std::fs::metadata(&m.path) {
            Ok(md) if md.is_file() && md.ino() == m.inode => Some(md.len()),
            // Deleted or replaced since it was mapped (an image a restart
            // mapped from, say): find how far the mapping is readable.
            _ => Some(pages::readable_len(m.start, m.end) + m.offset),
        }
    } else {
        None
    };
    match file_len {
        Some(len) => {
            let valid = len.saturating_sub(m.offset).div_ceil(pages::PAGE) * pages::PAGE;
            let end = m.end.min(m.start.saturating_add(valid));
            if end > m.start {
                bufs.ranges.push((m.start, end));
            }
            // Pages past EOF that the program wrote (possible after a
            // mprotect) are present and anonymous: keep them too.
            if end < m.end {
                let mut tail = Vec::new();
                scanner.present(end, m.end, &mut tail);
                bufs.ranges.extend(tail);
            }
        }
        None => scanner.present(m.start, m.end, &mut bufs.ranges),
    }
    for &(a, b) in &bufs.ranges {
        // `a..b` is inside a readable mapping and backed by data
        // (present pages, or file pages before EOF).
        // SAFETY: see just above.
        unsafe { pages::nonzero_runs(a, b, &mut bufs.runs) };
    }
}

/// Identity to send when a restarted process joins the coordinator.
pub fn restarted_hello(s: &Shared) -> ProcessHello {
    ProcessHello {
        real_pid: if s.host_pid != 0 {
            s.host_pid
        } else {
            std::process::id()
        },
        virtual_pid: s.virtual_pid,
        host: hostname(),
        program: s.program.clone(),
        restarted: Some(RestartedFrom {
            computation: s.computation,
            generation: s.generation,
            process_id: s.process_id,
        }),
        dormant: false,
    }
}
