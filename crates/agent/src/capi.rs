//! The C interface (`include/hiber.h`, documented there and in
//! `docs/c-api.md`).
//!
//! `hiber_checkpoint()` runs in a program thread. Under a coordinator it
//! opens its own control connection and asks for a checkpoint like
//! `hiber checkpoint` does; the calling thread is stopped with the others
//! while it waits. In standalone mode it hands the request to the
//! checkpoint thread through a futex mailbox. Either way, a restart bumps
//! [`RESTART_EPOCH`] before the program's threads run again, so the waiting
//! call can tell "this process carried on" from "this is the restarted
//! image" (its own copy of the epoch, on its stack, is from before).
//!
//! Critical sections are counted per thread in a fixed table that the
//! checkpoint signal handler can read (no allocation, no locks): a thread
//! inside one is not stopped, it is stopped when it leaves.

use std::ffi::{CStr, c_char, c_int, c_long, c_longlong, c_uint, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering::*};
use std::time::Duration;

use hiber_protocol::client::Connection;
use hiber_protocol::{CheckpointOptions, FromCoord, Role, State, ToCoord};

use crate::checkpoint::{self, Link, shared};
use crate::{config, events, fd};

pub const HIBER_RESUMED: c_int = 1;
pub const HIBER_RESTARTED: c_int = 2;
pub const HIBER_OK: c_int = 0;
pub const HIBER_ENOTENABLED: c_int = -1;
pub const HIBER_EBUSY: c_int = -2;
pub const HIBER_ECOORD: c_int = -3;
pub const HIBER_EFAILED: c_int = -4;
pub const HIBER_EINVAL: c_int = -5;
pub const HIBER_EDEADLK: c_int = -6;
pub const HIBER_ERANGE: c_int = -7;

/// A checkpoint generation the coordinator aborted while a plugin or
/// callback held the link (seen inside `hiber_barrier`).
pub static ABORTED: AtomicU64 = AtomicU64::new(0);

/// Bumped by every restart before the program's threads run again.
pub static RESTART_EPOCH: AtomicU64 = AtomicU64::new(0);
/// Set once a checkpoint thread runs in this process.
pub static STARTED: AtomicBool = AtomicBool::new(false);

// ---- critical sections --------------------------------------------------

const CS_SLOTS: usize = 1024;
struct CsSlot {
    tid: AtomicU32,
    depth: AtomicU32,
    deferred: AtomicBool,
}
static CS: [CsSlot; CS_SLOTS] = [const {
    CsSlot {
        tid: AtomicU32::new(0),
        depth: AtomicU32::new(0),
        deferred: AtomicBool::new(false),
    }
}; CS_SLOTS];
/// Threads currently inside a critical section.
static IN_CS: AtomicU32 = AtomicU32::new(0);

fn cs_slot(tid: u32) -> Option<&'static CsSlot> {
    CS.iter().find(|s| s.tid.load(Acquire) == tid)
}

/// Called by the checkpoint signal handler (async-signal-safe): `true` if
/// the thread is inside a critical section and must not stop now; it will
/// raise the signal again when it leaves.
pub fn defer_if_in_critical_section(tid: u32) -> bool {
    match cs_slot(tid) {
        Some(s) if s.depth.load(Acquire) > 0 => {
            s.deferred.store(true, Release);
            true
        }
        _ => false,
    }
}

/// Waits (before stopping threads) until no critical section is open.
pub fn wait_no_critical_sections() {
    while IN_CS.load(Acquire) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn thread_depth() -> u32 {
    cs_slot(hiber_sys::gettid()).map_or(0, |s| s.depth.load(Acquire))
}

#[unsafe(no_mangle)]
pub extern "C" fn hiber_disable_checkpoint() -> c_int {
    if !enabled() {
        return HIBER_ENOTENABLED;
    }
    let tid = hiber_sys::gettid();
    let slot = match cs_slot(tid) {
        Some(s) => s,
        None => match CS
            .iter()
            .find(|s| s.tid.compare_exchange(0, tid, AcqRel, Relaxed).is_ok())
        {
            Some(s) => s,
            None => return HIBER_EBUSY,
        },
    };
    if slot.depth.fetch_add(1, AcqRel) == 0 {
        IN_CS.fetch_add(1, AcqRel);
    }
    HIBER_OK
}

#[unsafe(no_mangle)]
pub extern "C" fn hiber_enable_checkpoint() -> c_int {
    if !enabled() {
        return HIBER_ENOTENABLED;
    }
    let tid = hiber_sys::gettid();
    let Some(slot) = cs_slot(tid) else {
        return HIBER_EINVAL;
    };
    let d = slot.depth.load(Acquire);
    if d == 0 {
        return HIBER_EINVAL;
    }
    slot.depth.store(d - 1, Release);
    if d == 1 {
        IN_CS.fetch_sub(1, AcqRel);
        let deferred = slot.deferred.swap(false, AcqRel);
        slot.tid.store(0, Release);
        if deferred {
            // The checkpoint is waiting for this thread: stop now.
            let _ = hiber_sys::tgkill(hiber_sys::getpid(), tid, config::get().ckpt_signal);
        }
    }
    HIBER_OK
}

// ---- no checkpoint inside agent code on a program thread ----------------

/// Blocks the checkpoint signal for the life of the guard. API calls run
/// agent code (which allocates from the agent's allocator) on program
/// threads; a thread stopped inside that allocator would hold its lock and
/// deadlock the checkpoint thread. The signal stays pending and stops the
/// thread when the guard drops, or inside [`NoCheckpoint::wait_readable`].
struct NoCheckpoint {
    old: u64,
}

impl NoCheckpoint {
    fn new() -> NoCheckpoint {
        let bit = 1u64 << (config::get().ckpt_signal - 1);
        NoCheckpoint {
            old: hiber_sys::sigprocmask(hiber_sys::consts::SIG_BLOCK, bit),
        }
    }

    /// Waits until `fd` is readable with the checkpoint signal allowed, so
    /// the thread can be stopped (and restarted) while it waits. Only raw
    /// system calls run in that window.
    fn wait_readable(&self, fd: i32) {
        let bit = 1u64 << (config::get().ckpt_signal - 1);
        hiber_sys::sigprocmask(hiber_sys::consts::SIG_SETMASK, self.old & !bit);
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: raw poll on one descriptor we own.
            let r = unsafe { libc::syscall(libc::SYS_poll, &mut p as *mut libc::pollfd, 1, -1) };
            if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        hiber_sys::sigprocmask(hiber_sys::consts::SIG_BLOCK, bit);
    }
}

impl Drop for NoCheckpoint {
    fn drop(&mut self) {
        hiber_sys::sigprocmask(hiber_sys::consts::SIG_SETMASK, self.old);
    }
}

// ---- descriptors of API connections -------------------------------------

/// Descriptors of control connections opened by API calls: never saved,
/// and at restart turned into an always-EOF descriptor so a call that was
/// waiting on one wakes up.
static API_FDS: [AtomicI32; 64] = [const { AtomicI32::new(-1) }; 64];

fn register_fd(fd: i32) -> Option<&'static AtomicI32> {
    API_FDS
        .iter()
        .find(|s| s.compare_exchange(-1, fd, AcqRel, Relaxed).is_ok())
}

pub fn agent_fds() -> Vec<i32> {
    API_FDS
        .iter()
        .map(|s| s.load(Acquire))
        .filter(|&f| f >= 0)
        .collect()
}

/// In a fork child: the API connections were the parent's (already
/// closed by the caller).
pub fn forget_api_fds() {
    for s in &API_FDS {
        s.store(-1, Release);
    }
}

/// Restart: every API connection now reads end-of-file.
pub fn hang_up_api_fds() {
    for s in &API_FDS {
        let fd = s.load(Acquire);
        if fd >= 0 {
            // Opening /dev/null and putting it at a number no
            // restored descriptor uses (API fds were never saved).
            // SAFETY: see just above.
            unsafe {
                let n = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if n >= 0 && n != fd {
                    libc::dup3(n, fd, libc::O_CLOEXEC);
                    libc::close(n);
                }
            }
        }
    }
}

/// A control connection for one API call, kept out of the image.
struct ApiConn {
    conn: Connection,
    slot: Option<&'static AtomicI32>,
}

impl ApiConn {
    fn open() -> Result<ApiConn, c_int> {
        // What the program asks of the coordinator may need this process's
        // checkpoint thread.
        crate::threads::dormant::wake();
        let addr = shared().coord;
        let (mut conn, _) = Connection::connect(&addr, Role::Control).map_err(|_| HIBER_ECOORD)?;
        let _ = conn.relocate_fd(fd::AGENT_FD_BASE);
        let slot = register_fd(conn.raw_fd());
        Ok(ApiConn { conn, slot })
    }
}

impl Drop for ApiConn {
    fn drop(&mut self) {
        if let Some(s) = self.slot {
            s.store(-1, Release);
        }
    }
}

// ---- standalone mailbox -------------------------------------------------

static REQUESTS: AtomicU32 = AtomicU32::new(0);
static HANDLED: AtomicU32 = AtomicU32::new(0);
static DONE: AtomicU32 = AtomicU32::new(0);
static LAST_OK: AtomicBool = AtomicBool::new(false);
static KV: Mutex<Vec<(String, Vec<u8>)>> = Mutex::new(Vec::new());

/// Checkpoint thread, standalone: waits for a request; returns its generation.
pub fn wait_standalone_request() -> u64 {
    loop {
        let r = REQUESTS.load(Acquire);
        if r != HANDLED.load(Acquire) {
            HANDLED.store(r, Release);
            return shared().generation + 1;
        }
        hiber_sys::futex_wait(&REQUESTS, r);
    }
}

pub fn standalone_done(ok: bool, error: String) {
    if !ok {
        crate::log::warn(&format!("checkpoint failed: {error}"));
    }
    LAST_OK.store(ok, Release);
    DONE.fetch_add(1, AcqRel);
    hiber_sys::futex_wake(&DONE);
}

/// Restart: wake a `hiber_checkpoint()` that was waiting (standalone).
pub fn restarted() {
    RESTART_EPOCH.fetch_add(1, AcqRel);
    DONE.fetch_add(1, AcqRel);
    hiber_sys::futex_wake(&DONE);
    REQUESTS.store(HANDLED.load(Acquire), Release);
}

// ---- the API ------------------------------------------------------------

fn enabled() -> bool {
    STARTED.load(Acquire)
}

#[unsafe(no_mangle)]
pub extern "C" fn hiber_is_enabled() -> c_int {
    enabled() as c_int
}

#[unsafe(no_mangle)]
pub extern "C" fn hiber_checkpoint() -> c_int {
    if !enabled() {
        return HIBER_ENOTENABLED;
    }
    let tid = hiber_sys::gettid();
    if thread_depth() > 0 || crate::threads::suspend::is_agent_thread(tid) {
        return HIBER_EDEADLK;
    }
    let epoch = RESTART_EPOCH.load(Acquire);
    let guard = NoCheckpoint::new();
    if shared().standalone {
        // The wait below is futex-only: no allocation, the thread may stop.
        drop(guard);
        let target = DONE.load(Acquire);
        REQUESTS.fetch_add(1, AcqRel);
        hiber_sys::futex_wake(&REQUESTS);
        loop {
            if RESTART_EPOCH.load(Acquire) != epoch {
                return HIBER_RESTARTED;
            }
            let d = DONE.load(Acquire);
            if d != target {
                break;
            }
            hiber_sys::futex_wait(&DONE, d);
        }
        if RESTART_EPOCH.load(Acquire) != epoch {
            return HIBER_RESTARTED;
        }
        return if LAST_OK.load(Acquire) {
            HIBER_RESUMED
        } else {
            HIBER_EFAILED
        };
    }
    let mut c = match ApiConn::open() {
        Ok(c) => c,
        Err(e) => return e,
    };
    let reply = match c
        .conn
        .send(&ToCoord::Checkpoint(CheckpointOptions::default()))
    {
        Ok(()) => {
            guard.wait_readable(c.conn.raw_fd());
            c.conn.recv()
        }
        Err(e) => Err(e),
    };
    drop(c);
    if RESTART_EPOCH.load(Acquire) != epoch {
        return HIBER_RESTARTED;
    }
    match reply {
        Ok(FromCoord::CheckpointResult(r)) if r.errors.is_empty() => HIBER_RESUMED,
        Ok(FromCoord::CheckpointResult(_)) => HIBER_EFAILED,
        Ok(FromCoord::Error(e)) if e.contains("in progress") => HIBER_EBUSY,
        _ => HIBER_ECOORD,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn hiber_strerror(code: c_int) -> *const c_char {
    let s: &'static CStr = match code {
        HIBER_RESUMED => c"resumed after a checkpoint",
        HIBER_RESTARTED => c"restarted from a checkpoint",
        HIBER_OK => c"success",
        HIBER_ENOTENABLED => c"not running under hiber",
        HIBER_EBUSY => c"a checkpoint is already in progress",
        HIBER_ECOORD => c"the coordinator is unreachable or refused the request",
        HIBER_EFAILED => c"the checkpoint failed",
        HIBER_EINVAL => c"invalid argument",
        HIBER_EDEADLK => c"called where it would deadlock (critical section or callback)",
        HIBER_ERANGE => c"buffer too small",
        _ => c"unknown hiber status code",
    };
    s.as_ptr()
}

#[unsafe(no_mangle)]
pub extern "C" fn hiber_register_callback(
    cb: Option<events::CallbackFn>,
    data: *mut c_void,
) -> c_int {
    if !enabled() {
        return HIBER_ENOTENABLED;
    }
    let Some(cb) = cb else { return HIBER_EINVAL };
    match events::register_callback(cb as usize, data as usize) {
        Some(i) => i as c_int,
        None => HIBER_EBUSY,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn hiber_unregister_callback(handle: c_int) -> c_int {
    if !enabled() {
        return HIBER_ENOTENABLED;
    }
    if handle >= 0 && events::unregister_callback(handle as usize) {
        HIBER_OK
    } else {
        HIBER_EINVAL
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn hiber_generation() -> c_longlong {
    let _guard = NoCheckpoint::new();
    if !enabled() {
        return HIBER_ENOTENABLED as c_longlong;
    }
    shared().generation as c_longlong
}

/// Copies `s` and a NUL into `buf`.
fn copy_out(s: &str, buf: *mut c_char, len: usize) -> c_int {
    if buf.is_null() {
        return HIBER_EINVAL;
    }
    if s.len() + 1 > len {
        return HIBER_ERANGE;
    }
    // SAFETY: the caller gives `len` writable bytes at `buf`; we write s.len() + 1 <= len of them.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        *buf.add(s.len()) = 0;
    }
    HIBER_OK
}

#[unsafe(no_mangle)]
pub extern "C" fn hiber_get_ckpt_dir(buf: *mut c_char, len: usize) -> c_int {
    let _guard = NoCheckpoint::new();
    if !enabled() {
        return HIBER_ENOTENABLED;
    }
    copy_out(&shared().ckpt_dir, buf, len)
}

/// # Safety
/// `dir` must be a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hiber_set_ckpt_dir(dir: *const c_char) -> c_int {
    let _guard = NoCheckpoint::new();
    if !enabled() {
        return HIBER_ENOTENABLED;
    }
    if dir.is_null() {
        return HIBER_EINVAL;
    }
    // SAFETY: NUL-terminated per the contract.
    let d = unsafe { CStr::from_ptr(dir) }
        .to_string_lossy()
        .into_owned();
    let Ok(abs) = std::path::absolute(&d) else {
        return HIBER_EINVAL;
    };
    if std::fs::create_dir_all(&abs).is_err() {
        return HIBER_EINVAL;
    }
    checkpoint::set_shared(|s| {
        s.ckpt_dir = abs.display().to_string();
        if s.standalone {
            let name = s
                .image_override
                .as_deref()
                .and_then(|p| std::path::Path::new(p).file_name());
            if let Some(n) = name {
                s.image_override = Some(abs.join(n).display().to_string());
            }
        }
    });
    HIBER_OK
}

#[unsafe(no_mangle)]
pub extern "C" fn hiber_image_path(buf: *mut c_char, len: usize) -> c_int {
    let _guard = NoCheckpoint::new();
    if !enabled() {
        return HIBER_ENOTENABLED;
    }
    let s = shared();
    copy_out(
        &checkpoint::image_path(&s.ckpt_dir, &s)
            .display()
            .to_string(),
        buf,
        len,
    )
}

#[repr(C)]
pub struct HiberStatus {
    processes: c_int,
    state: c_int,
    generation: c_longlong,
    interval: c_longlong,
    coordinator: [c_char; 128],
}

/// # Safety
/// `out` must point to a writable `hiber_status_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hiber_coordinator_status(out: *mut HiberStatus) -> c_int {
    let _guard = NoCheckpoint::new();
    if !enabled() {
        return HIBER_ENOTENABLED;
    }
    if out.is_null() {
        return HIBER_EINVAL;
    }
    let s = shared();
    // SAFETY: per the contract.
    let out = unsafe { &mut *out };
    if s.standalone {
        out.processes = 1;
        out.state = 0;
        out.generation = s.generation as c_longlong;
        out.interval = 0;
        out.coordinator[0] = 0;
        return HIBER_OK;
    }
    let mut c = match ApiConn::open() {
        Ok(c) => c,
        Err(e) => return e,
    };
    match c.conn.request(&ToCoord::Status) {
        Ok(FromCoord::Status(st)) => {
            out.processes = st.processes as c_int;
            out.state = match st.state {
                State::Running => 0,
                State::Checkpointing => 1,
                State::Restarting => 2,
            };
            out.generation = st.generation as c_longlong;
            out.interval = st.interval as c_longlong;
            let b = st.coordinator.as_bytes();
            let n = b.len().min(127);
            for (i, &ch) in b[..n].iter().enumerate() {
                out.coordinator[i] = ch as c_char;
            }
            out.coordinator[n] = 0;
            HIBER_OK
        }
        _ => HIBER_ECOORD,
    }
}

/// # Safety
/// `image_path` must be a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hiber_init_standalone(image_path: *const c_char, flags: c_uint) -> c_int {
    let _guard = NoCheckpoint::new();
    if enabled() {
        return HIBER_EBUSY;
    }
    if image_path.is_null() {
        return HIBER_EINVAL;
    }
    // SAFETY: NUL-terminated per the contract.
    let p = unsafe { CStr::from_ptr(image_path) }
        .to_string_lossy()
        .into_owned();
    let Ok(abs) = std::path::absolute(&p) else {
        return HIBER_EINVAL;
    };
    let compress = flags & 1 == 0;
    let sync = flags & 2 == 0;
    match checkpoint::start_standalone(abs.display().to_string(), compress, sync) {
        Ok(()) => {
            STARTED.store(true, Release);
            HIBER_OK
        }
        Err(e) => {
            crate::log::warn(&e);
            HIBER_EFAILED
        }
    }
}

// ---- barriers and the key-value store -----------------------------------

/// # Safety
/// `name` must be a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hiber_barrier(name: *const c_char) -> c_int {
    let _guard = NoCheckpoint::new();
    if !enabled() {
        return HIBER_ENOTENABLED;
    }
    if name.is_null() {
        return HIBER_EINVAL;
    }
    // SAFETY: NUL-terminated per the contract.
    let name = unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned();
    if !hiber_protocol::barrier::is_user(&name) {
        return HIBER_EINVAL;
    }
    if shared().standalone {
        return HIBER_OK;
    }
    let generation = shared().generation;
    events::with_link(|link| {
        let Link::Coord(conn) = link else {
            return HIBER_OK;
        };
        if conn
            .send(&ToCoord::Barrier {
                generation,
                name: name.clone(),
            })
            .is_err()
        {
            return HIBER_ECOORD;
        }
        loop {
            match conn.recv() {
                Ok(FromCoord::Release { name: n, .. }) if n == name => return HIBER_OK,
                Ok(FromCoord::Abort { generation, .. }) => {
                    // The checkpoint thread must not go on with it.
                    ABORTED.store(generation, Release);
                    return HIBER_EFAILED;
                }
                Ok(_) => {}
                Err(_) => return HIBER_ECOORD,
            }
        }
    })
    .unwrap_or(HIBER_EDEADLK)
}

/// # Safety
/// `key` NUL-terminated; `value` readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hiber_kv_put(
    key: *const c_char,
    value: *const c_void,
    len: usize,
) -> c_int {
    let _guard = NoCheckpoint::new();
    if !enabled() {
        return HIBER_ENOTENABLED;
    }
    if key.is_null() || (value.is_null() && len > 0) {
        return HIBER_EINVAL;
    }
    // SAFETY: per the contract.
    let (key, value) = unsafe {
        (
            CStr::from_ptr(key).to_string_lossy().into_owned(),
            if len == 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(value.cast::<u8>(), len).to_vec()
            },
        )
    };
    if shared().standalone {
        let mut kv = KV.lock().unwrap_or_else(|e| e.into_inner());
        kv.retain(|(k, _)| *k != key);
        kv.push((key, value));
        return HIBER_OK;
    }
    let msg = ToCoord::KvPut { key, value };
    if let Some(r) = events::with_link(|link| {
        link.send(&msg);
        HIBER_OK
    }) {
        return r;
    }
    match ApiConn::open() {
        Ok(mut c) => {
            if c.conn.send(&msg).is_ok() {
                // Make sure the put is applied before the connection closes.
                let _ = c.conn.request(&ToCoord::Status);
                HIBER_OK
            } else {
                HIBER_ECOORD
            }
        }
        Err(e) => e,
    }
}

/// # Safety
/// `key` NUL-terminated; `buf` writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hiber_kv_get(key: *const c_char, buf: *mut c_void, len: usize) -> c_long {
    let _guard = NoCheckpoint::new();
    if !enabled() {
        return HIBER_ENOTENABLED as c_long;
    }
    if key.is_null() || (buf.is_null() && len > 0) {
        return HIBER_EINVAL as c_long;
    }
    // SAFETY: per the contract.
    let key = unsafe { CStr::from_ptr(key) }
        .to_string_lossy()
        .into_owned();
    let value = if shared().standalone {
        let kv = KV.lock().unwrap_or_else(|e| e.into_inner());
        match kv.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => v.clone(),
            None => return HIBER_EINVAL as c_long,
        }
    } else {
        let get = |conn: &mut Connection| -> Result<Vec<u8>, c_int> {
            conn.send(&ToCoord::KvGet { key: key.clone() })
                .map_err(|_| HIBER_ECOORD)?;
            loop {
                match conn.recv() {
                    Ok(FromCoord::KvValue { key: k, value }) if k == key => return Ok(value),
                    Ok(_) => {}
                    Err(_) => return Err(HIBER_ECOORD),
                }
            }
        };
        let r = events::with_link(|link| match link {
            Link::Coord(c) => get(c),
            Link::Alone => Err(HIBER_EINVAL),
        });
        let r = match r {
            Some(r) => r,
            None => match ApiConn::open() {
                Ok(mut c) => get(&mut c.conn),
                Err(e) => Err(e),
            },
        };
        match r {
            Ok(v) => v,
            Err(e) => return e as c_long,
        }
    };
    if value.len() > len {
        return HIBER_ERANGE as c_long;
    }
    // SAFETY: `buf` has `len` >= value.len() writable bytes.
    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), buf.cast::<u8>(), value.len()) };
    value.len() as c_long
}

/// Descriptors of API calls in flight: excluded from the image (see
/// `agent_fds`) and hung up at restart.
pub struct ApiConnections;

impl crate::mechanisms::Mechanism for ApiConnections {
    fn name(&self) -> &'static str {
        "API connections"
    }

    fn restore(&self, _ctx: &mut crate::mechanisms::Restore<'_>) {
        hang_up_api_fds();
    }
}
