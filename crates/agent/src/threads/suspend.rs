//! Stopping every program thread for a checkpoint.
//!
//! The checkpoint thread sends each thread the checkpoint signal with
//! `tgkill`. The handler records what only the thread itself can read (its
//! interrupted context, TLS base, tid address, robust list, alternate signal
//! stack, CPU affinity) into a preallocated slot and parks on a futex until the
//! checkpoint thread bumps the resume word.
//!
//! The handler is async-signal-safe: raw system calls only (so `errno`, part
//! of the saved image, is untouched), no allocation, no locks, no panics.
//! Its registers, FPU state and signal mask are already saved by the kernel
//! in the signal frame on the thread's stack; the `ucontext` pointer is all a
//! restart needs to resume it with `rt_sigreturn`.

use std::collections::HashSet;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::time::{Duration, Instant};

/// Threads one process can have at a checkpoint.
pub const MAX_THREADS: usize = 4096;

/// What one stopped thread recorded about itself.
pub struct Slot {
    pub tid: AtomicU32,
    pub uc: AtomicU64,
    pub fs_base: AtomicU64,
    pub tid_addr: AtomicU64,
    pub robust_head: AtomicU64,
    pub robust_len: AtomicU64,
    pub alt_sp: AtomicU64,
    pub alt_size: AtomicU64,
    pub alt_flags: AtomicU32,
    /// Signals pending for this thread only (read by the checkpoint thread).
    pub pending: AtomicU64,
    /// The thread's kernel tid after a restart.
    pub new_tid: AtomicU32,
    /// The thread's name (`comm`, 15 bytes and a NUL), set again at restart.
    pub name: [AtomicU64; 2],
    /// CPU affinity (CPUs 0..512); `affinity_ok` is false if it could not
    /// be read (more CPUs than that), and then it is not restored.
    pub affinity: [AtomicU64; 8],
    pub affinity_ok: AtomicBool,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            tid: AtomicU32::new(0),
            uc: AtomicU64::new(0),
            fs_base: AtomicU64::new(0),
            tid_addr: AtomicU64::new(0),
            robust_head: AtomicU64::new(0),
            robust_len: AtomicU64::new(0),
            alt_sp: AtomicU64::new(0),
            alt_size: AtomicU64::new(0),
            alt_flags: AtomicU32::new(0),
            pending: AtomicU64::new(0),
            new_tid: AtomicU32::new(0),
            name: [AtomicU64::new(0), AtomicU64::new(0)],
            affinity: [const { AtomicU64::new(0) }; 8],
            affinity_ok: AtomicBool::new(false),
        }
    }

    /// The thread's rseq area (glibc registers one per thread at a fixed
    /// offset from the thread pointer), or 0 if glibc doesn't use rseq.
    pub fn rseq_area(&self) -> u64 {
        match RSEQ_SIZE.load(Relaxed) {
            0 => 0,
            _ => self
                .fs_base
                .load(Relaxed)
                .wrapping_add_signed(RSEQ_OFFSET.load(Relaxed)),
        }
    }

    /// Saved instruction and stack pointers (for `inspect`).
    pub fn rip_rsp(&self) -> (u64, u64) {
        let uc = self.uc.load(Relaxed);
        if uc == 0 {
            return (0, 0);
        }
        // `uc` points at the kernel's ucontext_t in the parked
        // thread's signal frame; the thread stays parked while we read.
        // SAFETY: see just above.
        unsafe {
            let uc = &*(uc as *const libc::ucontext_t);
            (
                uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64,
                uc.uc_mcontext.gregs[libc::REG_RSP as usize] as u64,
            )
        }
    }

    /// Records the thread's name (from `/proc/self/task/<tid>/comm`).
    pub fn set_name(&self, name: &str) {
        let mut b = [0u8; 16];
        let n = name.len().min(15);
        b[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.name[0].store(
            u64::from_ne_bytes(b[..8].try_into().unwrap_or([0; 8])),
            Relaxed,
        );
        self.name[1].store(
            u64::from_ne_bytes(b[8..].try_into().unwrap_or([0; 8])),
            Relaxed,
        );
    }

    /// The recorded name as a NUL-terminated buffer.
    pub fn name_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.name[0].load(Relaxed).to_ne_bytes());
        b[8..].copy_from_slice(&self.name[1].load(Relaxed).to_ne_bytes());
        b[15] = 0;
        b
    }

    /// The recorded CPU affinity, if it could be read.
    pub fn affinity(&self) -> Option<[u64; 8]> {
        if !self.affinity_ok.load(Relaxed) {
            return None;
        }
        Some(std::array::from_fn(|i| self.affinity[i].load(Relaxed)))
    }

    pub fn sigmask(&self) -> u64 {
        let uc = self.uc.load(Relaxed);
        if uc == 0 {
            return 0;
        }
        // SAFETY: as in `rip_rsp`; the first 8 bytes of sigset_t are the kernel's 64-signal mask.
        unsafe {
            *((&(*(uc as *const libc::ucontext_t)).uc_sigmask) as *const libc::sigset_t
                as *const u64)
        }
    }
}

pub static SLOTS: [Slot; MAX_THREADS] = [const { Slot::new() }; MAX_THREADS];
/// Slots claimed in the current checkpoint.
pub static NSLOTS: AtomicUsize = AtomicUsize::new(0);
static ARRIVED: AtomicU32 = AtomicU32::new(0);
/// Bumped to let parked threads go.
static RESUME: AtomicU32 = AtomicU32::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);
static RSEQ_OFFSET: AtomicI64 = AtomicI64::new(0);
static RSEQ_SIZE: AtomicU32 = AtomicU32::new(0);

/// Tids of the agent's own threads (never suspended, never saved as
/// program threads).
static AGENT_TIDS: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];

pub fn register_agent_thread(tid: u32) {
    for t in &AGENT_TIDS {
        if t.compare_exchange(0, tid, AcqRel, Relaxed).is_ok() {
            return;
        }
    }
}

pub fn forget_agent_threads() {
    for t in &AGENT_TIDS {
        t.store(0, Relaxed);
    }
}

pub fn is_agent_thread(tid: u32) -> bool {
    AGENT_TIDS.iter().any(|t| t.load(Relaxed) == tid)
}

extern "C" fn handler(_sig: c_int, info: *mut libc::siginfo_t, uc: *mut c_void) {
    // SAFETY: the kernel's siginfo for this signal.
    let code = unsafe { (*info).si_code };
    if super::dormant::is_socket_signal(code) {
        // The coordinator socket of a dormant process has a message.
        return super::dormant::on_signal(uc);
    }
    if !ACTIVE.load(Acquire) {
        return; // a stray signal outside a checkpoint: ignore it
    }
    if crate::capi::defer_if_in_critical_section(hiber_sys::gettid()) {
        return; // stops when it leaves its critical section
    }
    let generation = RESUME.load(Acquire);
    let idx = NSLOTS.fetch_add(1, AcqRel);
    if let Some(s) = SLOTS.get(idx) {
        s.tid.store(hiber_sys::gettid(), Relaxed);
        s.uc.store(uc as u64, Relaxed);
        s.fs_base.store(hiber_sys::arch_get_fs(), Relaxed);
        s.tid_addr.store(hiber_sys::get_tid_address(), Relaxed);
        let (head, len) = hiber_sys::get_robust_list();
        s.robust_head.store(head, Relaxed);
        s.robust_len.store(len, Relaxed);
        let ss = hiber_sys::sigaltstack_get();
        s.alt_sp.store(ss.sp, Relaxed);
        s.alt_size.store(ss.size, Relaxed);
        s.alt_flags.store(ss.flags as u32, Relaxed);
        let mut mask = [0u64; 8];
        let ok = hiber_sys::sched_getaffinity_self(&mut mask);
        for (w, m) in s.affinity.iter().zip(mask) {
            w.store(m, Relaxed);
        }
        s.affinity_ok.store(ok, Relaxed);
    }
    ARRIVED.fetch_add(1, Release);
    hiber_sys::futex_wake(&ARRIVED);
    while RESUME.load(Acquire) == generation {
        hiber_sys::futex_wait(&RESUME, generation);
    }
}

/// Installs the checkpoint signal handler and learns glibc's rseq layout.
pub fn install(sig: u32) -> std::io::Result<()> {
    // Dlsym with RTLD_DEFAULT and NUL-terminated names; the symbols,
    // when present, are glibc's `const ptrdiff_t __rseq_offset` and
    // `const unsigned int __rseq_size`.
    // SAFETY: see just above.
    unsafe {
        let off = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr());
        let size = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr());
        if !off.is_null() && !size.is_null() {
            RSEQ_OFFSET.store(*(off as *const i64), Relaxed);
            RSEQ_SIZE.store(*(size as *const u32), Relaxed);
        }
    }
    // A plain sigaction call with a handler of the right signature;
    // every signal is blocked while it runs so no program handler can run
    // on a parked thread.
    // SAFETY: see just above.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigfillset(&mut sa.sa_mask);
        if crate::signals::real_sigaction(sig as c_int, &sa, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Registered rseq length: glibc 2.35+ registers `struct rseq` (32 bytes)
/// or, in later versions, a larger feature size.
pub fn rseq_len() -> u32 {
    RSEQ_SIZE.load(Relaxed).max(32)
}

fn list_tasks() -> Vec<u32> {
    crate::procfs::numeric_entries(c"/proc/self/task")
}

/// Stops every program thread. On success the threads' slots are filled;
/// on failure (a thread never answered) everything is resumed.
pub fn suspend_all(sig: u32, timeout: Duration) -> Result<usize, String> {
    NSLOTS.store(0, Relaxed);
    ARRIVED.store(0, Relaxed);
    EPOCH.fetch_add(1, AcqRel);
    ACTIVE.store(true, Release);
    let pid = hiber_sys::getpid();
    let deadline = Instant::now() + timeout;
    let mut signaled: HashSet<u32> = HashSet::new();
    loop {
        let tasks = list_tasks();
        let mut new = 0;
        for &tid in &tasks {
            if is_agent_thread(tid) || signaled.contains(&tid) {
                continue;
            }
            if hiber_sys::tgkill(pid, tid, sig).is_ok() {
                signaled.insert(tid);
                new += 1;
            }
        }
        // Threads that exited after being signalled will never arrive.
        signaled.retain(|t| tasks.contains(t) || slot_of(*t).is_some());
        loop {
            let arrived = ARRIVED.load(Acquire);
            if arrived as usize >= signaled.len() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                resume_all();
                return Err(format!(
                    "{} of {} threads did not stop within {:?}",
                    signaled.len() - arrived as usize,
                    signaled.len(),
                    timeout
                ));
            }
            let left = (deadline - now).min(Duration::from_millis(50));
            hiber_sys::futex_wait_timeout(&ARRIVED, arrived, left.as_nanos() as u64);
            let alive = list_tasks();
            signaled.retain(|t| alive.contains(t) || slot_of(*t).is_some());
        }
        if new == 0 {
            break;
        }
    }
    let n = NSLOTS.load(Acquire);
    if n > MAX_THREADS {
        resume_all();
        return Err(format!("too many threads ({n}, at most {MAX_THREADS})"));
    }
    Ok(n)
}

fn slot_of(tid: u32) -> Option<usize> {
    let n = NSLOTS.load(Acquire).min(MAX_THREADS);
    SLOTS[..n].iter().position(|s| s.tid.load(Relaxed) == tid)
}

/// Lets every parked thread return from the handler.
pub fn resume_all() {
    ACTIVE.store(false, Release);
    RESUME.fetch_add(1, AcqRel);
    hiber_sys::futex_wake(&RESUME);
}

/// The slots filled by the last `suspend_all`.
pub fn slots() -> &'static [Slot] {
    &SLOTS[..NSLOTS.load(Acquire).min(MAX_THREADS)]
}

/// After a restart nothing is parked: stray checkpoint signals are ignored
/// again until the next checkpoint.
pub fn deactivate() {
    ACTIVE.store(false, Release);
}

/// Checkpoints started so far in this process (also across restarts):
/// wrappers compare it around a blocking call to tell an interruption by a
/// checkpoint from a real signal.
pub static EPOCH: AtomicU64 = AtomicU64::new(0);
