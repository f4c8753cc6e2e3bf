//! Raw system calls for code that may not touch libc: the restorer (no libc
//! at all), signal handlers and the agent while the program's threads are
//! stopped (libc wrappers change `errno`, which is part of the saved image,
//! and some take locks a stopped thread may hold).
//!
//! Everything here is async-signal-safe: no allocation, no locks, no panics.
//! Each wrapper returns `Result<usize, Errno>` straight from the kernel.

#![no_std]

pub mod fmt;
pub mod plan;
pub mod tty;

pub use syscalls::{Errno, Sysno};

/// Result of a raw system call.
pub type SysResult = Result<usize, Errno>;

pub mod consts {
    //! Kernel ABI constants (x86-64) that neither `core` nor our deps name.
    pub const PROT_READ: u32 = 1;
    pub const PROT_WRITE: u32 = 2;
    pub const PROT_EXEC: u32 = 4;
    pub const MAP_SHARED: u32 = 0x01;
    pub const MAP_PRIVATE: u32 = 0x02;
    pub const MAP_FIXED: u32 = 0x10;
    pub const MAP_ANONYMOUS: u32 = 0x20;
    pub const MAP_GROWSDOWN: u32 = 0x100;
    pub const MAP_NORESERVE: u32 = 0x4000;
    pub const MAP_FIXED_NOREPLACE: u32 = 0x10_0000;
    pub const SHM_RDONLY: u32 = 0o10000;
    pub const SHM_EXEC: u32 = 0o100000;
    pub const MREMAP_MAYMOVE: u32 = 1;
    pub const MREMAP_FIXED: u32 = 2;
    pub const O_RDONLY: u32 = 0;
    pub const O_CLOEXEC: u32 = 0o2_000_000;
    pub const AT_FDCWD: i32 = -100;
    pub const ARCH_SET_FS: u32 = 0x1002;
    pub const ARCH_GET_FS: u32 = 0x1003;
    pub const PR_SET_MM: u32 = 35;
    pub const PR_SET_MM_MAP: u32 = 14;
    pub const PR_GET_TID_ADDRESS: u32 = 40;
    pub const FUTEX_WAIT_PRIVATE: u32 = 128;
    pub const FUTEX_WAKE_PRIVATE: u32 = 129;
    pub const SIG_SETMASK: u32 = 2;
    pub const SIG_BLOCK: u32 = 0;
    /// Signature glibc registers its rseq areas with.
    pub const RSEQ_SIG: u32 = 0x5305_3053;
    pub const RSEQ_FLAG_UNREGISTER: u32 = 1;
    /// Flags for recreating a thread of the same process.
    pub const CLONE_THREAD_FLAGS: u64 = 0x100 /* VM */
        | 0x200 /* FS */
        | 0x400 /* FILES */
        | 0x800 /* SIGHAND */
        | 0x10000 /* THREAD */
        | 0x40000 /* SYSVSEM */
        | 0x80000 /* SETTLS */
        | 0x100000 /* PARENT_SETTID */
        | 0x200000 /* CHILD_CLEARTID */;
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP)` argument (`struct prctl_mm_map`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PrctlMmMap {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub auxv: u64,
    pub auxv_size: u32,
    pub exe_fd: u32,
}

/// Kernel `struct sigaction` for `rt_sigaction` (not glibc's layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// `stack_t` for `sigaltstack`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StackT {
    pub sp: u64,
    pub flags: i32,
    pub _pad: i32,
    pub size: u64,
}

macro_rules! sys {
    ($nr:ident $(, $a:expr)*) => {
        // The wrapper's contract (documented on each function) makes
        // the arguments valid for this system call.
        // SAFETY: see just above.
        unsafe { syscalls::syscall!(Sysno::$nr $(, $a)*) }
    };
}

pub fn write(fd: i32, buf: &[u8]) -> SysResult {
    sys!(write, fd, buf.as_ptr(), buf.len())
}

/// Writes all of `buf`, retrying short writes and `EINTR`.
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => buf = &buf[n.min(buf.len())..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn read(fd: i32, buf: &mut [u8]) -> SysResult {
    sys!(read, fd, buf.as_mut_ptr(), buf.len())
}

/// Reads `out.len()` bytes of this process's memory at `addr` with
/// `process_vm_readv`: an unmapped address is an error (or a short read),
/// not a fault. Returns the bytes read.
pub fn read_own_memory(addr: u64, out: &mut [u8]) -> SysResult {
    let local = [out.as_mut_ptr() as usize, out.len()];
    let remote = [addr as usize, out.len()];
    sys!(
        process_vm_readv,
        getpid(),
        local.as_ptr(),
        1,
        remote.as_ptr(),
        1,
        0
    )
}

/// Sets an integer `SOL_SOCKET` option; `true` if the kernel took it (the
/// caller decides whether a refusal matters, e.g. a buffer size above the
/// system's maximum keeps the default).
pub fn set_socket_int(fd: i32, opt: i32, v: i32) -> bool {
    let v = v as core::ffi::c_int;
    sys!(
        setsockopt,
        fd,
        1, // SOL_SOCKET
        opt,
        &raw const v,
        core::mem::size_of::<core::ffi::c_int>()
    )
    .is_ok()
}

/// `pipe2(fds, flags)`.
pub fn pipe2(fds: &mut [i32; 2], flags: u32) -> SysResult {
    sys!(pipe2, fds.as_mut_ptr(), flags)
}

pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> SysResult {
    sys!(pread64, fd, buf.as_mut_ptr(), buf.len(), off)
}

/// Opens a NUL-terminated path.
pub fn open(path: &core::ffi::CStr, flags: u32, mode: u32) -> SysResult {
    sys!(openat, AT_FDCWD_USIZE, path.as_ptr(), flags, mode)
}
const AT_FDCWD_USIZE: isize = consts::AT_FDCWD as isize;

/// Sleeps `ns` nanoseconds (less if a signal interrupts).
pub fn nanosleep_ns(ns: u64) {
    let ts = [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64];
    let _ = sys!(nanosleep, ts.as_ptr(), 0usize);
}

pub fn close(fd: i32) -> SysResult {
    sys!(close, fd)
}

pub fn exit_group(code: i32) -> ! {
    let _ = sys!(exit_group, code);
    loop {
        core::hint::spin_loop();
    }
}

pub fn gettid() -> u32 {
    sys!(gettid).unwrap_or(0) as u32
}

pub fn getpid() -> u32 {
    sys!(getpid).unwrap_or(0) as u32
}

pub fn tgkill(tgid: u32, tid: u32, sig: u32) -> SysResult {
    sys!(tgkill, tgid, tid, sig)
}

/// # Safety
/// Maps memory; `addr` with `MAP_FIXED` replaces whatever is there, which the
/// caller must own.
pub unsafe fn mmap(addr: u64, len: u64, prot: u32, flags: u32, fd: i32, off: u64) -> SysResult {
    sys!(mmap, addr, len, prot, flags, fd, off)
}

/// Attaches System V shared memory segment `shmid` at `addr` (`shmat`);
/// without `SHM_REMAP` the kernel refuses a range that is in use.
///
/// # Safety
/// Maps memory at `addr`, which the caller must own.
pub unsafe fn shmat(shmid: i32, addr: u64, flags: u32) -> SysResult {
    sys!(shmat, shmid, addr, flags)
}

/// # Safety
/// Nothing may use the range afterwards.
pub unsafe fn munmap(addr: u64, len: u64) -> SysResult {
    sys!(munmap, addr, len)
}

/// # Safety
/// Changes protections of memory the caller owns.
pub unsafe fn mprotect(addr: u64, len: u64, prot: u32) -> SysResult {
    sys!(mprotect, addr, len, prot)
}

/// # Safety
/// Moves a mapping; with `MREMAP_FIXED` the destination is replaced.
pub unsafe fn mremap(old: u64, old_len: u64, new_len: u64, flags: u32, new: u64) -> SysResult {
    sys!(mremap, old, old_len, new_len, flags, new)
}

pub fn arch_get_fs() -> u64 {
    let mut v: u64 = 0;
    let _ = sys!(arch_prctl, consts::ARCH_GET_FS, &mut v as *mut u64);
    v
}

/// # Safety
/// The calling thread's TLS becomes `base`; it must point at a valid TCB.
pub unsafe fn arch_set_fs(base: u64) -> SysResult {
    sys!(arch_prctl, consts::ARCH_SET_FS, base)
}

/// Address the kernel clears on this thread's exit (`&struct pthread.tid`).
pub fn get_tid_address() -> u64 {
    let mut v: u64 = 0;
    let _ = sys!(
        prctl,
        consts::PR_GET_TID_ADDRESS,
        &mut v as *mut u64,
        0,
        0,
        0
    );
    v
}

/// # Safety
/// `addr` must be this thread's tid word.
pub unsafe fn set_tid_address(addr: u64) -> u32 {
    sys!(set_tid_address, addr).unwrap_or(0) as u32
}

pub fn get_robust_list() -> (u64, u64) {
    let mut head: u64 = 0;
    let mut len: u64 = 0;
    let _ = sys!(
        get_robust_list,
        0,
        &mut head as *mut u64,
        &mut len as *mut u64
    );
    (head, len)
}

/// # Safety
/// `head` must be this thread's robust list head (or 0).
pub unsafe fn set_robust_list(head: u64, len: u64) -> SysResult {
    sys!(set_robust_list, head, len)
}

/// This thread's CPU affinity mask, as 64-bit words (CPUs 0..512); `None`
/// if the kernel's mask is larger than that (the call then fails).
pub fn sched_getaffinity_self(mask: &mut [u64; 8]) -> bool {
    sys!(sched_getaffinity, 0, 64usize, mask.as_mut_ptr()).is_ok()
}

/// Sets this thread's CPU affinity; fails (harmlessly) on a machine where
/// none of the CPUs exist.
pub fn sched_setaffinity_self(mask: &[u64; 8]) -> SysResult {
    sys!(sched_setaffinity, 0, 64usize, mask.as_ptr())
}

/// # Safety
/// `area` must be this thread's rseq area for its whole lifetime.
pub unsafe fn rseq_register(area: u64, len: u32) -> SysResult {
    sys!(rseq, area, len, 0, consts::RSEQ_SIG)
}

pub fn sigaltstack_get() -> StackT {
    let mut ss = StackT::default();
    let _ = sys!(sigaltstack, 0, &mut ss as *mut StackT);
    ss
}

/// # Safety
/// `ss` must describe memory usable as this thread's signal stack.
pub unsafe fn sigaltstack_set(ss: &StackT) -> SysResult {
    sys!(sigaltstack, ss as *const StackT, 0)
}

pub fn rt_sigaction_get(sig: u32) -> Result<KernelSigaction, Errno> {
    let mut k = KernelSigaction::default();
    sys!(rt_sigaction, sig, 0, &mut k as *mut KernelSigaction, 8)?;
    Ok(k)
}

/// # Safety
/// The handler in `act` must be valid code in this address space.
pub unsafe fn rt_sigaction_set(sig: u32, act: &KernelSigaction) -> SysResult {
    sys!(rt_sigaction, sig, act as *const KernelSigaction, 0, 8)
}

/// Sets the signal mask; returns the previous one.
pub fn sigprocmask(how: u32, set: u64) -> u64 {
    let mut old: u64 = 0;
    let _ = sys!(
        rt_sigprocmask,
        how,
        &set as *const u64,
        &mut old as *mut u64,
        8
    );
    old
}

/// Signals pending for the whole process and this thread.
pub fn sigpending() -> u64 {
    let mut set: u64 = 0;
    let _ = sys!(rt_sigpending, &mut set as *mut u64, 8);
    set
}

/// Waits while `*word == expected` (spurious wake-ups possible).
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32) {
    let _ = sys!(
        futex,
        word.as_ptr(),
        consts::FUTEX_WAIT_PRIVATE,
        expected,
        0,
        0,
        0
    );
}

/// Waits at most `timeout_ns`.
pub fn futex_wait_timeout(word: &core::sync::atomic::AtomicU32, expected: u32, timeout_ns: u64) {
    let ts = [timeout_ns / 1_000_000_000, timeout_ns % 1_000_000_000];
    let _ = sys!(
        futex,
        word.as_ptr(),
        consts::FUTEX_WAIT_PRIVATE,
        expected,
        ts.as_ptr(),
        0,
        0
    );
}

pub fn futex_wake(word: &core::sync::atomic::AtomicU32) {
    let _ = sys!(
        futex,
        word.as_ptr(),
        consts::FUTEX_WAKE_PRIVATE,
        i32::MAX,
        0,
        0,
        0
    );
}

/// # Safety
/// `map` must hold addresses inside this process's mappings.
pub unsafe fn prctl_set_mm_map(map: &PrctlMmMap) -> SysResult {
    sys!(
        prctl,
        consts::PR_SET_MM,
        consts::PR_SET_MM_MAP,
        map as *const PrctlMmMap,
        core::mem::size_of::<PrctlMmMap>(),
        0
    )
}

pub fn fstat_size(fd: i32) -> SysResult {
    // struct stat is 144 bytes on x86-64; st_size is at offset 48.
    let mut st = [0u64; 18];
    sys!(fstat, fd, st.as_mut_ptr())?;
    Ok(st[6] as usize)
}

pub fn dup3(old: i32, new: i32, flags: u32) -> SysResult {
    sys!(dup3, old, new, flags)
}

pub fn fcntl(fd: i32, cmd: u32, arg: u64) -> SysResult {
    sys!(fcntl, fd, cmd, arg)
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap)`.
pub fn ambient_cap_is_set(cap: u32) -> bool {
    // PR_CAP_AMBIENT = 47, PR_CAP_AMBIENT_IS_SET = 1
    sys!(prctl, 47, 1, cap, 0, 0).is_ok_and(|v| v == 1)
}

/// Drops every capability of the calling thread (effective, permitted,
/// inheritable, ambient). Capabilities are per thread.
pub fn drop_capabilities() {
    let header: [u32; 2] = [0x2008_0522, 0];
    let data = [0u32; 6];
    // PR_CAP_AMBIENT = 47, PR_CAP_AMBIENT_CLEAR_ALL = 4
    let _ = sys!(prctl, 47, 4, 0, 0, 0);
    let _ = sys!(capset, header.as_ptr(), data.as_ptr());
}

/// `setsid(2)`.
pub fn setsid() -> SysResult {
    sys!(setsid)
}

/// `setpgid(2)` (0 for this process).
pub fn setpgid(pid: i32, pgid: i32) -> SysResult {
    sys!(setpgid, pid, pgid)
}

/// `clone3(2)` without `CLONE_VM`: a fork. Returns 0 in the child.
///
/// # Safety
/// As `fork`: the child continues from here with a copy of the memory; the
/// caller must be fit to run in both processes.
pub unsafe fn clone3_fork(args: &CloneArgs) -> SysResult {
    sys!(
        clone3,
        args as *const CloneArgs,
        core::mem::size_of::<CloneArgs>()
    )
}

/// `prctl(PR_SET_NAME)`: the calling thread's name (NUL-terminated, at
/// most 16 bytes with the NUL).
pub fn set_thread_name(name: &[u8]) {
    // PR_SET_NAME = 15
    let _ = sys!(prctl, 15, name.as_ptr(), 0, 0, 0);
}

/// `struct clone_args` for `clone3(2)` (the size known to Linux 5.7+).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

impl CloneArgs {
    /// A new process (like fork) whose pid is `*pid` (one namespace level).
    pub fn process_with_pid(pid: &i32) -> CloneArgs {
        CloneArgs {
            exit_signal: 17, // SIGCHLD
            set_tid: pid as *const i32 as u64,
            set_tid_size: 1,
            ..CloneArgs::default()
        }
    }
}

/// `struct timeval` (x86-64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeval {
    pub sec: i64,
    pub usec: i64,
}

/// `struct timespec` (x86-64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

/// `struct itimerval` for `getitimer`/`setitimer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerval {
    pub interval: Timeval,
    pub value: Timeval,
}

/// `struct itimerspec` for `timer_gettime`/`timer_settime`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerspec {
    pub interval: Timespec,
    pub value: Timespec,
}

/// The kernel's `struct sigevent` (64 bytes on x86-64), as `timer_create`
/// reads it: `tid` is `_sigev_un._tid`, the target of `SIGEV_THREAD_ID`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelSigevent {
    /// `sigev_value` (the `sival_ptr`/`sival_int` union).
    pub value: u64,
    pub signo: i32,
    /// `SIGEV_*`.
    pub notify: i32,
    pub tid: i32,
    pub _pad: [i32; 11],
}

/// `getitimer(which)`: `ITIMER_REAL` (0, also `alarm`), `ITIMER_VIRTUAL`
/// (1) or `ITIMER_PROF` (2).
pub fn getitimer(which: u32) -> Result<Itimerval, Errno> {
    let mut v = Itimerval::default();
    sys!(getitimer, which, &mut v as *mut Itimerval)?;
    Ok(v)
}

/// `setitimer(which, v, NULL)`.
pub fn setitimer(which: u32, v: &Itimerval) -> SysResult {
    sys!(setitimer, which, v as *const Itimerval, 0)
}

/// `timer_create(clock, ev, id)`: the kernel writes the new timer's id to
/// `*id`; while `PR_TIMER_CREATE_RESTORE_IDS` is on, it first reads the id
/// wanted from there (`EBUSY` if that id is taken).
pub fn timer_create(clock: i32, ev: &KernelSigevent, id: &mut i32) -> SysResult {
    sys!(
        timer_create,
        clock as isize,
        ev as *const KernelSigevent,
        id as *mut i32
    )
}

/// `timer_settime(id, flags, v, NULL)`.
pub fn timer_settime(id: i32, flags: u32, v: &Itimerspec) -> SysResult {
    sys!(timer_settime, id as isize, flags, v as *const Itimerspec, 0)
}

/// `timer_gettime(id)`: time to the next expiry and the interval.
pub fn timer_gettime(id: i32) -> Result<Itimerspec, Errno> {
    let mut v = Itimerspec::default();
    sys!(timer_gettime, id as isize, &mut v as *mut Itimerspec)?;
    Ok(v)
}

pub fn timer_delete(id: i32) -> SysResult {
    sys!(timer_delete, id as isize)
}

/// `prctl(PR_TIMER_CREATE_RESTORE_IDS, on ? ON : OFF)` (Linux 6.15+, made
/// for checkpoint/restore): while on, `timer_create` gives the new timer
/// the id found in its `timer_t` argument. Process-wide; fails with
/// `EINVAL` on kernels without it.
pub fn timer_create_restore_ids(on: bool) -> SysResult {
    // PR_TIMER_CREATE_RESTORE_IDS = 77, _OFF = 0, _ON = 1
    sys!(prctl, 77, usize::from(on), 0, 0, 0)
}

/// `setrlimit(resource, {0, 0})`.
pub fn setrlimit_zero(resource: u32) -> SysResult {
    let lim = [0u64; 2];
    sys!(setrlimit, resource, lim.as_ptr())
}

/// Dies of `sig` with its default action (disposition reset first).
pub fn kill_self_default(sig: u32) -> SysResult {
    let act = KernelSigaction::default();
    // SAFETY: SIG_DFL (handler 0) needs no memory of ours.
    let _ = unsafe { rt_sigaction_set(sig, &act) };
    sys!(kill, getpid(), sig)
}

/// Waits until child `pid` has exited, leaving it a zombie (`waitid` with
/// `WNOWAIT`).
pub fn wait_exited_nowait(pid: i32) {
    const P_PID: u64 = 1;
    const WEXITED: u64 = 4;
    const WNOWAIT: u64 = 0x0100_0000;
    let mut info = [0u64; 16]; // siginfo_t
    loop {
        match sys!(waitid, P_PID, pid, info.as_mut_ptr(), WEXITED | WNOWAIT, 0) {
            Err(Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// Takes back a pending `sig` (blocked): `rt_sigtimedwait` with a zero
/// timeout.
pub fn take_pending(sig: u32) {
    let set: u64 = 1 << (sig - 1);
    let zero = [0i64; 2];
    let _ = sys!(
        rt_sigtimedwait,
        &set as *const u64,
        0usize,
        zero.as_ptr(),
        8
    );
}
